package registry

import (
	"context"
	"errors"
	"fmt"
	"path"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// faultTimeout is the faulted client's session timeout in the fault matrix.
const faultTimeout = 2 * time.Second

// contents renders instances as their sorted JSON, so two lists compare
// on every field (and a duplicate shows).
func contents(t testing.TB, ins []Instance) []string {
	t.Helper()
	out := make([]string, 0, len(ins))
	for _, in := range ins {
		out = append(out, string(mustJSON(t, in)))
	}
	sort.Strings(out)
	return out
}

// truth reads service's instances through r after a sync.
func truth(t testing.TB, r *Registry, service string) []Instance {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	if err := znode.Settle(ctx, r.s); err != nil && !errors.Is(err, zk.ErrNoNode) {
		t.Fatal(err)
	}
	ins, err := r.Instances(ctx, service)
	if err != nil {
		t.Fatal(err)
	}
	return ins
}

// nodesNamed returns the children of the service at p whose names contain
// id, as the synced session s sees them.
func nodesNamed(t testing.TB, s *resilience.Session, p, id string) []string {
	t.Helper()
	var out []string
	for _, n := range testkit.Children(t, s, p) {
		if strings.Contains(n, id) {
			out = append(out, n)
		}
	}
	return out
}

// ports maps instance ids to ports, for failure messages and expectations.
func ports(ins []Instance) map[string]int {
	m := map[string]int{}
	for _, in := range ins {
		m[in.ID] = *in.Port
	}
	return m
}

// TestFaultMatrix runs every registry role on one faulted client per fault
// kind, while another client changes the service during the fault, and
// checks each promise after the heal:
//
//   - Register: a Dynamic and a DynamicSequential instance of the faulted
//     client are back, each as exactly one node owned by the client's
//     current session, holding the Update made just before the fault.
//   - Cache on the faulted client: converges on the contents (every field
//     of every instance), including an instance another client registered,
//     one it updated and one it unregistered during the fault.
//   - Provider on that cache: hands out exactly the instances that exist.
func TestFaultMatrix(t *testing.T) {
	needZK(t)
	testkit.ForEachFault(t, ens, faultTimeout, func(t *testing.T, f testkit.Fault) {
		ctx := ctxT(t, 3*time.Minute)
		base := basePath()
		svc := path.Join(base, "svc")
		c := testkit.NewClient(t, ens, resilience.WithSessionTimeout(faultTimeout))
		rc, err := New(c.S, base)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		obs, _ := New(connect(t, ens.Addrs()), base)
		defer obs.Close()
		wr, _ := New(connect(t, ens.Addrs()), base)
		defer wr.Close()

		// The faulted client's registrations, each updated once.
		dyn, err := rc.Register(ctx, instance("svc", "c-dyn", 1))
		if err != nil {
			t.Fatal(err)
		}
		seqInst := func(port int) Instance {
			in := instance("svc", "c-seq", port)
			in.ServiceType = DynamicSequential
			return in
		}
		seq, err := rc.Register(ctx, seqInst(1))
		if err != nil {
			t.Fatal(err)
		}
		// The other client's instances.
		w1, err := wr.Register(ctx, instance("svc", "w-1", 10))
		if err != nil {
			t.Fatal(err)
		}
		w2, err := wr.Register(ctx, instance("svc", "w-2", 20))
		if err != nil {
			t.Fatal(err)
		}
		cache, err := rc.NewCache(ctx, "svc")
		if err != nil {
			t.Fatal(err)
		}
		defer cache.Close()
		prov := mustProvider(t, cache)
		testkit.WaitFor(t, 20*time.Second, "the cache loads", func() bool { return len(cache.Instances()) == 4 })
		if got := prov.Instances(); len(got) != 4 {
			t.Fatalf("Provider.Instances() before the fault = %v", ports(got))
		}

		// Updates just before the fault.
		if err := dyn.Update(ctx, instance("svc", "c-dyn", 2)); err != nil {
			t.Fatal(err)
		}
		if err := seq.Update(ctx, seqInst(2)); err != nil {
			t.Fatal(err)
		}
		dynWant, seqWant := dyn.Instance(), seq.Instance()

		sid := c.S.SessionID()
		heal := f.Inject(t, c)
		// During the fault the other client updates, unregisters and
		// registers. Under quorum loss nobody can write until the heal.
		during := func() error {
			if err := w1.Update(ctx, instance("svc", "w-1", 11)); err != nil {
				return err
			}
			if err := w2.Unregister(ctx); err != nil {
				return err
			}
			_, err := wr.Register(ctx, instance("svc", "w-3", 30))
			return err
		}
		if f.Name == "quorum-loss" {
			done := make(chan error, 1)
			go func() { done <- during() }()
			heal()
			if err := <-done; err != nil {
				t.Fatalf("the other client's writes: %v", err)
			}
		} else {
			if err := during(); err != nil {
				t.Fatalf("the other client's writes: %v", err)
			}
			heal()
		}
		if err := c.S.WaitState(ctx, resilience.Connected, resilience.Reconnected); err != nil {
			t.Fatal(err)
		}
		kept := c.S.SessionID() == sid
		t.Logf("%s: session kept %v", f.Name, kept)
		if f.Expires && kept {
			t.Fatalf("%s: session 0x%x kept", f.Name, sid)
		}

		// Register: back, on the current session, with the latest data.
		for _, r := range []struct {
			name string
			reg  *Registration
			want Instance
		}{{"Dynamic", dyn, dynWant}, {"DynamicSequential", seq, seqWant}} {
			var last string
			testkit.WaitFor(t, 30*time.Second, r.name+" registration back on the current session with its latest Update", func() bool {
				p := r.reg.Path()
				if !testkit.OwnedBy(t, obs.s, p, c.S.SessionID()) {
					last = fmt.Sprintf("node %s not of session 0x%x", p, c.S.SessionID())
					return false
				}
				data, _, err := obs.s.Get(ctx, p)
				if err != nil {
					last = err.Error()
					return false
				}
				in, err := Decode(data)
				if err != nil || !reflect.DeepEqual(contents(t, []Instance{in}), contents(t, []Instance{r.want})) {
					last = fmt.Sprintf("node %s holds %s", p, data)
					return false
				}
				return true
			})
			if got := nodesNamed(t, obs.s, svc, r.want.ID); len(got) != 1 {
				t.Errorf("%s: nodes %v for %s, want one (last: %s)", r.name, got, r.want.ID, last)
			}
		}

		// Cache: the contents converge, other client's changes included.
		want := truth(t, obs, "svc")
		if got := ports(want); !reflect.DeepEqual(got, map[string]int{"c-dyn": 2, "c-seq": 2, "w-1": 11, "w-3": 30}) {
			t.Fatalf("the ensemble holds %v", got)
		}
		testkit.WaitFor(t, 30*time.Second, "the cache on the faulted client converges on the contents", func() bool {
			return reflect.DeepEqual(contents(t, cache.Instances()), contents(t, want))
		})

		// Provider: exactly the instances that exist.
		if got := prov.Instances(); !reflect.DeepEqual(contents(t, got), contents(t, want)) {
			t.Errorf("Provider.Instances() = %v, want %v", ports(got), ports(want))
		}
		exist := map[string]bool{}
		for _, s := range contents(t, want) {
			exist[s] = true
		}
		picked := map[string]bool{}
		for i := 0; i < 2*len(want); i++ {
			in, err := prov.Instance()
			if err != nil {
				t.Fatal(err)
			}
			if s := contents(t, []Instance{in})[0]; !exist[s] {
				t.Errorf("Provider.Instance() = %s, which does not exist", s)
			}
			picked[in.ID] = true
		}
		if len(picked) != len(want) {
			t.Errorf("round robin picked %v of %v", picked, ports(want))
		}

		for _, g := range []*Registration{dyn, seq} {
			if err := g.Unregister(ctx); err != nil {
				t.Fatal(err)
			}
		}
		testkit.WaitFor(t, 20*time.Second, "the cache sees the unregistrations", func() bool { return len(cache.Instances()) == 2 })
	})
}

// TestCancellationMatrix: Register, Unregister and NewCache with a
// cancelled context (already, or at points through their first steps) fail
// with context.Canceled and leave nothing behind: no node, no registration
// that comes back on a new session, no cache goroutine (goleak in TestMain).
func TestCancellationMatrix(t *testing.T) {
	needZK(t)
	restore(t)
	ctx := ctxT(t, 2*time.Minute)
	base := basePath()
	svc := path.Join(base, "svc")
	rebuilt := make(chan resilience.RebuildReport, 16)
	c := testkit.NewClient(t, ens, resilience.WithSessionTimeout(faultTimeout),
		resilience.WithRebuildReport(func(rep resilience.RebuildReport) { rebuilt <- rep }))
	r, _ := New(c.S, base)
	defer r.Close()
	obs, _ := New(connect(t, ens.Addrs()), base)
	defer obs.Close()
	gone := func(id string) bool { return len(nodesNamed(t, obs.s, svc, id)) == 0 }

	// Register and NewCache with a context already cancelled.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.Register(done, instance("svc", "pre", 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Register with a cancelled context: %v, want context.Canceled", err)
	}
	if !gone("pre") {
		t.Fatal("cancelled Register left a node")
	}
	if _, err := r.NewCache(done, "svc"); !errors.Is(err, context.Canceled) {
		t.Fatalf("NewCache with a cancelled context: %v, want context.Canceled", err)
	}

	// Cancelled at points through the first steps: either it succeeded
	// before the cancel, or it failed with context.Canceled and left
	// nothing.
	delays := []time.Duration{0, 50 * time.Microsecond, 200 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond}
	var registered, cancelled, loaded int
	for i, d := range delays {
		for _, st := range []ServiceType{Dynamic, DynamicSequential} {
			id := fmt.Sprintf("mid-%d-%s", i, strings.ToLower(string(st)))
			in := instance("svc", id, 1)
			in.ServiceType = st
			cctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(d, cancel)
			reg, err := r.Register(cctx, in)
			cancel()
			if _, _, err := c.S.Exists(ctx, svc); err != nil { // after any create in flight
				t.Fatal(err)
			}
			switch {
			case err == nil:
				registered++
				if uerr := reg.Unregister(ctx); uerr != nil {
					t.Fatal(uerr)
				}
			case !errors.Is(err, context.Canceled):
				t.Fatalf("Register cancelled after %v: %v, want context.Canceled", d, err)
			default:
				cancelled++
			}
			// A create the cancel overtook completes on the ensemble and is
			// then removed by the session: wait for that, with a deadline.
			testkit.WaitFor(t, 10*time.Second, fmt.Sprintf("Register (%s) cancelled after %v (err %v) leaves no node", st, d, err), func() bool {
				return gone(id)
			})
		}
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(d, cancel)
		cache, err := r.NewCache(cctx, "svc")
		cancel()
		switch {
		case err == nil:
			loaded++
			cache.Close()
		case !errors.Is(err, context.Canceled):
			t.Fatalf("NewCache cancelled after %v: %v, want context.Canceled", d, err)
		}
	}

	t.Logf("cancelled part way: %d Registers failed with context.Canceled, %d succeeded first; %d of %d caches loaded first",
		cancelled, registered, loaded, len(delays))

	keep, err := r.Register(ctx, instance("svc", "keep", 1)) // keeps the service node; shows the rebuild ran
	if err != nil {
		t.Fatal(err)
	}

	// Cancelled with its create in flight: the client's link delays every
	// chunk by 200ms, so the create reaches the ensemble after the caller
	// gave up at 100ms. The session removes the node it made.
	setLatency := func(d time.Duration) {
		for i := range c.Link.Addrs() {
			c.Link.Proxy(i).SetLatency(d)
		}
	}
	for _, st := range []ServiceType{Dynamic, DynamicSequential} {
		id := "inflight-" + strings.ToLower(string(st))
		in := instance("svc", id, 1)
		in.ServiceType = st
		setLatency(200 * time.Millisecond)
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err := r.Register(cctx, in)
		cancel()
		setLatency(0)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Register (%s) cancelled with its create in flight: %v, want context.Canceled", st, err)
		}
		// A later request of the same session is answered after the create
		// was applied: only then can its node be looked for.
		if _, _, err := c.S.Exists(ctx, svc); err != nil {
			t.Fatal(err)
		}
		testkit.WaitFor(t, 10*time.Second, fmt.Sprintf("Register (%s) cancelled with its create in flight leaves no node", st), func() bool {
			return gone(id)
		})
	}

	// Unregister with a cancelled context fails cleanly, and the
	// registration is over: not re-registered on a new session.
	reg, err := r.Register(ctx, instance("svc", "unreg", 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Unregister(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Unregister with a cancelled context: %v, want context.Canceled", err)
	}
	old := c.S.SessionID()
	if err := ens.ExpireSession(ctx, old); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(30 * time.Second)
	for ok := false; !ok; {
		select {
		case rep := <-rebuilt:
			ok = rep.SessionID != old && rep.Err == nil && c.S.SessionID() == rep.SessionID
		case <-deadline:
			t.Fatal("no rebuild on a new session")
		}
	}
	if !testkit.OwnedBy(t, obs.s, keep.Path(), c.S.SessionID()) {
		t.Fatal("the kept registration is not back after the rebuild")
	}
	if !gone("unreg") {
		t.Fatalf("a registration unregistered with a cancelled context came back: %v", nodesNamed(t, obs.s, svc, "unreg"))
	}
	if err := reg.Unregister(ctx); err != nil {
		t.Fatalf("retried Unregister: %v", err)
	}
	if err := keep.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	if got := testkit.Children(t, obs.s, svc); len(got) != 0 {
		t.Fatalf("left behind: %v", got)
	}
}
