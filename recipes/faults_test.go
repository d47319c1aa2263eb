package recipes_test

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/cache"
	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/recipes"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// faultTimeout is the faulted client's session timeout (the fault matrix's T).
const faultTimeout = 2 * time.Second

// nodeString is what a cache must agree on about a node: its data and the
// stat fields that say which version of which incarnation of it this is.
func nodeString(data []byte, st zk.Stat) string {
	return fmt.Sprintf("%q v%d c%d m%d", data, st.Version, st.Czxid, st.Mzxid)
}

// stated reads the subtree at p afresh, after a sync, as nodeStrings by
// path (empty when p does not exist). depth bounds how far below p it goes
// (-1: no bound).
func stated(t testing.TB, s *resilience.Session, p string, depth int) map[string]string {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	if err := znode.Settle(ctx, s); err != nil && !errors.Is(err, zk.ErrNoNode) {
		t.Fatalf("sync %s: %v", p, err)
	}
	out := map[string]string{}
	var walk func(p string, depth int)
	walk = func(p string, depth int) {
		data, st, err := s.Get(ctx, p)
		if errors.Is(err, zk.ErrNoNode) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		out[p] = nodeString(data, *st)
		if depth == 0 {
			return
		}
		kids, _, err := s.Children(ctx, p)
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			t.Fatal(err)
		}
		for _, k := range kids {
			walk(path.Join(p, k), depth-1)
		}
	}
	walk(p, depth)
	return out
}

func snapshotStrings(snap map[string]cache.Entry) map[string]string {
	out := map[string]string{}
	for p, n := range snap {
		out[p] = nodeString(n.Data, n.Stat)
	}
	return out
}

// converge waits until got() equals want, failing with their difference.
func converge(t testing.TB, what string, want map[string]string, got func() map[string]string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		d := diff(got(), want)
		if d == "[]" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never converged on the ensemble's contents (got vs want): %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustCreate(t testing.TB, s *resilience.Session, p, data string) {
	t.Helper()
	if _, err := s.Create(ctxT(t, 30*time.Second), p, []byte(data), 0, nil); err != nil {
		t.Fatalf("create %s: %v", p, err)
	}
}

func mustSet(t testing.TB, s *resilience.Session, p, data string) {
	t.Helper()
	if _, err := s.Set(ctxT(t, 30*time.Second), p, []byte(data), -1); err != nil {
		t.Fatalf("set %s: %v", p, err)
	}
}

func mustDelete(t testing.TB, s *resilience.Session, p string) {
	t.Helper()
	if err := s.Delete(ctxT(t, 30*time.Second), p, -1); err != nil {
		t.Fatalf("delete %s: %v", p, err)
	}
}

// stamp is how a blocking call on another goroutine ended, and when.
type stamp struct {
	who string
	err error
	at  time.Time
}

// receive waits for n stamps on ch, passing each to each as it comes.
func receive(t testing.TB, what string, ch <-chan stamp, n int, each ...func(stamp)) []stamp {
	t.Helper()
	var out []stamp
	timeout := time.After(30 * time.Second)
	for len(out) < n {
		select {
		case s := <-ch:
			out = append(out, s)
			for _, f := range each {
				f(s)
			}
		case <-timeout:
			t.Fatalf("%s: %d of %d calls returned within 30s (%v)", what, len(out), n, out)
		}
	}
	return out
}

// adds counts a SharedCount adder's outcomes.
type adds struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []error
}

func (a *adds) String() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return fmt.Sprintf("%d ok, %d failed %v", a.ok.Load(), a.failed.Load(), a.errs)
}

// TestFaultMatrix puts every recipe of the package on one client, c, at
// once, with its counterparts on an unfaulted client, w; injects one fault
// of the matrix into c; has w change things while c is cut off (for
// quorum-loss, when nobody can write, as soon as the ensemble is back,
// while c recovers); heals; and asserts each recipe's promise.
func TestFaultMatrix(t *testing.T) {
	needZK(t)
	testkit.ForEachFault(t, ens, faultTimeout, func(t *testing.T, f testkit.Fault) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		c := testkit.NewClient(t, ens, resilience.WithSessionTimeout(faultTimeout))
		w := testkit.NewClient(t, ens) // default timeout: it rides out the quorum loss
		var wg sync.WaitGroup
		t.Cleanup(func() { cancel(); wg.Wait() }) // before the sessions close
		sid0 := c.S.SessionID()
		base := testkit.Path("/faults")
		if err := znode.EnsurePath(ctx, w.S, base); err != nil {
			t.Fatal(err)
		}
		var duringC, duringW []func() // c's own calls once the fault is in; w's changes
		type check struct {
			name string
			fn   func(t *testing.T)
		}
		var checks []check
		later := func(name string, fn func(t *testing.T)) { checks = append(checks, check{name, fn}) }
		goStamp := func(ch chan<- stamp, who string, fn func() error) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := fn()
				ch <- stamp{who, err, time.Now()}
			}()
		}

		// NodeCache on c: a node deleted and created again (and set), one
		// created, one deleted, all while c is cut off.
		pRe, pNew, pGone := base+"/node-re", base+"/node-new", base+"/node-gone"
		mustCreate(t, w.S, pRe, "n0")
		mustCreate(t, w.S, pGone, "g0")
		ncs := map[string]*cache.Node{}
		for _, p := range []string{pRe, pNew, pGone} {
			nc, err := cache.NewNode(ctx, c.S, p)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			ncs[p] = nc
		}
		duringW = append(duringW, func() {
			mustSet(t, w.S, pRe, "n1")
			mustDelete(t, w.S, pRe)
			mustCreate(t, w.S, pRe, "n2")
			mustSet(t, w.S, pRe, "n3")
			mustCreate(t, w.S, pNew, "c0")
			mustSet(t, w.S, pNew, "c1")
			mustDelete(t, w.S, pGone)
		})
		later("NodeCache", func(t *testing.T) {
			for p, nc := range ncs {
				converge(t, "NodeCache "+path.Base(p), stated(t, w.S, p, 0), func() map[string]string {
					out := map[string]string{}
					if n, ok := nc.Entry(); ok {
						out[n.Path] = nodeString(n.Data, n.Stat)
					}
					return out
				})
			}
		})

		// TreeCache on c: a subtree with a node set, one created below it,
		// one deleted, one deleted and created again, one created. Both
		// the cache and its events replayed must match the ensemble.
		pt := base + "/tree"
		for _, n := range [][2]string{{"", "t0"}, {"/a", "a0"}, {"/b", "b0"}, {"/c", "c0"}, {"/c/x", "x0"}} {
			mustCreate(t, w.S, pt+n[0], n[1])
		}
		tc, err := cache.NewTree(ctx, c.S, pt)
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		var vmu sync.Mutex
		view := map[string]string{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range tc.Events() { // closed by tc.Close
				vmu.Lock()
				switch e.Type {
				case cache.NodeAdded, cache.NodeUpdated:
					view[e.Node.Path] = nodeString(e.Node.Data, e.Node.Stat)
				case cache.NodeRemoved:
					delete(view, e.Node.Path)
				}
				vmu.Unlock()
			}
		}()
		duringW = append(duringW, func() {
			mustSet(t, w.S, pt+"/a", "a1")
			mustCreate(t, w.S, pt+"/a/y", "y0")
			mustDelete(t, w.S, pt+"/b")
			mustDelete(t, w.S, pt+"/c/x")
			mustDelete(t, w.S, pt+"/c")
			mustCreate(t, w.S, pt+"/c", "c1")
			mustCreate(t, w.S, pt+"/d", "d0")
		})
		later("TreeCache", func(t *testing.T) {
			want := stated(t, w.S, pt, -1)
			converge(t, "TreeCache", want, func() map[string]string { return snapshotStrings(tc.Snapshot()) })
			converge(t, "TreeCache events", want, func() map[string]string {
				vmu.Lock()
				defer vmu.Unlock()
				out := make(map[string]string, len(view))
				for k, v := range view {
					out[k] = v
				}
				return out
			})
		})

		// Group: a member on c, whose data it updates during the fault,
		// and an observer member on w.
		pg := base + "/group"
		ga, err := recipes.JoinGroup(ctx, c.S, pg, "faulted", []byte("f0"))
		if err != nil {
			t.Fatal(err)
		}
		defer ga.Close()
		gb, err := recipes.JoinGroup(ctx, w.S, pg, "observer", []byte("o0"))
		if err != nil {
			t.Fatal(err)
		}
		defer gb.Close()
		waitMembers(t, gb, "faulted", "observer")
		updated := make(chan stamp, 1)
		duringC = append(duringC, func() {
			goStamp(updated, "Update", func() error { return ga.Update(ctx, []byte("f1")) })
		})
		later("Group", func(t *testing.T) {
			u := receive(t, "Update on the faulted client", updated, 1)[0]
			// An Update whose session was lost under it still counts: the
			// member's data was changed before the write, and the new
			// session's rebuild publishes it. Any other error is a failure
			// (and leaves the data unknown).
			failed := u.err != nil && !errors.Is(u.err, resilience.ErrSessionLost)
			if failed {
				t.Errorf("Update during the fault: %v", u.err)
			}
			node := pg + "/faulted"
			var data []byte
			var seen string // what the last look found, for the failure message
			deadline := time.Now().Add(20 * time.Second)
			for {
				_ = znode.Settle(ctx, w.S)
				d, st, gerr := w.S.Get(ctx, node)
				data = d
				sid := c.S.SessionID()
				if gerr == nil && st.EphemeralOwner == sid && (string(d) == "f1" || failed && string(d) == "f0") {
					break
				}
				seen = fmt.Sprintf("node owner %#x, data %q, err %v; c's session %#x (%s); Update returned %v", st.EphemeralOwner, d, gerr, sid, c.S.State(), u.err)
				if time.Now().After(deadline) {
					t.Fatalf("after 20s: the member back, owned by c's current session, with its latest data; last seen: %s", seen)
				}
				time.Sleep(20 * time.Millisecond)
			}
			latest := string(data)
			want := map[string]string{"faulted": latest, "observer": "o0"}
			for who, g := range map[string]*recipes.Group{"observer": gb, "faulted": ga} {
				testkit.WaitFor(t, 20*time.Second, "the "+who+"'s view of the membership", func() bool {
					got := map[string]string{}
					for id, d := range g.Members() {
						got[id] = string(d)
					}
					return diff(got, want) == "[]"
				})
			}
			t.Logf("Update returned %v", u.err)
		})

		// Barrier: two waiters on c; one barrier comes down during the
		// fault, the other only after heal. A waiter that returns before
		// its barrier's Remove was called passed a standing barrier.
		type barrier struct {
			b       *recipes.Barrier
			removed atomic.Bool
			done    chan stamp
		}
		var barriers [2]*barrier
		for i := range barriers {
			p := fmt.Sprintf("%s/barrier%d", base, i)
			setter, _ := recipes.NewBarrier(w.S, p)
			if err := setter.Set(ctx); err != nil {
				t.Fatal(err)
			}
			// c's server must have applied the Set before the waiter
			// looks, or it rightly sees no barrier.
			if err := znode.Settle(ctx, c.S); err != nil {
				t.Fatal(err)
			}
			waiter, _ := recipes.NewBarrier(c.S, p)
			br := &barrier{b: setter, done: make(chan stamp, 1)}
			barriers[i] = br
			goStamp(br.done, p, func() error {
				err := waiter.Wait(ctx)
				if !br.removed.Load() {
					return fmt.Errorf("passed the standing barrier (Wait returned %v)", err)
				}
				return err
			})
		}
		lower := func(t *testing.T, br *barrier) {
			br.removed.Store(true)
			if err := br.b.Remove(ctx); err != nil {
				t.Fatal(err)
			}
		}
		duringW = append(duringW, func() { lower(t, barriers[0]) })
		later("Barrier", func(t *testing.T) {
			if s := receive(t, "waiter on the barrier removed during the fault", barriers[0].done, 1)[0]; s.err != nil {
				t.Errorf("barrier removed during the fault: %v", s.err)
			}
			select { // the other one must still wait; it is checked again on return
			case s := <-barriers[1].done:
				t.Fatalf("barrier still standing after heal: waiter returned: %v", s.err)
			default:
			}
			lower(t, barriers[1])
			if s := receive(t, "waiter on the barrier removed after heal", barriers[1].done, 1)[0]; s.err != nil {
				t.Errorf("barrier removed after heal: %v", s.err)
			}
		})

		// DoubleBarrier, fault while entering: three members, one on c;
		// two wait when the fault comes, the third arrives during it.
		pde := base + "/double-enter"
		var dms []*recipes.DoubleBarrier
		for _, s := range []*resilience.Session{c.S, w.S, w.S} {
			d, err := recipes.NewDoubleBarrier(s, pde, 3)
			if err != nil {
				t.Fatal(err)
			}
			dms = append(dms, d)
		}
		entered := make(chan stamp, 3)
		goStamp(entered, "member on c", func() error { return dms[0].Enter(ctx) })
		goStamp(entered, "member 2 on w", func() error { return dms[1].Enter(ctx) })
		testkit.WaitChildren(t, w.S, pde, 2, 20*time.Second)
		var thirdAt time.Time
		duringW = append(duringW, func() {
			thirdAt = time.Now()
			goStamp(entered, "member 3 on w", func() error { return dms[2].Enter(ctx) })
		})
		later("DoubleBarrier-enter", func(t *testing.T) {
			receive(t, "Enter", entered, 3, func(s stamp) {
				if s.err != nil {
					t.Errorf("%s: Enter: %v", s.who, s.err)
				} else if s.at.Before(thirdAt) {
					t.Errorf("%s entered at %s, before the third member arrived at %s", s.who, s.at.Format("15:04:05.000"), thirdAt.Format("15:04:05.000"))
				}
			})
			left := make(chan stamp, 3)
			var mu sync.Mutex
			var lastCall time.Time
			for i, d := range dms {
				goStamp(left, fmt.Sprint("member ", i), func() error {
					mu.Lock()
					lastCall = time.Now()
					mu.Unlock()
					return d.Leave(ctx)
				})
			}
			for _, s := range receive(t, "Leave", left, 3) {
				mu.Lock()
				last := lastCall
				mu.Unlock()
				if s.err != nil {
					t.Errorf("%s: Leave: %v", s.who, s.err)
				} else if s.at.Before(last) {
					t.Errorf("%s left before the last member began leaving", s.who)
				}
			}
			if names := testkit.Children(t, w.S, pde); len(names) != 0 {
				t.Errorf("nodes left behind: %v", names)
			}
		})

		// DoubleBarrier, fault while leaving: two members, both in; the one
		// on c is leaving when the fault comes, the other leaves during it.
		pdl := base + "/double-leave"
		q1, _ := recipes.NewDoubleBarrier(c.S, pdl, 2)
		q2, _ := recipes.NewDoubleBarrier(w.S, pdl, 2)
		in := make(chan stamp, 1)
		goStamp(in, "member on c", func() error { return q1.Enter(ctx) })
		if err := q2.Enter(ctx); err != nil {
			t.Fatal(err)
		}
		if s := receive(t, "Enter", in, 1)[0]; s.err != nil {
			t.Fatal(s.err)
		}
		out := make(chan stamp, 2)
		goStamp(out, "member on c", func() error { return q1.Leave(ctx) })
		var secondAt time.Time
		duringW = append(duringW, func() {
			secondAt = time.Now()
			goStamp(out, "member on w", func() error { return q2.Leave(ctx) })
		})
		later("DoubleBarrier-leave", func(t *testing.T) {
			for _, s := range receive(t, "Leave", out, 2) {
				if s.err != nil {
					t.Errorf("%s: Leave: %v", s.who, s.err)
				} else if s.at.Before(secondAt) {
					t.Errorf("%s left before the other member began leaving", s.who)
				}
			}
			if names := testkit.Children(t, w.S, pdl); len(names) != 0 {
				t.Errorf("nodes left behind: %v", names)
			}
		})

		// SharedCount: c and w add 1 in a loop across the fault; c watches
		// the counter. A second counter takes a TrySet from c during the
		// fault at the version it read before (nobody else writes it), a
		// third one at a version w has changed since.
		pc := base + "/count"
		cc, err := recipes.NewSharedCount(ctx, c.S, pc, 0)
		if err != nil {
			t.Fatal(err)
		}
		cw, err := recipes.NewSharedCount(ctx, w.S, pc, 0)
		if err != nil {
			t.Fatal(err)
		}
		var addC, addW adds
		stopAdds := make(chan struct{})
		var addWG sync.WaitGroup
		for _, a := range []struct {
			sc *recipes.SharedCount
			n  *adds
		}{{cc, &addC}, {cw, &addW}} {
			addWG.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer addWG.Done()
				for {
					select {
					case <-stopAdds:
						return
					default:
					}
					if _, err := a.sc.Add(ctx, 1); err != nil {
						if ctx.Err() != nil {
							return
						}
						a.n.failed.Add(1)
						a.n.mu.Lock()
						a.n.errs = append(a.n.errs, err)
						a.n.mu.Unlock()
					} else {
						a.n.ok.Add(1)
					}
					time.Sleep(5 * time.Millisecond) // load, not timing: spare the two cores
				}
			}()
		}
		watch := cc.Subscribe(ctx)
		testkit.WaitFor(t, 20*time.Second, "adds from c before the fault", func() bool { return addC.ok.Load() >= 3 })
		fresh, stale := base+"/count-fresh", base+"/count-stale"
		var trySets [2]*recipes.SharedCount
		var before [2]recipes.Count
		for i, p := range []string{fresh, stale} {
			if trySets[i], err = recipes.NewSharedCount(ctx, c.S, p, 0); err != nil {
				t.Fatal(err)
			}
			if before[i], err = trySets[i].Get(ctx); err != nil {
				t.Fatal(err)
			}
		}
		other, _ := recipes.NewSharedCount(ctx, w.S, stale, 0)
		if err := other.Set(ctx, 5); err != nil {
			t.Fatal(err)
		}
		type trySet struct {
			ok  bool
			err error
		}
		var tried [2]chan trySet
		duringC = append(duringC, func() {
			for i := range trySets {
				tried[i] = make(chan trySet, 1)
				wg.Add(1)
				go func() {
					defer wg.Done()
					ok, err := trySets[i].TrySet(ctx, before[i], 100)
					tried[i] <- trySet{ok, err}
				}()
			}
		})
		var addsAtHeal int64
		later("SharedCount", func(t *testing.T) {
			testkit.WaitFor(t, 20*time.Second, "c's adds to go on after heal", func() bool { return addC.ok.Load() >= addsAtHeal+3 })
			close(stopAdds)
			addWG.Wait()
			if err := znode.Settle(ctx, w.S); err != nil {
				t.Fatal(err)
			}
			final, err := cw.Get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			okSum := addC.ok.Load() + addW.ok.Load()
			failed := addC.failed.Load() + addW.failed.Load()
			t.Logf("adds: c %v, w %v; counter %d", &addC, &addW, final.Value)
			if v := int64(final.Value); v < okSum || v > okSum+failed {
				t.Errorf("counter %d after %d successful adds (and %d failed ones): adds lost or doubled", v, okSum, failed)
			}
			deadline := time.After(20 * time.Second)
			for last := (recipes.Count{Version: -1}); last != final; {
				select {
				case v, ok := <-watch:
					if !ok {
						t.Fatalf("Subscribe ended; last value %+v, want %+v", last, final)
					}
					last = v
				case <-deadline:
					t.Fatalf("Subscribe on c delivered %+v, not the latest %+v", last, final)
				}
			}
			want := [2]trySet{{true, nil}, {false, nil}}
			wantValue := [2]int32{100, 5}
			for i, p := range []string{fresh, stale} {
				var got trySet
				select {
				case got = <-tried[i]:
				case <-time.After(30 * time.Second):
					t.Fatalf("TrySet on %s never returned", path.Base(p))
				}
				if got != want[i] {
					t.Errorf("TrySet on %s at version %d: %v, %v; want %v, %v", path.Base(p), before[i].Version, got.ok, got.err, want[i].ok, want[i].err)
				}
				if err := znode.Settle(ctx, w.S); err != nil {
					t.Fatal(err)
				}
				data, _, err := w.S.Get(ctx, p)
				if v, derr := recipes.DecodeCount(data); err != nil || derr != nil || v != wantValue[i] {
					t.Errorf("%s holds %d (%v, %v), want %d", path.Base(p), v, err, derr, wantValue[i])
				}
			}
		})

		// The fault.
		heal := f.Inject(t, c)
		for _, fn := range duringC {
			fn()
		}
		if f.Name != "quorum-loss" {
			for _, fn := range duringW {
				fn()
			}
		}
		heal()
		if f.Name == "quorum-loss" {
			for _, fn := range duringW {
				fn()
			}
		}
		testkit.WaitFor(t, time.Minute, "c back on a session (a new one if the fault expires it)", func() bool {
			st := c.S.State()
			return (st == resilience.Connected || st == resilience.Reconnected) && (!f.Expires || c.S.SessionID() != sid0)
		})
		addsAtHeal = addC.ok.Load()
		t.Logf("%s: session kept: %v", f.Name, c.S.SessionID() == sid0)
		for _, ch := range checks {
			t.Run(ch.name, ch.fn)
		}
	})
}
