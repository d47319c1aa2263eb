package recipes_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/recipes"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// TestGroupUpdateRacingRebuild updates a member's data in a tight loop
// while its session is expired again and again, so that Updates and the
// new sessions' rebuilds of the member node run at once. The data is a
// counter, so a rebuild that writes back what it read before an Update
// shows as the node's data going backwards; an observer polls for that,
// and at the end the node, on the current session, must hold the last
// update.
func TestGroupUpdateRacingRebuild(t *testing.T) {
	needZK(t)
	ctx := ctxT(t, 3*time.Minute)
	p := testkit.Path("/group-race")
	s := connect(t, ens.Addrs(), resilience.WithSessionTimeout(2*time.Second))
	w := connect(t, ens.Addrs())
	g, err := recipes.JoinGroup(ctx, s, p, "m", []byte("0"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	member := p + "/m"

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var last atomic.Int64 // the latest value given to Update
	var updates, lostUpdates atomic.Int64
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := int64(1); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			last.Store(i)
			err := g.Update(ctx, []byte(strconv.FormatInt(i, 10)))
			switch {
			case err == nil:
				updates.Add(1)
			case errors.Is(err, resilience.ErrSessionLost):
				lostUpdates.Add(1) // the rebuild publishes it
			default:
				t.Errorf("Update %d: %v", i, err)
				return
			}
		}
	}()
	var backwards atomic.Value // string: the first time the data went back
	go func() {
		defer wg.Done()
		var high int64
		for {
			select {
			case <-stop:
				return
			default:
			}
			d, _, err := w.Get(ctx, member)
			if errors.Is(err, zk.ErrNoNode) {
				continue
			}
			if err != nil {
				t.Errorf("observer Get: %v", err)
				return
			}
			v, _ := strconv.ParseInt(string(d), 10, 64)
			if v < high && backwards.Load() == nil {
				backwards.Store(fmt.Sprintf("%d after %d", v, high))
			}
			high = max(high, v)
		}
	}()

	const rounds = 40
	for r := 1; r <= rounds; r++ {
		old := s.SessionID()
		if err := ens.ExpireSession(ctx, old); err != nil {
			t.Fatal(err)
		}
		testkit.WaitFor(t, 20*time.Second, "a new session", func() bool {
			return s.SessionID() != old && s.State().HasSession()
		})
	}
	close(stop)
	wg.Wait()
	if b := backwards.Load(); b != nil {
		t.Errorf("the member's data went backwards: %s (a rebuild wrote back data an Update had replaced)", b)
	}
	want := strconv.FormatInt(last.Load(), 10)
	var seen string
	ok := eventually(20*time.Second, func() bool {
		sid := s.SessionID()
		if err := znode.Settle(ctx, w); err != nil {
			seen = err.Error()
			return false
		}
		d, st, err := w.Get(ctx, member)
		seen = fmt.Sprintf("data %q, owner %#x, err %v; session %#x", d, st.EphemeralOwner, err, sid)
		return err == nil && st.EphemeralOwner == sid && string(d) == want
	})
	if !ok {
		t.Errorf("the member on the current session with the last update %q: last seen %s", want, seen)
	}
	t.Logf("%d rounds: %d updates returned nil, %d ErrSessionLost", rounds, updates.Load(), lostUpdates.Load())
}

// eventually polls cond every 20ms until it holds or d has passed.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// TestGroupTwoClientsOneID: a second live client joining with an id in
// use is refused with an error naming the other session, after looking
// again (a stale read is not taken for another client), and the first
// member's node is left as it was.
func TestGroupTwoClientsOneID(t *testing.T) {
	needZK(t)
	ctx := ctxT(t, time.Minute)
	p := testkit.Path("/group-one-id")
	a := connect(t, ens.Addrs())
	b := connect(t, ens.Addrs())
	ga, err := recipes.JoinGroup(ctx, a, p, "m", []byte("a's"))
	if err != nil {
		t.Fatal(err)
	}
	defer ga.Close()
	gb, err := recipes.JoinGroup(ctx, b, p, "m", []byte("b's"))
	if err == nil {
		gb.Close()
		t.Fatal("a second client joined with an id in use")
	}
	if want := fmt.Sprintf("held by another session (%#x)", a.SessionID()); !strings.Contains(err.Error(), want) {
		t.Errorf("JoinGroup with an id in use: %v; want it to say %q", err, want)
	}
	if err := znode.Settle(ctx, b); err != nil {
		t.Fatal(err)
	}
	d, st, err := b.Get(ctx, p+"/m")
	if err != nil || string(d) != "a's" || st.EphemeralOwner != a.SessionID() {
		t.Errorf("the first member's node: %q owner %#x (%v); want a's, owned by %#x", d, st.EphemeralOwner, err, a.SessionID())
	}
}
