package lock

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// czxidOf returns the czxid of p as obs sees the ensemble after a sync, and
// fails t if p does not exist.
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

// checkToken fails t unless l's token is non-zero and is the czxid of its
// node as a second client reads it.
func checkToken(t *testing.T, obs *resilience.Session, what string, l *Lease) int64 {
	t.Helper()
	tok := l.Token()
	if tok == 0 {
		t.Fatalf("%s: Token() = 0 while held", what)
	}
	if want := czxidOf(t, obs, l.Path()); tok != want {
		t.Fatalf("%s: Token() = %d, but node %s has czxid %d", what, tok, l.Path(), want)
	}
	return tok
}

// Every kind of lease knows its token when it is handed out: the czxid of
// its node, as another client reads it.
func TestTokenIsTheNodesCzxid(t *testing.T) {
	needZK(t)
	a := connect(t, ens.Addrs())
	obs := connect(t, ens.Addrs())
	ctx := ctxT(t, time.Minute)

	t.Run("mutex", func(t *testing.T) {
		m, _ := NewMutex(a, lockPath(t))
		l, err := m.Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkToken(t, obs, "Mutex.Lock", l)
		_ = l.Release(ctx)
		l, err = m.TryLock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkToken(t, obs, "Mutex.TryLock", l)
		_ = l.Release(ctx)
	})

	t.Run("rwmutex", func(t *testing.T) {
		rw, _ := NewRWMutex(a, lockPath(t))
		r1, err := rw.RLock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := rw.TryRLock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t1 := checkToken(t, obs, "RWMutex.RLock", r1)
		t2 := checkToken(t, obs, "RWMutex.TryRLock", r2)
		if t2 <= t1 {
			t.Errorf("concurrent readers: second token %d not above first %d", t2, t1)
		}
		_ = r1.Release(ctx)
		_ = r2.Release(ctx)
		w, err := rw.Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tw := checkToken(t, obs, "RWMutex.Lock", w); tw <= t2 {
			t.Errorf("writer after readers: token %d not above %d", tw, t2)
		}
		_ = w.Release(ctx)
		w, err = rw.TryLock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkToken(t, obs, "RWMutex.TryLock", w)
		_ = w.Release(ctx)
	})

	t.Run("semaphore", func(t *testing.T) {
		sem, err := NewSemaphore(a, lockPath(t), 2)
		if err != nil {
			t.Fatal(err)
		}
		l1, err := sem.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		l2, err := sem.TryAcquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t1 := checkToken(t, obs, "Semaphore.Acquire", l1)
		t2 := checkToken(t, obs, "Semaphore.TryAcquire", l2)
		if t1 == t2 {
			t.Errorf("two leases share token %d", t1)
		}
		_ = l1.Release(ctx)
		_ = l2.Release(ctx)
	})

	t.Run("multilock", func(t *testing.T) {
		base := lockPath(t)
		m1, _ := NewMutex(a, base+"/b")
		m2, _ := NewMutex(a, base+"/a")
		ml, err := NewMultiLock(m1, m2)
		if err != nil {
			t.Fatal(err)
		}
		ml1, err := ml.Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var max int64
		for i, l := range ml1.Leases() {
			if tok := checkToken(t, obs, "MultiLock lease", l); tok > max {
				max = tok
			}
			if i == len(ml1.Leases())-1 && l.Token() != max {
				t.Errorf("the last lock's token %d is not the largest (%d)", l.Token(), max)
			}
		}
		first := ml1.Token()
		if first != max {
			t.Fatalf("MultiLease.Token() = %d, want the largest lease czxid %d", first, max)
		}
		_ = ml1.Release(ctx)
		if ml1.Token() != first {
			t.Errorf("MultiLease.Token() changed after release: %d, was %d", ml1.Token(), first)
		}
		ml2, err := ml.Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if next := ml2.Token(); next <= first {
			t.Errorf("next MultiLease's token %d not above %d", next, first)
		}
		_ = ml2.Release(ctx)
	})
}

// A lease whose session the ensemble expired while it was held still
// reports the token it had, without a call to ZooKeeper: Token was never
// asked while the lease was held.
func TestTokenKeptAfterExpiry(t *testing.T) {
	needZK(t)
	restore(t)
	for _, policy := range []resilience.LossPolicy{resilience.LoseOnSuspend, resilience.LoseOnSessionLoss} {
		t.Run(policy.String(), func(t *testing.T) {
			a := connect(t, ens.Addrs())
			obs := connect(t, ens.Addrs())
			ctx := ctxT(t, time.Minute)
			m, _ := NewMutex(a, lockPath(t), WithLossPolicy(policy))
			l, err := m.Lock(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := czxidOf(t, obs, l.Path())
			if err := ens.ExpireSession(ctx, a.SessionID()); err != nil {
				t.Fatal(err)
			}
			select {
			case <-l.Done():
			case <-ctx.Done():
				t.Fatal("lease not lost after its session expired")
			}
			if err := l.Err(); !errors.Is(err, ErrLeaseLost) {
				t.Fatalf("lease ended with %v, want ErrLeaseLost", err)
			}
			if got := l.Token(); got != want {
				t.Fatalf("Token() after expiry = %d, want the node's czxid %d", got, want)
			}
			if got := l.Token(); got != want {
				t.Fatalf("second Token() after expiry = %d, want %d", got, want)
			}
		})
	}
}

// Under LoseOnSessionLoss a lease outlives a suspension, and its Token
// answers during it: it returns while the link is still silent (so the
// session is still suspended), not once the session is back or lost.
func TestTokenAnswersWhileSuspended(t *testing.T) {
	needZK(t)
	const timeout = 4 * time.Second
	c := testkit.NewClient(t, ens, resilience.WithSessionTimeout(timeout))
	obs := connect(t, ens.Addrs())
	ctx := ctxT(t, time.Minute)
	m, _ := NewMutex(c.S, lockPath(t), WithLossPolicy(resilience.LoseOnSessionLoss))
	l, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := czxidOf(t, obs, l.Path())
	sid := c.S.SessionID()
	c.Link.Blackhole()
	t.Cleanup(c.Link.Heal)
	if err := c.S.WaitState(ctxT(t, 2*timeout), resilience.Suspended); err != nil {
		t.Fatalf("session not suspended by a silent link: %v", err)
	}
	got := make(chan int64, 1)
	go func() { got <- l.Token() }()
	var tok int64
	select {
	case tok = <-got:
	case <-time.After(3 * timeout):
		// A Token that waits for the session blocks at least until the
		// ensemble expires it (after timeout) and the client is told.
		t.Fatalf("Token() did not return within %v of a suspension", 3*timeout)
	}
	st := c.S.State()
	t.Logf("Token() returned %d in state %s", tok, st)
	if tok != want {
		t.Fatalf("Token() while suspended = %d, want the node's czxid %d", tok, want)
	}
	if st != resilience.Suspended || c.S.SessionID() != sid {
		t.Fatalf("Token() returned only once the session had moved on (state %s, session %#x, was %#x)", st, c.S.SessionID(), sid)
	}
	c.Link.Heal()
	_ = l.Release(context.WithoutCancel(ctx))
}
