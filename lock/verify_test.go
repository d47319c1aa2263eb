package lock

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/wirefault"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// A guarded write (LoseOnSessionLoss keeps the lease through the brief
// outage) and a Release whose request or reply is lost while another client
// acts: the answers are true or ErrOutcomeUnknown, the guarded write is
// never applied twice and never overwrites the other client's write, and
// Release never leaves the holder's node behind.
func TestGuardedAndReleaseVerify(t *testing.T) {
	needZK(t)
	in := wirefault.New()
	t.Cleanup(in.Release)
	a := connect(t, ens.Addrs(), resilience.WithDialer(in.Dial), resilience.WithSessionTimeout(10*time.Second))
	b := connect(t, ens.Addrs())
	modes := map[string]wirefault.Mode{"request": wirefault.LoseRequest, "reply": wirefault.LoseReply}
	guardedWant := map[string]string{
		"request/none": "ok", "request/same": "unknown", "request/undo": "unknown",
		"reply/none": "unknown", "reply/same": "unknown", "reply/undo": "unknown",
	}
	answer := func(err error) string {
		switch {
		case err == nil:
			return "ok"
		case errors.Is(err, resilience.ErrOutcomeUnknown):
			return "unknown"
		}
		return "error: " + err.Error()
	}
	for _, m := range []string{"request", "reply"} {
		for _, scen := range []string{"none", "same", "undo"} {
			cell := m + "/" + scen
			t.Run("guarded/"+cell, func(t *testing.T) {
				ctx := ctxT(t, 30*time.Second)
				p := lockPath(t)
				res := p + "-resource"
				if _, err := b.Create(ctx, res, []byte("0"), 0, nil); err != nil {
					t.Fatal(err)
				}
				mu, _ := NewMutex(a, p, WithLossPolicy(resilience.LoseOnSessionLoss))
				l, err := mu.Lock(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer l.Release(context.WithoutCancel(ctx))
				fired := in.Arm(modes[m], func(r wirefault.Request) bool { return r.Op == wirefault.OpMulti })
				errc := make(chan error, 1)
				go func() {
					_, err := l.Guarded(ctx, &zk.SetDataRequest{Path: res, Data: []byte("1"), Version: -1})
					errc <- err
				}()
				select {
				case <-fired:
				case err := <-errc:
					t.Fatalf("Guarded returned %v before its request was lost", err)
				case <-time.After(10 * time.Second):
					t.Fatal("the fault never fired")
				}
				switch scen {
				case "same":
					_, err = b.Set(ctx, res, []byte("1"), -1)
				case "undo":
					_, err = b.Set(ctx, res, []byte("B's"), -1)
				}
				if err != nil {
					t.Fatal(err)
				}
				in.Release()
				got := answer(<-errc)
				if got != guardedWant[cell] {
					t.Errorf("Guarded: %s, want %s", got, guardedWant[cell])
				}
				if err := znode.Settle(ctx, b); err != nil {
					t.Fatal(err)
				}
				d, st, err := b.Get(ctx, res)
				if err != nil {
					t.Fatal(err)
				}
				if scen == "undo" && string(d) != "B's" {
					t.Errorf("B's write was overwritten: %q", d)
				}
				// Versions: 1 per write that happened (A's at most once).
				writes := int32(0)
				if scen != "none" {
					writes++
				}
				if m == "reply" || got == "ok" {
					writes++
				}
				if st.Version != writes {
					t.Errorf("resource at version %d, want %d: the guarded write ran twice or not at all", st.Version, writes)
				}
				if l.Err() != nil {
					t.Errorf("resilience.LoseOnSessionLoss lease ended by a brief outage: %v", l.Err())
				}
			})
			t.Run("release/"+cell, func(t *testing.T) {
				ctx := ctxT(t, 30*time.Second)
				p := lockPath(t)
				mu, _ := NewMutex(a, p)
				l, err := mu.Lock(ctx)
				if err != nil {
					t.Fatal(err)
				}
				name := l.Path()
				fired := in.Arm(modes[m], func(r wirefault.Request) bool {
					return r.Op == wirefault.OpDelete && strings.HasPrefix(r.Path, p+"/")
				})
				errc := make(chan error, 1)
				go func() { errc <- l.Release(ctx) }()
				select {
				case <-fired:
				case err := <-errc:
					t.Fatalf("Release returned %v before its request was lost", err)
				case <-time.After(10 * time.Second):
					t.Fatal("the fault never fired")
				}
				// The other client waits for the lock meanwhile ("same":
				// it queues; "undo": it deletes the holder's node, as an
				// operator might).
				other, _ := NewMutex(b, p)
				got := make(chan *Lease, 1)
				go func() {
					l2, err := other.Lock(ctx)
					if err != nil {
						t.Error(err)
					}
					got <- l2
				}()
				if scen == "undo" {
					if err := b.Delete(ctx, name, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
						t.Fatal(err)
					}
				}
				in.Release()
				if err := <-errc; err != nil && !errors.Is(err, ErrLeaseLost) {
					t.Errorf("Release: %v", err)
				}
				select {
				case l2 := <-got:
					if l2 != nil {
						_ = l2.Release(ctx)
					}
				case <-time.After(20 * time.Second):
					t.Fatal("the other client never got the lock: the released node stayed")
				}
				testkit.WaitFor(t, 10*time.Second, "the lock's nodes to go", func() bool { return len(children(t, b, p)) == 0 })
			})
		}
	}
}
