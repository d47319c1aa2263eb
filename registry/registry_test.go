package registry

import (
	"context"
	"encoding/json"
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
	"github.com/zkrecipes/zkrecipes/zktest"
)

var ens *zktest.Ensemble

func TestMain(m *testing.M) { testkit.Main(m, &ens, 3) }

var (
	needZK  = testkit.NeedZK
	ctxT    = testkit.Ctx
	connect = testkit.Connect
)

func restore(t testing.TB) { testkit.Restore(t, ens) }

func basePath() string { return testkit.Path("/registrytest") }

func instance(name, id string, port int) Instance {
	return Instance{Name: name, ID: id, Address: "10.0.0.1", Port: Int(port), Payload: json.RawMessage(`{"zone":"a"}`)}
}

// waitInstances waits until reg's view of service, read through s, is want
// (by id and port).
func waitInstances(t testing.TB, r *Registry, service string, want map[string]int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if err := znode.Settle(ctxT(t, 5*time.Second), r.s); err != nil && !errors.Is(err, zk.ErrNoNode) {
			t.Fatal(err)
		}
		ins, err := r.Instances(ctxT(t, 10*time.Second), service)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, in := range ins {
			got[in.ID] = *in.Port
		}
		if reflect.DeepEqual(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("instances %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRegisterSurvivesExpiryWithLatestUpdate(t *testing.T) {
	needZK(t)
	restore(t)
	base := basePath()
	timeout := 2 * time.Second
	rebuilt := make(chan resilience.RebuildReport, 8)
	s := connect(t, []string{ens.Server(0).Addr()}, resilience.WithSessionTimeout(timeout),
		resilience.WithRebuildReport(func(rep resilience.RebuildReport) { rebuilt <- rep }))
	r, err := New(s, base)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	other, _ := New(connect(t, ens.Addrs()), base)
	ctx := ctxT(t, time.Minute)
	reg, err := r.Register(ctx, instance("api", "api-1", 8080))
	if err != nil {
		t.Fatal(err)
	}
	waitInstances(t, other, "api", map[string]int{"api-1": 8080}, 10*time.Second)
	if err := reg.Update(ctx, instance("api", "api-1", 9090)); err != nil {
		t.Fatal(err)
	}
	waitInstances(t, other, "api", map[string]int{"api-1": 9090}, 10*time.Second)

	old := s.SessionID()
	expired := time.Now()
	if err := ens.ExpireSession(ctx, old); err != nil {
		t.Fatal(err)
	}
	waitInstances(t, other, "api", map[string]int{"api-1": 9090}, timeout+5*time.Second)
	if s.SessionID() == old {
		t.Fatal("session not replaced")
	}
	_, st, err := other.s.Exists(ctx, reg.Path())
	if err != nil || st.EphemeralOwner != s.SessionID() {
		t.Fatalf("registration not on the new session: %v", err)
	}
	t.Logf("registered again %v after the expiry", time.Since(expired).Round(time.Millisecond))

	// Someone else deletes it: restored.
	if err := other.s.Delete(ctx, reg.Path(), -1); err != nil {
		t.Fatal(err)
	}
	waitInstances(t, other, "api", map[string]int{"api-1": 9090}, 10*time.Second)

	// Unregister: gone, and stays gone through another expiry.
	if err := reg.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	waitInstances(t, other, "api", map[string]int{}, 10*time.Second)
	if err := reg.Update(ctx, instance("api", "api-1", 1)); !errors.Is(err, ErrUnregistered) {
		t.Errorf("Update after Unregister: %v", err)
	}
	old = s.SessionID()
	if err := ens.ExpireSession(ctx, old); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(timeout + 10*time.Second)
	for done := false; !done; {
		select {
		case rep := <-rebuilt:
			// Done once the registry's rebuild step ran on the new session.
			done = rep.SessionID != old && rep.Err == nil && rep.Round >= 1 && s.SessionID() == rep.SessionID
		case <-deadline:
			t.Fatal("no rebuild on a new session")
		}
	}
	waitInstances(t, other, "api", map[string]int{}, time.Second)
}

// A cache whose own session is partitioned while instances come and go
// converges to the truth after the heal, with events that turn its initial
// view into its final one.
func TestCacheConvergesAfterPartition(t *testing.T) {
	for _, long := range []bool{false, true} {
		name := map[bool]string{false: "reconnect", true: "expiry"}[long]
		t.Run(name, func(t *testing.T) {
			needZK(t)
			restore(t)
			base := basePath()
			ctx := ctxT(t, time.Minute)
			timeout := 2 * time.Second
			writer, _ := New(connect(t, []string{ens.Server(1).Addr(), ens.Server(2).Addr()}), base)
			defer writer.Close()
			var regs []*Registration
			for i := 0; i < 3; i++ {
				reg, err := writer.Register(ctx, instance("svc", fmt.Sprintf("i%d", i), 1000+i))
				if err != nil {
					t.Fatal(err)
				}
				regs = append(regs, reg)
			}
			cs := connect(t, []string{ens.Server(0).Addr()}, resilience.WithSessionTimeout(timeout))
			cr, _ := New(cs, base)
			cache, err := cr.NewCache(ctx, "svc")
			if err != nil {
				t.Fatal(err)
			}
			defer cache.Close()
			view := map[string]Instance{}
			apply := func(e Event) {
				switch e.Type {
				case Added, Updated:
					view[e.Node] = e.Instance
				case Removed:
					delete(view, e.Node)
				}
				// An event is in Instances by the time it is received (no
				// instance here is removed and then added again).
				if e.Type == Malformed {
					t.Errorf("malformed node %s: %v", e.Node, e.Err)
					return
				}
				have := false
				for _, in := range cache.Instances() {
					have = have || in.ID == e.Instance.ID
				}
				if have != (e.Type != Removed) {
					t.Errorf("%v event for %s received before Instances showed it", e.Type, e.Node)
				}
			}
			drain := func(until func() bool) {
				deadline := time.After(20 * time.Second)
				for !until() {
					select {
					case e := <-cache.Events():
						apply(e)
					case <-deadline:
						t.Fatalf("cache view %v never converged", keys(view))
					}
				}
			}
			drain(func() bool { return len(view) == 3 })

			marker, err := cs.Create(ctx, base+"-marker", nil, zk.FlagEphemeral, nil)
			if err != nil {
				t.Fatal(err)
			}
			ens.Server(0).Proxy().Blackhole()
			if err := cs.WaitState(ctx, resilience.Suspended); err != nil {
				t.Fatal(err)
			}
			_ = regs[0].Unregister(ctx)
			if err := regs[1].Update(ctx, instance("svc", "i1", 2001)); err != nil {
				t.Fatal(err)
			}
			if _, err := writer.Register(ctx, instance("svc", "i3", 1003)); err != nil {
				t.Fatal(err)
			}
			if long {
				// The session is Lost only on the ensemble's word, which
				// it hears after the heal: wait until the ensemble has
				// expired it (its marker ephemeral gone).
				testkit.WaitFor(t, 30*time.Second, "the cache's session to expire", func() bool {
					ok, _, err := writer.s.Exists(ctx, marker)
					return err == nil && !ok
				})
			}
			ens.Server(0).Proxy().Heal()
			truth := func() map[string]int {
				ins, err := writer.Instances(ctx, "svc")
				if err != nil {
					t.Fatal(err)
				}
				m := map[string]int{}
				for _, in := range ins {
					m[in.ID] = *in.Port
				}
				return m
			}
			want := truth()
			asPorts := func(ins []Instance) map[string]int {
				m := map[string]int{}
				for _, in := range ins {
					m[in.ID] = *in.Port
				}
				return m
			}
			viewPorts := func() map[string]int {
				m := map[string]int{}
				for _, in := range view {
					m[in.ID] = *in.Port
				}
				return m
			}
			drain(func() bool {
				return reflect.DeepEqual(asPorts(cache.Instances()), want) && reflect.DeepEqual(viewPorts(), want)
			})
			if !reflect.DeepEqual(want, map[string]int{"i1": 2001, "i2": 1002, "i3": 1003}) {
				t.Fatalf("writer's truth is off: %v", want)
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Malformed JSON, empty data, a child that is not an instance and an
// oversized blob: the cache serves the valid instances and reports the bad
// ones.
func TestCacheSkipsMalformed(t *testing.T) {
	needZK(t)
	base := basePath()
	ctx := ctxT(t, time.Minute)
	s := connect(t, ens.Addrs())
	r, _ := New(s, base)
	defer r.Close()
	if _, err := r.Register(ctx, instance("svc", "good", 1)); err != nil {
		t.Fatal(err)
	}
	svc := path.Join(base, "svc")
	bad := map[string][]byte{
		"not-json":  []byte("{this is not json"),
		"empty":     nil,
		"wrong":     []byte(`{"foo":1}`),
		"array":     []byte(`[1,2,3]`),
		"oversized": append([]byte(`{"name":"svc","id":"big","payload":"`), []byte(strings.Repeat("x", 1000000))...),
	}
	for n, d := range bad {
		if _, err := s.Create(ctx, path.Join(svc, n), d, 0, nil); err != nil {
			t.Fatal(n, err)
		}
		t.Cleanup(func() { _ = s.Delete(context.Background(), path.Join(svc, n), -1) })
	}
	cache, err := r.NewCache(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	reported := map[string]bool{}
	for len(reported) < len(bad) {
		select {
		case e := <-cache.Events():
			if e.Type == Malformed {
				if !errors.Is(e.Err, ErrMalformed) {
					t.Errorf("%s: %v does not wrap ErrMalformed", e.Node, e.Err)
				}
				reported[e.Node] = true
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("reported %v of %v", keys(reported), keys(bad))
		}
	}
	if ins := cache.Instances(); len(ins) != 1 || ins[0].ID != "good" {
		t.Fatalf("cache serves %+v", ins)
	}
	// A bad node fixed later becomes an instance; the cache keeps working.
	if _, err := s.Set(ctx, path.Join(svc, "wrong"), mustJSON(t, instance("svc", "wrong", 2)), -1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(cache.Instances()) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("fixed node not picked up: %+v", cache.Instances())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ins, err := r.Instances(ctx, "svc"); err != nil || len(ins) != 2 {
		t.Fatalf("Instances: %v, %v", ins, err)
	}
}

func mustProvider(t testing.TB, c *Cache, opts ...ProviderOption) *Provider {
	t.Helper()
	p, err := NewProvider(c, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustJSON(t testing.TB, in Instance) []byte {
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestProvider(t *testing.T) {
	needZK(t)
	base := basePath()
	ctx := ctxT(t, time.Minute)
	r, _ := New(connect(t, ens.Addrs()), base)
	defer r.Close()
	for i := 0; i < 3; i++ {
		in := instance("svc", fmt.Sprintf("i%d", i), 1000+i)
		if i == 2 {
			in.Payload = json.RawMessage(`{"zone":"b"}`)
		}
		if _, err := r.Register(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	cache, err := r.NewCache(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	go func() {
		for range cache.Events() {
		}
	}()
	rr := mustProvider(t, cache)
	var seen []string
	for i := 0; i < 6; i++ {
		in, err := rr.Instance()
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, in.ID)
	}
	if strings.Join(seen, ",") != "i0,i1,i2,i0,i1,i2" {
		t.Errorf("round robin gave %v", seen)
	}
	st := mustProvider(t, cache, WithStrategy(Sticky(Random())))
	first, _ := st.Instance()
	for i := 0; i < 5; i++ {
		if in, _ := st.Instance(); in.ID != first.ID {
			t.Fatalf("sticky moved from %s to %s", first.ID, in.ID)
		}
	}
	zoneA := mustProvider(t, cache, WithFilter(func(in Instance) bool { return strings.Contains(string(in.Payload), `"a"`) }),
		WithDownPolicy(time.Hour, 2))
	if got := zoneA.Instances(); len(got) != 2 {
		t.Fatalf("filter kept %d", len(got))
	}
	i0 := zoneA.Instances()[0]
	zoneA.NoteError(i0)
	if len(zoneA.Instances()) != 2 {
		t.Fatal("down after one error with a threshold of two")
	}
	zoneA.NoteError(i0)
	if got := zoneA.Instances(); len(got) != 1 || got[0].ID == i0.ID {
		t.Fatalf("not marked down: %v", got)
	}
	zoneA.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if len(zoneA.Instances()) != 2 {
		t.Fatal("still down after the down period")
	}
	empty := mustProvider(t, cache, WithFilter(func(Instance) bool { return false }))
	if _, err := empty.Instance(); !errors.Is(err, ErrNoInstances) {
		t.Fatalf("no instances: %v", err)
	}
	// Once the cache is closed its instances are not followed: a pick
	// says so instead of handing out a stale one.
	if err := cache.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := rr.Instance(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Instance after the cache's Close: %v", err)
	}
	if err := cache.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	if _, err := New(nil, "/x"); !errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrInvalidInstance) {
		t.Errorf("nil session: %v, want ErrInvalidArgument (and not ErrInvalidInstance)", err)
	}
	if _, err := NewProvider(nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("NewProvider(nil): %v, want ErrInvalidArgument", err)
	}
	for _, in := range []Instance{{}, {Name: "a"}, {ID: "b"}, {Name: "a/b", ID: "c"}, {Name: "a", ID: ".."},
		{Name: "a", ID: "b", ServiceType: "WEIRD"}, {Name: "a", ID: "b", Payload: json.RawMessage("{bad")}} {
		if err := in.validate(); !errors.Is(err, ErrInvalidInstance) {
			t.Errorf("validate(%+v) = %v", in, err)
		}
	}
	big := Instance{Name: "a", ID: "b", Payload: json.RawMessage(`"` + strings.Repeat("x", MaxPayload) + `"`)}
	if _, err := big.encode(); !errors.Is(err, ErrInvalidInstance) {
		t.Errorf("oversized instance: %v", err)
	}
	if testing.Short() {
		return
	}
	s := connect(t, ens.Addrs())
	for _, base := range []string{"relative", "/trailing/", "/a//b", ""} {
		_, err := New(s, base)
		if !errors.Is(err, ErrInvalidArgument) || !errors.Is(err, resilience.ErrInvalidPath) {
			t.Errorf("base %q: %v, want ErrInvalidArgument and resilience.ErrInvalidPath", base, err)
		}
	}
	for _, n := range []int{0, -1} {
		if r, err := New(s, basePath(), WithConcurrency(n)); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("WithConcurrency(%d): %v, want ErrInvalidOption", n, err)
			if r != nil {
				r.Close()
			}
		}
	}
	r, err := New(s, basePath(), WithConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := ctxT(t, 10*time.Second)
	if _, err := r.Register(ctx, big); !errors.Is(err, ErrInvalidInstance) {
		t.Errorf("Register oversized: %v", err)
	}
	for _, svc := range []string{"a/b", "", ".."} {
		if _, err := r.NewCache(ctx, svc); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("cache of service %q: %v, want ErrInvalidArgument", svc, err)
		}
		if _, err := r.Instances(ctx, svc); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Instances of service %q: %v, want ErrInvalidArgument", svc, err)
		}
	}
	if names, err := r.Services(ctx); err != nil || len(names) != 0 {
		t.Errorf("rejected calls left services %v (%v)", names, err)
	}
	cache, err := r.NewCache(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	for name, opt := range map[string]ProviderOption{
		"WithDownPolicy(0, 2)":   WithDownPolicy(0, 2),
		"WithDownPolicy(-1s, 2)": WithDownPolicy(-time.Second, 2),
		"WithDownPolicy(1h, 0)":  WithDownPolicy(time.Hour, 0),
		"WithStrategy(nil)":      WithStrategy(nil),
		"WithFilter(nil)":        WithFilter(nil),
	} {
		if _, err := NewProvider(cache, WithStrategy(Random()), opt); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("%s: %v, want ErrInvalidOption", name, err)
		}
	}
	if _, err := NewProvider(cache, WithDownPolicy(time.Second, 1), WithStrategy(Random()), WithFilter(func(Instance) bool { return true })); err != nil {
		t.Errorf("valid provider options: %v", err)
	}
}

// TestClose checks Close's contract: the registry's and its
// registrations' calls return ErrClosed afterwards, the registrations end
// with Done closed, and their nodes are left in place.
func TestClose(t *testing.T) {
	needZK(t)
	ctx := ctxT(t, time.Minute)
	s := connect(t, ens.Addrs())
	base := basePath()
	r, err := New(s, base)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := r.Register(ctx, instance("svc", "dyn", 1))
	if err != nil {
		t.Fatal(err)
	}
	st := instance("svc", "static", 2)
	st.ServiceType = Static
	static, err := r.Register(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Delete(context.Background(), static.Path(), -1) })
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
	for _, g := range []*Registration{dyn, static} {
		select {
		case <-g.Done():
		default:
			t.Errorf("%s: Done not closed by Close", g.Path())
		}
		if err := g.Err(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s: Err %v, want ErrClosed", g.Path(), err)
		}
		if err := g.Update(ctx, g.Instance()); !errors.Is(err, ErrClosed) {
			t.Errorf("%s: Update after Close: %v, want ErrClosed", g.Path(), err)
		}
		if err := g.Unregister(ctx); !errors.Is(err, ErrClosed) {
			t.Errorf("%s: Unregister after Close: %v, want ErrClosed", g.Path(), err)
		}
	}
	if _, err := r.Register(ctx, instance("svc", "late", 3)); !errors.Is(err, ErrClosed) {
		t.Errorf("Register after Close: %v", err)
	}
	if _, err := r.RegisterWait(ctx, instance("svc", "late", 3)); !errors.Is(err, ErrClosed) {
		t.Errorf("RegisterWait after Close: %v", err)
	}
	if _, err := r.NewCache(ctx, "svc"); !errors.Is(err, ErrClosed) {
		t.Errorf("NewCache after Close: %v", err)
	}
	if _, err := r.Instances(ctx, "svc"); !errors.Is(err, ErrClosed) {
		t.Errorf("Instances after Close: %v", err)
	}
	if _, err := r.Services(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Services after Close: %v", err)
	}
	// Close does not unregister: both nodes are still there, and no node
	// was made for the calls after Close.
	got := testkit.Children(t, s, path.Join(base, "svc"))
	sort.Strings(got)
	if !reflect.DeepEqual(got, []string{"dyn", "static"}) {
		t.Errorf("nodes after Close: %v, want [dyn static]", got)
	}
}

func TestDecodeAndURI(t *testing.T) {
	// What Curator 5.4 writes, plus a field it may add in other versions.
	raw := `{"name":"echo","id":"echo-1","address":"10.0.0.7","port":8080,"sslPort":8443,"payload":{"@class":"java.util.LinkedHashMap","zone":"a"},"registrationTimeUTC":1700000000000,"serviceType":"DYNAMIC","uriSpec":{"parts":[{"value":"scheme","variable":true},{"value":"://","variable":false},{"value":"address","variable":true},{"value":":","variable":false},{"value":"ssl-port","variable":true}]},"enabled":true}`
	in, err := Decode([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if in.Name != "echo" || *in.Port != 8080 || *in.SSLPort != 8443 || in.ServiceType != Dynamic {
		t.Fatalf("decoded %+v", in)
	}
	if got := in.URI(nil); got != "https://10.0.0.7:8443" {
		t.Errorf("URI = %q", got)
	}
	spec, err := ParseURISpec("{scheme}://{address}:{port}/v1/{custom}")
	if err != nil {
		t.Fatal(err)
	}
	in.URISpec, in.SSLPort = spec, nil
	if got := in.URI(map[string]string{"custom": "x"}); got != "http://10.0.0.7:8080/v1/x" {
		t.Errorf("URI = %q", got)
	}
	if _, err := ParseURISpec("{open"); err == nil {
		t.Error("unclosed variable accepted")
	}
	// A minimal instance encodes nulls as Curator does.
	b, _ := Instance{Name: "echo", ID: "echo-2", Address: "10.0.0.8", Port: Int(9090), ServiceType: Dynamic}.encode()
	want := `{"name":"echo","id":"echo-2","address":"10.0.0.8","port":9090,"sslPort":null,"payload":null,"registrationTimeUTC":0,"serviceType":"DYNAMIC","uriSpec":null}`
	if string(b) != want {
		t.Errorf("encoded\n%s\nwant\n%s", b, want)
	}
}

// Static instances are persistent and outlive their session; sequential
// ones get a node name of their id plus a sequence number and keep their id
// in the JSON.
func TestServiceTypes(t *testing.T) {
	needZK(t)
	base := basePath()
	ctx := ctxT(t, time.Minute)
	s := connect(t, ens.Addrs())
	r, _ := New(s, base)
	st, err := r.Register(ctx, Instance{Name: "svc", ID: "static-1", Address: "a", Port: Int(1), ServiceType: Static})
	if err != nil {
		t.Fatal(err)
	}
	seq, err := r.Register(ctx, Instance{Name: "svc", ID: "seq", Address: "b", Port: Int(2), ServiceType: DynamicSequential})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(seq.Path(), "seq") || seq.Path() == path.Join(base, "svc", "seq") {
		t.Errorf("sequential node %s", seq.Path())
	}
	other, _ := New(connect(t, ens.Addrs()), base)
	waitInstances(t, other, "svc", map[string]int{"static-1": 1, "seq": 2}, 10*time.Second)
	if _, stat, err := other.s.Exists(ctx, st.Path()); err != nil || stat.EphemeralOwner != 0 {
		t.Fatalf("static instance is not persistent: %v", err)
	}
	r.Close()
	s.Close()
	// The static one stays; the sequential one went with the session.
	waitInstances(t, other, "svc", map[string]int{"static-1": 1}, 10*time.Second)
	_ = other.s.Delete(ctx, st.Path(), -1)
}

// An Update racing the re-registration after an expiry, and an Unregister
// racing it, never leave a second node or a stray one behind.
func TestWritesAfterExpiryMakeOneNode(t *testing.T) {
	needZK(t)
	restore(t)
	base := basePath()
	ctx := ctxT(t, time.Minute)
	s := connect(t, []string{ens.Server(0).Addr()}, resilience.WithSessionTimeout(2*time.Second))
	r, err := New(s, base)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	obs := connect(t, ens.Addrs())
	other, err := New(obs, base)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	nodes := func() []string {
		// obs may be on another server than s: catch up with the leader
		// before reading.
		if err := znode.Settle(ctx, obs); err != nil {
			t.Fatal(err)
		}
		names, _, err := obs.Children(ctx, path.Join(base, "svc"))
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	for round := 0; round < 3; round++ {
		seq, err := r.Register(ctx, Instance{Name: "svc", ID: "seq", Address: "b", Port: Int(1), ServiceType: DynamicSequential})
		if err != nil {
			t.Fatal(err)
		}
		dyn, err := r.Register(ctx, instance("svc", "dyn", 1))
		if err != nil {
			t.Fatal(err)
		}
		if err := ens.ExpireSession(ctx, s.SessionID()); err != nil {
			t.Fatal(err)
		}
		if err := s.WaitState(ctx, resilience.Lost); err != nil {
			t.Fatal(err)
		}
		// Both calls wait for the new session, then race its rebuild.
		errs := make(chan error, 2)
		go func() {
			errs <- seq.Update(ctx, Instance{Name: "svc", ID: "seq", Address: "b", Port: Int(2), ServiceType: DynamicSequential})
		}()
		go func() { errs <- dyn.Unregister(ctx) }()
		for i := 0; i < 2; i++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		waitInstances(t, other, "svc", map[string]int{"seq": 2}, 10*time.Second)
		if got := nodes(); len(got) != 1 {
			t.Fatalf("round %d: nodes %v, want one for the sequential instance", round, got)
		}
		if err := seq.Unregister(ctx); err != nil {
			t.Fatal(err)
		}
		if err := seq.Unregister(ctx); !errors.Is(err, ErrUnregistered) {
			t.Fatalf("second Unregister: %v", err)
		}
		if got := nodes(); len(got) != 0 {
			t.Fatalf("round %d: nodes %v left after Unregister", round, got)
		}
	}
}

// An Unregister whose context ends before the node is removed can be
// called again.
func TestUnregisterCanBeRetried(t *testing.T) {
	needZK(t)
	ctx := ctxT(t, 30*time.Second)
	s := connect(t, ens.Addrs())
	r, _ := New(s, basePath())
	defer r.Close()
	reg, err := r.Register(ctx, instance("svc", "i", 1))
	if err != nil {
		t.Fatal(err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := reg.Unregister(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Unregister with an ended context: %v", err)
	}
	if err := reg.Update(ctx, instance("svc", "i", 2)); !errors.Is(err, ErrUnregistered) {
		t.Errorf("Update after Unregister: %v", err)
	}
	if err := reg.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := s.Exists(ctx, reg.Path()); err != nil || ok {
		t.Fatalf("node still there (%v)", err)
	}
	if err := reg.Unregister(ctx); !errors.Is(err, ErrUnregistered) {
		t.Fatalf("third Unregister: %v", err)
	}
}
