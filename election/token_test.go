package election

import (
	"errors"
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// czxidOf returns the czxid of p as obs sees the ensemble after a sync.
func czxidOf(t *testing.T, obs *resilience.Session, p string) int64 {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	if err := znode.Settle(ctx, obs); err != nil {
		t.Fatalf("sync %s: %v", p, err)
	}
	ok, st, err := obs.Exists(ctx, p)
	if err != nil || !ok {
		t.Fatalf("reading %s from a second client: exists=%v err=%v", p, ok, err)
	}
	return st.Czxid
}

// A term's token is its candidate node's czxid as another client reads it,
// and it stays that after the ensemble expired the leader's session: Token
// is never asked while the term lasts, so nothing could have read it late.
func TestTermTokenIsTheNodesCzxidAndOutlivesTheTerm(t *testing.T) {
	needZK(t)
	restore(t)
	for _, policy := range []resilience.LossPolicy{resilience.LoseOnSuspend, resilience.LoseOnSessionLoss} {
		t.Run(policy.String(), func(t *testing.T) {
			s := connect(t, ens.Addrs())
			obs := connect(t, ens.Addrs())
			ctx := ctxT(t, time.Minute)
			e, err := New(s, electionPath(), WithID("leader"), WithLossPolicy(policy))
			if err != nil {
				t.Fatal(err)
			}
			term, err := e.Campaign(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := czxidOf(t, obs, term.Path())
			if err := ens.ExpireSession(ctx, s.SessionID()); err != nil {
				t.Fatal(err)
			}
			select {
			case <-term.Done():
			case <-ctx.Done():
				t.Fatal("term not lost after its session expired")
			}
			if err := term.Err(); !errors.Is(err, ErrTermLost) {
				t.Fatalf("term ended with %v, want ErrTermLost", err)
			}
			if got := term.Token(); got == 0 || got != want {
				t.Fatalf("Token() after expiry = %d, want the node's czxid %d", got, want)
			}

			// The next term, on the new session, has the czxid of its own
			// node, larger than the last.
			next, err := e.Campaign(ctx)
			if err != nil {
				t.Fatal(err)
			}
			tok := next.Token()
			if nw := czxidOf(t, obs, next.Path()); tok != nw {
				t.Fatalf("next term's Token() = %d, node's czxid %d", tok, nw)
			}
			if tok <= want {
				t.Errorf("next term's token %d not above the lost term's %d", tok, want)
			}
			if err := next.Resign(ctx); err != nil {
				t.Fatal(err)
			}
			if got := next.Token(); got != tok {
				t.Errorf("Token() after Resign = %d, was %d", got, tok)
			}
		})
	}
}
