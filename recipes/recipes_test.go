package recipes_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/cache"
	"github.com/zkrecipes/zkrecipes/internal/interop"
	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/recipes"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// waitMembers waits until g sees exactly the member ids want.
func waitMembers(t *testing.T, g *recipes.Group, want ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := g.Members()
		ok := len(got) == len(want)
		for _, id := range want {
			if _, in := got[id]; !in {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("members %v, want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Membership comes back after expiry; a member that closes disappears from
// the others' views.
func TestGroupMembership(t *testing.T) {
	needZK(t)
	ctx := ctxT(t, time.Minute)
	p := testkit.Path("/group")
	sa := connect(t, ens.Addrs(), resilience.WithSessionTimeout(2*time.Second))
	a, err := recipes.JoinGroup(ctx, sa, p, "a", []byte("alpha"))
	if err != nil {
		t.Fatal(err)
	}
	sb := connect(t, ens.Addrs())
	b, err := recipes.JoinGroup(ctx, sb, p, "b", []byte("beta"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitMembers(t, b, "a", "b")
	waitMembers(t, a, "a", "b")
	if err := a.Update(ctx, []byte("alpha2")); err != nil {
		t.Fatal(err)
	}
	old := sa.SessionID()
	if err := ens.ExpireSession(ctx, old); err != nil {
		t.Fatal(err)
	}
	// Back means: a's node, with its latest data, belongs to a's new
	// session (read after a sync, so not an older view of the node the old
	// session left), and the observer's view shows that data. The data
	// alone could be the observer's stale view of the old session's node.
	member := p + "/a"
	deadline := time.Now().Add(20 * time.Second)
	for {
		sid := sa.SessionID()
		var owner int64
		var data []byte
		if sid != old {
			if err := znode.Settle(ctx, sb); err != nil {
				t.Fatal(err)
			}
			if d, st, err := sb.Get(ctx, member); err == nil {
				owner, data = st.EphemeralOwner, d
			} else if !errors.Is(err, zk.ErrNoNode) {
				t.Fatal(err)
			}
		}
		if sid != old && owner == sid && string(data) == "alpha2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("member a not back on its new session: session %#x (was %#x), node owner %#x, data %q, observer sees %q",
				sid, old, owner, data, b.Members()["a"])
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The observer's view follows: it reports a's node of the new session.
	sid := sa.SessionID()
	for seen := false; !seen; {
		select {
		case e := <-b.Events():
			seen = e.Node.Path == member && e.Node.Stat.EphemeralOwner == sid && string(e.Node.Data) == "alpha2" &&
				(e.Type == cache.NodeAdded || e.Type == cache.NodeUpdated)
		case <-time.After(time.Until(deadline)):
			t.Fatalf("observer never reported a's node of session %#x; it sees %q", sid, b.Members()["a"])
		}
	}
	if got := string(b.Members()["a"]); got != "alpha2" {
		t.Errorf("observer sees member a as %q, want alpha2", got)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, b, "b")
	if err := a.Update(ctx, nil); !errors.Is(err, recipes.ErrClosed) {
		t.Errorf("Update after Close: %v", err)
	}
	if _, err := recipes.JoinGroup(ctx, sa, p, "x/y", nil); !errors.Is(err, resilience.ErrInvalidPath) {
		t.Errorf("bad member id: %v", err)
	}
}

func TestBarrier(t *testing.T) {
	needZK(t)
	restore(t)
	ctx := ctxT(t, time.Minute)
	p := testkit.Path("/barrier")
	setter := connect(t, ens.Addrs())
	b, _ := recipes.NewBarrier(setter, p)
	if err := b.Set(ctx); err != nil {
		t.Fatal(err)
	}
	srv := ens.Server(0)
	ws := connect(t, []string{srv.Addr()}, resilience.WithSessionTimeout(10*time.Second))
	wb, _ := recipes.NewBarrier(ws, p)
	done := make(chan error, 1)
	go func() { done <- wb.Wait(ctx) }()
	// The waiter's connection drops while it waits; it keeps waiting.
	time.Sleep(100 * time.Millisecond)
	srv.Proxy().DropConnections()
	if err := ws.WaitState(ctx, resilience.Reconnected); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("Wait returned %v while the barrier stands", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := b.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiter stuck after the barrier came down")
	}
}

// Five members across three sessions, one session's connection dropping
// while its members wait: all enter together, all leave together, nobody
// is stuck.
func TestDoubleBarrier(t *testing.T) {
	needZK(t)
	restore(t)
	ctx := ctxT(t, time.Minute)
	p := testkit.Path("/double")
	srv := ens.Server(0)
	sessions := []*resilience.Session{
		connect(t, []string{srv.Addr()}, resilience.WithSessionTimeout(10*time.Second)),
		connect(t, []string{ens.Server(1).Addr()}),
		connect(t, []string{ens.Server(2).Addr()}),
	}
	const n = 5
	var mu sync.Mutex
	var enterCalled, entered, leaveCalled, left []time.Time
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := 0; i < n; i++ {
		d, err := recipes.NewDoubleBarrier(sessions[i%3], p, n)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == n-1 {
				<-gate // the last member arrives after the drop
			}
			mu.Lock()
			enterCalled = append(enterCalled, time.Now())
			mu.Unlock()
			if err := d.Enter(ctx); err != nil {
				t.Errorf("member %d enter: %v", i, err)
				return
			}
			mu.Lock()
			entered = append(entered, time.Now())
			mu.Unlock()
			time.Sleep(time.Duration(i*20) * time.Millisecond) // leave at different times
			mu.Lock()
			leaveCalled = append(leaveCalled, time.Now())
			mu.Unlock()
			if err := d.Leave(ctx); err != nil {
				t.Errorf("member %d leave: %v", i, err)
				return
			}
			mu.Lock()
			left = append(left, time.Now())
			mu.Unlock()
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(testkit.Children(t, sessions[1], p)) < n-1 {
		if time.Now().After(deadline) {
			t.Fatal("members never queued")
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Proxy().DropConnections()
	if err := sessions[0].WaitState(ctx, resilience.Reconnected); err != nil {
		t.Fatal(err)
	}
	close(gate)
	wg.Wait()
	if len(entered) != n || len(left) != n {
		t.Fatalf("%d entered, %d left, of %d", len(entered), len(left), n)
	}
	last := func(ts []time.Time) time.Time {
		m := ts[0]
		for _, x := range ts {
			if x.After(m) {
				m = x
			}
		}
		return m
	}
	for _, e := range entered {
		if e.Before(last(enterCalled)) {
			t.Fatal("a member entered before the last one arrived")
		}
	}
	for _, l := range left {
		if l.Before(last(leaveCalled)) {
			t.Fatal("a member left before the last one began leaving")
		}
	}
	if names := testkit.Children(t, sessions[1], p); len(names) != 0 {
		t.Fatalf("nodes left behind: %v", names)
	}
}

func TestSharedCount(t *testing.T) {
	needZK(t)
	ctx := ctxT(t, time.Minute)
	p := testkit.Path("/counter")
	s := connect(t, ens.Addrs())
	c, err := recipes.NewSharedCount(ctx, s, p, 7)
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	changes := c.Subscribe(wctx)
	if v := <-changes; v.Value != 7 {
		t.Fatalf("first value %d", v.Value)
	}
	cur, err := c.Get(ctx)
	if err != nil || cur.Value != 7 {
		t.Fatalf("Get: %+v, %v", cur, err)
	}
	if ok, err := c.TrySet(ctx, cur, 8); !ok || err != nil {
		t.Fatalf("TrySet: %v %v", ok, err)
	}
	if ok, err := c.TrySet(ctx, cur, 9); ok || err != nil {
		t.Fatalf("stale TrySet succeeded: %v %v", ok, err)
	}
	deadline := time.After(10 * time.Second)
	for seen := false; !seen; {
		select {
		case v, ok := <-changes:
			if !ok {
				t.Fatal("Subscribe ended before the change was seen")
			}
			seen = v.Value == 8
		case <-deadline:
			t.Fatal("change not seen")
		}
	}
	// Concurrent adds from several sessions all count.
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		other, err := recipes.NewSharedCount(ctx, connect(t, ens.Addrs()), p, 0)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				if _, err := other.Add(ctx, 1); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	// s may sit on a server that has not applied the last add yet: reads
	// are not linearizable across servers, so sync before reading.
	if err := znode.Settle(ctx, s); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get(ctx); v.Value != 48 {
		t.Fatalf("after 40 adds: %d, want 48", v.Value)
	}
	// Malformed data gets a clear error.
	if _, err := s.Set(ctx, p, []byte("abc"), -1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx); !errors.Is(err, recipes.ErrMalformedCount) {
		t.Fatalf("malformed counter: %v", err)
	}
}

// Counts written by Go are read by Curator's SharedCount and Kazoo's
// Counter(support_curator=True), and the other way round.
func TestSharedCountInterop(t *testing.T) {
	needZK(t)
	cur := interop.Curator(t)
	kaz := interop.Kazoo(t)
	ctx := ctxT(t, time.Minute)
	conn := ens.ConnectString()
	if err := cur.Connect(ctx, "j", conn, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := kaz.Connect(ctx, "k", conn, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	p := testkit.Path("/counter-interop")
	gs := connect(t, ens.Addrs())
	c, err := recipes.NewSharedCount(ctx, gs, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	check := func(who string, want int32) {
		t.Helper()
		// The write may have gone through another server: sync first.
		// (Curator's read starts with a create, which syncs it; Kazoo's
		// driver syncs before reading.)
		if err := znode.Settle(ctx, gs); err != nil {
			t.Fatal(err)
		}
		if v, err := c.Get(ctx); err != nil || v.Value != want {
			t.Fatalf("Go read %d (%v) after %s, want %d", v.Value, err, who, want)
		}
		if v, err := cur.CounterGet(ctx, "j", p); err != nil || v != want {
			t.Fatalf("Curator read %d (%v) after %s, want %d", v, err, who, want)
		}
		if v, err := kaz.CounterGet(ctx, "k", p); err != nil || v != want {
			t.Fatalf("Kazoo read %d (%v) after %s, want %d", v, err, who, want)
		}
	}
	if err := c.Set(ctx, 1234567); err != nil {
		t.Fatal(err)
	}
	check("Go's set", 1234567)
	if err := cur.CounterSet(ctx, "j", p, -42); err != nil {
		t.Fatal(err)
	}
	check("Curator's set", -42)
	if err := kaz.CounterSet(ctx, "k", p, 99); err != nil {
		t.Fatal(err)
	}
	check("Kazoo's set", 99)

}
