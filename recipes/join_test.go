package recipes_test

import (
	"errors"
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/internal/hold"
	"github.com/zkrecipes/zkrecipes/internal/queue"
	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/wirefault"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// Join binds its entry to the session its create succeeded on, not to the
// session current when Join was called (issue 12, case 8).
//
// The queue's parent does not exist, so Join's first create fails with
// ErrNoNode and Join makes the parent before creating again. The parent's
// create loses its request; while client A's reconnect is held the
// ensemble expires A's session, so every later step of the same Join runs
// on A's next session: the entry's node is owned by that session. The entry
// must name it, and a holding of the entry must start out held (its node is
// first in the queue, blocking everyone behind it), then release the node.
func TestJoinBindsEntryToCreatingSession(t *testing.T) {
	testkit.NeedZK(t)
	testkit.Restore(t, ens)
	in := wirefault.New()
	t.Cleanup(in.Release)
	a := testkit.Connect(t, ens.Addrs(), resilience.WithDialer(in.Dial), resilience.WithSessionTimeout(10*time.Second))
	b := testkit.Connect(t, ens.Addrs())
	ctx := testkit.Ctx(t, 45*time.Second)
	parent := testkit.Path("/join-bind")

	old := a.SessionID()
	if old == 0 {
		t.Fatal("client A has no session")
	}
	fired := in.Arm(wirefault.LoseRequest, func(r wirefault.Request) bool {
		return r.Op == wirefault.OpCreateContainer && r.Path == parent
	})
	type result struct {
		e     queue.Entry
		names []string
		err   error
	}
	done := make(chan result, 1)
	go func() {
		e, names, err := queue.Join(ctx, a, parent, "n-", []byte("a"))
		done <- result{e, names, err}
	}()
	select {
	case <-fired:
	case r := <-done:
		t.Fatalf("Join returned (%+v, %v) before the parent's create was lost", r.e, r.err)
	case <-ctx.Done():
		t.Fatal("the parent's create was never sent")
	}
	// A is disconnected with the reconnect held: end its session, then let
	// it reconnect and learn so.
	if err := ens.ExpireSession(ctx, old); err != nil {
		t.Fatal(err)
	}
	in.Release()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("Join did not return")
	}
	if r.err != nil {
		t.Fatalf("Join: %v", r.err)
	}
	e := r.e
	cur := a.SessionID()
	if cur == old || cur == 0 {
		t.Fatalf("A's session is %#x, was %#x: the expiry did not happen, nothing was shown", cur, old)
	}

	// The node's owner, as another client sees it.
	if err := znode.Settle(ctx, b); err != nil {
		t.Fatal(err)
	}
	ok, st, err := b.Exists(ctx, e.Path)
	if err != nil || !ok {
		t.Fatalf("entry node %s: exists %v, %v", e.Path, ok, err)
	}
	t.Logf("old session %#x, current %#x, node owner %#x, entry session %#x", old, cur, st.EphemeralOwner, e.SessionID)
	if st.EphemeralOwner != cur {
		t.Fatalf("node %s owned by %#x, not A's current session %#x", e.Path, st.EphemeralOwner, cur)
	}
	if e.SessionID != st.EphemeralOwner {
		t.Errorf("entry.SessionID = %#x, but its node %s is owned by session %#x (Join was called on %#x)",
			e.SessionID, e.Path, st.EphemeralOwner, old)
	}
	// The node is first in the queue: anyone joining later waits behind it.
	if len(r.names) != 1 || r.names[0] != e.Name {
		t.Fatalf("queue %v, want just %s", r.names, e.Name)
	}

	h, err := hold.New(a, e, hold.Config{Policy: resilience.LoseOnSessionLoss, Token: st.Czxid, Lost: errTestLost, Released: errTestReleased})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Err(); err != nil {
		t.Errorf("a holding of the new entry started out lost (%v) while its node %s blocks the queue", err, e.Path)
	}
	err = h.Release(ctx)
	switch {
	case err == nil:
	case errors.Is(err, errTestLost):
		// Reported above; the node must still go.
		_ = queue.Leave(a, e)
	default:
		t.Fatalf("release: %v", err)
	}
	if err := znode.Settle(ctx, b); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := b.Exists(ctx, e.Path); err != nil || ok {
		t.Fatalf("after release node %s: exists %v, %v", e.Path, ok, err)
	}
}

var (
	errTestLost     = errors.New("test: holding lost")
	errTestReleased = errors.New("test: holding released")
)
