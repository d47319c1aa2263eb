package lock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

func TestMutexBasics(t *testing.T) {
	needZK(t)
	a := connect(t, ens.Addrs())
	b := connect(t, ens.Addrs())
	p := lockPath(t)
	ma, err := NewMutex(a, p, WithData([]byte("a")))
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := NewMutex(b, p)
	ctx := ctxT(t, 30*time.Second)

	l1, err := ma.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := l1.Path()[len(p)+1:]
	if !strings.HasPrefix(name, resilience.ProtectedPrefix) || !strings.Contains(name, "-lock-") {
		t.Errorf("node %q is not Curator's format", name)
	}
	if _, err := mb.TryLock(ctx); !errors.Is(err, ErrLocked) {
		t.Fatalf("TryLock while held: %v, want ErrLocked", err)
	}
	if got := children(t, a, p); len(got) != 1 {
		t.Fatalf("TryLock left a node: %v", got)
	}
	tok1 := l1.Token()
	if tok1 == 0 {
		t.Fatal("no fencing token")
	}
	// Guarded writes apply while holding.
	res := p + "-resource"
	if _, err := a.Create(ctx, res, []byte("0"), 0, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Delete(context.Background(), res, -1) })
	if _, err := l1.Guarded(ctx, &zk.SetDataRequest{Path: res, Data: []byte("1"), Version: -1}); err != nil {
		t.Fatalf("guarded write while holding: %v", err)
	}

	got := make(chan *Lease, 1)
	go func() {
		l, err := mb.Lock(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	waitChildren(t, a, p, 2, 10*time.Second) // b is queued
	if err := l1.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(context.Cause(l1.Context()), ErrReleased) {
		t.Errorf("released lease's cause: %v", context.Cause(l1.Context()))
	}
	if err := l1.Release(ctx); !errors.Is(err, ErrReleased) {
		t.Errorf("second Release: %v, want ErrReleased", err)
	}
	if _, err := l1.Guarded(ctx, &zk.SetDataRequest{Path: res, Data: []byte("stale"), Version: -1}); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("guarded write after release: %v, want ErrLeaseLost", err)
	}
	l2 := <-got
	if l2 == nil {
		t.FailNow()
	}
	if tok2 := l2.Token(); tok2 <= tok1 {
		t.Errorf("fencing token did not increase: %d then %d", tok1, tok2)
	}
	if d, _, _ := a.Get(ctx, res); string(d) != "1" {
		t.Errorf("resource %q: a stale guarded write went through", d)
	}
	if err := l2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if got := children(t, a, p); len(got) != 0 {
		t.Fatalf("nodes left: %v", got)
	}
}

// Each constructor rejects what it cannot use with the specific sentinel,
// and the errors a user sees name the lock.
func TestBadInput(t *testing.T) {
	ctors := map[string]func(s *resilience.Session, p string, opts ...Option) error{
		"NewMutex": func(s *resilience.Session, p string, opts ...Option) error {
			_, err := NewMutex(s, p, opts...)
			return err
		},
		"NewRWMutex": func(s *resilience.Session, p string, opts ...Option) error {
			_, err := NewRWMutex(s, p, opts...)
			return err
		},
		"NewSemaphore": func(s *resilience.Session, p string, opts ...Option) error {
			_, err := NewSemaphore(s, p, 2, opts...)
			return err
		},
	}
	for name, ctor := range ctors {
		if err := ctor(nil, "/x"); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s(nil session) = %v, want ErrInvalidArgument", name, err)
		}
	}
	if _, err := NewMultiLock(); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("empty multi-lock: %v, want ErrInvalidArgument", err)
	}
	if _, err := NewMultiLock(nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("multi-lock of a nil lock: %v, want ErrInvalidArgument", err)
	}
	if testing.Short() {
		return
	}
	s := connect(t, ens.Addrs())
	for name, ctor := range ctors {
		for _, p := range []string{"", "relative", "/", "/a/", "/a//b", "/a/./b"} {
			err := ctor(s, p)
			if !errors.Is(err, ErrInvalidArgument) || !errors.Is(err, resilience.ErrInvalidPath) {
				t.Errorf("%s(%q) = %v, want ErrInvalidArgument and resilience.ErrInvalidPath", name, p, err)
			}
		}
		for _, opts := range [][]Option{
			{WithLossPolicy(resilience.LossPolicy(7))},
			{WithLossPolicy(-1)},
			{WithData([]byte("x")), nil},
		} {
			if err := ctor(s, "/ok", opts...); !errors.Is(err, ErrInvalidOption) || errors.Is(err, ErrInvalidArgument) {
				t.Errorf("%s with a bad option = %v, want ErrInvalidOption", name, err)
			}
		}
		for _, policy := range []resilience.LossPolicy{resilience.LoseOnSuspend, resilience.LoseOnSessionLoss} {
			if err := ctor(s, "/ok", WithLossPolicy(policy)); err != nil {
				t.Errorf("%s(WithLossPolicy(%v)) = %v", name, policy, err)
			}
		}
	}
	for _, n := range []int{0, -1} {
		if _, err := NewSemaphore(s, "/sem", n); !errors.Is(err, ErrInvalidArgument) || errors.Is(err, resilience.ErrInvalidPath) {
			t.Errorf("NewSemaphore(%d) = %v, want ErrInvalidArgument", n, err)
		}
	}
	m, _ := NewMutex(s, "/dup")
	if _, err := NewMultiLock(m, m); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("duplicate multi-lock: %v", err)
	}
	// Calls after the session closed.
	s2 := connect(t, ens.Addrs())
	p := lockPath(t)
	m2, _ := NewMutex(s2, p)
	s2.Close()
	_, err := m2.Lock(ctxT(t, 5*time.Second))
	if !errors.Is(err, resilience.ErrClosed) {
		t.Errorf("Lock after Close: %v, want ErrClosed", err)
	}
	if !strings.Contains(fmt.Sprint(err), "mutex "+p) {
		t.Errorf("Lock after Close: %q does not name the lock %s", err, p)
	}
}

// lostLease takes a mutex at p on a client of its own and loses the lease:
// dropping every connection suspends the session, which ends the lease
// under LoseOnSuspend.
func lostLease(ctx context.Context, t *testing.T, p string, opts ...Option) *Lease {
	t.Helper()
	c := testkit.NewClient(t, ens)
	m, err := NewMutex(c.S, p, opts...)
	if err != nil {
		t.Fatal(err)
	}
	l, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Link.DropConnections()
	select {
	case <-l.Done():
	case <-ctx.Done():
		t.Fatal("lease not lost after its connections were dropped")
	}
	return l
}

// The errors of a refused TryLock and of a lost lease name the lock, not
// only an internal node.
func TestErrorsNameTheLock(t *testing.T) {
	needZK(t)
	restore(t)
	ctx := ctxT(t, 30*time.Second)
	c := connect(t, ens.Addrs())
	p := lockPath(t)
	m, _ := NewMutex(c, p)
	rw, _ := NewRWMutex(c, p+"-rw")
	sem, _ := NewSemaphore(c, p+"-sem", 1)
	l, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w, err := rw.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sl, err := sem.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for what, try := range map[string]func() (*Lease, error){
		"mutex " + p:              func() (*Lease, error) { return m.TryLock(ctx) },
		"read lock " + p + "-rw":  func() (*Lease, error) { return rw.TryRLock(ctx) },
		"semaphore " + p + "-sem": func() (*Lease, error) { return sem.TryAcquire(ctx) },
	} {
		_, err := try()
		if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), what) {
			t.Errorf("refused %s: %v, want ErrLocked naming %q", what, err, what)
		}
	}
	_ = w.Release(ctx)
	_ = sl.Release(ctx)
	ll := lostLease(ctx, t, p+"-lost")
	if cause := context.Cause(ll.Context()); !errors.Is(cause, ErrLeaseLost) || !strings.Contains(cause.Error(), "mutex "+p+"-lost") {
		t.Errorf("lost lease: %v, want ErrLeaseLost naming mutex %s-lost", cause, p)
	}
	if err := ll.Release(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("Release of a lost lease: %v, want ErrLeaseLost", err)
	}
	c.Close() // a release by the session's close
	<-l.Done()
	if cause := context.Cause(l.Context()); !errors.Is(cause, ErrReleased) || !strings.Contains(cause.Error(), "mutex "+p) {
		t.Errorf("lease ended by Close: %v, want ErrReleased naming mutex %s", cause, p)
	}
	if err := l.Release(ctx); !errors.Is(err, ErrReleased) {
		t.Errorf("Release after Close: %v, want ErrReleased", err)
	}
}

// A cancelled or failed Lock leaves no node behind, whichever step it was
// cancelled at.
func TestCancellationLeavesNoOrphans(t *testing.T) {
	needZK(t)
	restore(t)
	// The holder stays clear of the proxy this test disturbs.
	holderS := connect(t, []string{ens.Server(1).Addr(), ens.Server(2).Addr()})
	srv := ens.Server(0)
	waiterS := connect(t, []string{srv.Addr()}, resilience.WithSessionTimeout(8*time.Second))
	p := lockPath(t)
	holder, _ := NewMutex(holderS, p)
	waiter, _ := NewMutex(waiterS, p)
	held, err := holder.Lock(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}

	// Before the create: an already-cancelled context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := waiter.Lock(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock with cancelled ctx: %v", err)
	}
	// While waiting.
	ctx, cancel = context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := waiter.Lock(ctx); errc <- err }()
	waitChildren(t, holderS, p, 2, 10*time.Second)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled while waiting: %v", err)
	}
	waitChildren(t, holderS, p, 1, 10*time.Second)
	// With a deadline that ends while waiting.
	if _, err := waiter.Lock(ctxT(t, 300*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline while waiting: %v", err)
	}
	waitChildren(t, holderS, p, 1, 10*time.Second)
	// During a lost reply: the create reaches the server, its reply is
	// delayed, the connection drops, and the caller gives up meanwhile.
	srv.Proxy().SetLatency(time.Second)
	ctx, cancel = context.WithCancel(context.Background())
	go func() { _, err := waiter.Lock(ctx); errc <- err }()
	waitChildren(t, holderS, p, 2, 10*time.Second)
	srv.Proxy().DropConnections()
	cancel()
	srv.Proxy().Heal()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled during reply loss: %v", err)
	}
	waitChildren(t, holderS, p, 1, 20*time.Second)
	if err := held.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitChildren(t, holderS, p, 0, 10*time.Second)
}

// Expiry while holding: the holder's context is cancelled before another
// session's lease starts (one clock), under both policies.
func TestHolderStepsDownBeforeNextHolder(t *testing.T) {
	for _, pol := range []resilience.LossPolicy{resilience.LoseOnSuspend, resilience.LoseOnSessionLoss} {
		t.Run(pol.String(), func(t *testing.T) {
			needZK(t)
			restore(t)
			srv := ens.Server(0)
			holderS := connect(t, []string{srv.Addr()}, resilience.WithSessionTimeout(1500*time.Millisecond))
			waiterS := connect(t, []string{ens.Server(1).Addr(), ens.Server(2).Addr()})
			p := lockPath(t)
			holder, _ := NewMutex(holderS, p, WithLossPolicy(pol))
			waiter, _ := NewMutex(waiterS, p)
			l, err := holder.Lock(ctxT(t, 10*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			var steppedDown time.Time
			stepped := make(chan struct{})
			go func() {
				<-l.Done()
				steppedDown = time.Now()
				close(stepped)
			}()
			got := make(chan time.Time, 1)
			go func() {
				l2, err := waiter.Lock(ctxT(t, 30*time.Second))
				got <- time.Now()
				if err != nil {
					t.Error(err)
					return
				}
				_ = l2.Release(context.Background())
			}()
			waitChildren(t, waiterS, p, 2, 10*time.Second)
			srv.Proxy().Blackhole() // partition the holder until its session expires
			acquired := <-got
			<-stepped
			if !steppedDown.Before(acquired) {
				t.Fatalf("old holder stepped down at %v, new holder started at %v", steppedDown, acquired)
			}
			if !errors.Is(l.Err(), ErrLeaseLost) {
				t.Errorf("lease cause %v, want ErrLeaseLost", l.Err())
			}
			// A guarded write from the lost lease does not apply.
			res := p + "-resource"
			if _, err := waiterS.Create(ctxT(t, 10*time.Second), res, []byte("new holder"), 0, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Guarded(ctxT(t, 10*time.Second), &zk.SetDataRequest{Path: res, Data: []byte("stale"), Version: -1}); !errors.Is(err, ErrLeaseLost) {
				t.Errorf("guarded write from a lost lease: %v, want ErrLeaseLost", err)
			}
			if err := znode.Settle(ctxT(t, 10*time.Second), waiterS); err != nil {
				t.Fatal(err)
			}
			if d, _, _ := waiterS.Get(ctxT(t, 10*time.Second), res); string(d) != "new holder" {
				t.Errorf("a lost lease's guarded write applied: %q", d)
			}
			_ = waiterS.Delete(context.Background(), res, -1)
			// Release after loss returns at once with the loss itself: it
			// needs no ZooKeeper round trip, so it works with a context that
			// has already ended, and returns the lease's own cause.
			done, cancel := context.WithCancel(context.Background())
			cancel()
			start := time.Now()
			err = l.Release(done)
			took := time.Since(start)
			if !errors.Is(err, ErrLeaseLost) || err != l.Err() {
				t.Errorf("Release after loss: %v, want the lease's cause %v", err, l.Err())
			}
			t.Logf("stepped down %v before the next holder; Release after loss took %v", acquired.Sub(steppedDown), took)
		})
	}
}

// Under LoseOnSuspend, a lease lost to a short disconnect has its node
// removed once the same session is back, so the next waiter proceeds.
func TestSuspendLossRemovesNodeOnReconnect(t *testing.T) {
	needZK(t)
	restore(t)
	srv := ens.Server(0)
	holderS := connect(t, []string{srv.Addr()}, resilience.WithSessionTimeout(10*time.Second))
	waiterS := connect(t, []string{ens.Server(1).Addr()})
	p := lockPath(t)
	holder, _ := NewMutex(holderS, p)
	waiter, _ := NewMutex(waiterS, p)
	l, err := holder.Lock(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	sid := holderS.SessionID()
	got := make(chan error, 1)
	go func() {
		l2, err := waiter.Lock(ctxT(t, 30*time.Second))
		if err == nil {
			err = l2.Release(context.Background())
		}
		got <- err
	}()
	waitChildren(t, waiterS, p, 2, 10*time.Second)
	srv.Proxy().DropConnections()
	select {
	case <-l.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("lease survived a suspension under resilience.LoseOnSuspend")
	}
	if err := <-got; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	if holderS.SessionID() != sid {
		t.Fatal("the session was replaced; this test needs the same session back")
	}
}

// Mutual exclusion under faults: several sessions hammer one mutex while
// connections drop, links blackhole past the session timeout and a server
// restarts. Every holding interval, from acquisition to the moment the
// holder learns it lost or calls Release, is checked for overlap. Most
// holds are short, for many handoffs; before each fault on a server, the
// next holder connected to it holds for twice the session timeout and the
// fault is injected while it holds, so a holder that went on after losing
// its lease would overlap its successor.
func TestMutualExclusionUnderFaults(t *testing.T) {
	needZK(t)
	restore(t)
	const (
		workers  = 5
		timeout  = 1500 * time.Millisecond
		longHold = 2 * timeout
	)
	p := lockPath(t)
	var chk checker
	var handoffs atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	// armed is the index+1 of the server whose next holder holds long (0:
	// none); that holder reports on claimed, and its lease's cause when
	// the hold ends (nil if it ran its course) on done.
	type longHolder struct {
		who  string
		done chan error
	}
	var armed atomic.Int32
	claimed := make(chan *longHolder, 1)
	for i := 0; i < workers; i++ {
		srv := i % 3
		s := connect(t, []string{ens.Server(srv).Addr()}, resilience.WithSessionTimeout(timeout))
		m, _ := NewMutex(s, p)
		wg.Add(1)
		go func(who string) {
			defer wg.Done()
			for ctx.Err() == nil {
				l, err := m.Lock(ctx)
				if err != nil {
					continue
				}
				start := time.Now()
				hold := time.Millisecond
				var lh *longHolder
				if armed.CompareAndSwap(int32(srv+1), 0) {
					hold = longHold
					lh = &longHolder{who: who, done: make(chan error, 1)}
					claimed <- lh
				}
				select {
				case <-l.Done(): // lost
				case <-time.After(hold):
				}
				end := time.Now()
				if lh != nil {
					lh.done <- l.Err()
				}
				if l.Err() == nil {
					_ = l.Release(ctx)
				}
				chk.Add(who, start, end)
				handoffs.Add(1)
			}
		}(fmt.Sprintf("worker%d@server%d", i, srv))
	}
	waitHandoffs := func(n int64, what string) {
		t.Helper()
		target := handoffs.Load() + n
		deadline := time.Now().Add(60 * time.Second)
		for handoffs.Load() < target {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d handoffs, want %d", what, handoffs.Load(), target)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	type fault struct {
		name   string
		target int // server whose holder holds across the fault; -1: none
		do     func()
	}
	faults := []fault{
		{"connections to server 0 dropped", 0, func() { ens.Server(0).Proxy().DropConnections() }},
		{"server 1 blackholed past the timeout", 1, func() { ens.Server(1).Proxy().Blackhole() }},
		{"server 1 healed", -1, func() { ens.Server(1).Proxy().Heal() }},
		{"server 2 stopped", 2, func() { _ = ens.Server(2).Stop() }},
		{"server 2 restarted", -1, func() { _ = ens.Server(2).Start(ctx) }},
		{"connections to server 0 dropped again", 0, func() { ens.Server(0).Proxy().DropConnections() }},
	}
	began := time.Now()
	spanned := 0
	for _, f := range faults {
		waitHandoffs(50, "before "+f.name)
		if f.target < 0 {
			f.do()
			continue
		}
		armed.Store(int32(f.target + 1))
		var lh *longHolder
		select {
		case lh = <-claimed:
		case <-time.After(30 * time.Second):
			t.Fatalf("before %s: no holder on server %d", f.name, f.target)
		}
		f.do()
		spanned++
		select {
		case err := <-lh.done:
			if !errors.Is(err, ErrLeaseLost) {
				t.Errorf("%s while %s held: its hold ended with %v, want ErrLeaseLost", f.name, lh.who, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: %s still holding", f.name, lh.who)
		}
	}
	// Keep going until enough handoffs happened after the last fault.
	waitHandoffs(300, "after the faults")
	cancel()
	wg.Wait()
	if v := chk.Violations(1); len(v) > 0 {
		t.Fatalf("%d overlaps, first: %v", len(v), v[0])
	}
	t.Logf("%d handoffs without overlap in %v, %d of them held across a fault", handoffs.Load(), time.Since(began).Round(time.Millisecond), spanned)
	// No orphans once every contender has stopped.
	obs := connect(t, ens.Addrs())
	waitChildren(t, obs, p, 0, 20*time.Second)
}

func TestRWMutex(t *testing.T) {
	needZK(t)
	a := connect(t, ens.Addrs())
	b := connect(t, ens.Addrs())
	p := lockPath(t)
	ra, _ := NewRWMutex(a, p)
	rb, _ := NewRWMutex(b, p)
	ctx := ctxT(t, 30*time.Second)
	r1, err := ra.RLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := rb.TryRLock(ctx)
	if err != nil {
		t.Fatalf("second reader: %v", err)
	}
	if _, err := rb.TryLock(ctx); !errors.Is(err, ErrLocked) {
		t.Fatalf("writer while read-locked: %v", err)
	}
	wgot := make(chan *Lease, 1)
	go func() {
		w, err := rb.Lock(ctx)
		if err != nil {
			t.Error(err)
		}
		wgot <- w
	}()
	waitChildren(t, a, p, 3, 10*time.Second)
	// A reader arriving after a waiting writer queues behind it.
	if _, err := ra.TryRLock(ctx); !errors.Is(err, ErrLocked) {
		t.Fatalf("reader behind a waiting writer: %v", err)
	}
	for _, n := range children(t, a, p) {
		if !strings.Contains(n, "__READ__") && !strings.Contains(n, "__WRIT__") {
			t.Errorf("node %q is not Curator's format", n)
		}
	}
	_ = r1.Release(ctx)
	select {
	case <-wgot:
		t.Fatal("writer got in while a reader held")
	case <-time.After(200 * time.Millisecond):
	}
	_ = r2.Release(ctx)
	w := <-wgot
	if w == nil {
		t.FailNow()
	}
	if _, err := ra.TryRLock(ctx); !errors.Is(err, ErrLocked) {
		t.Fatalf("reader while write-locked: %v", err)
	}
	_ = w.Release(ctx)
	waitChildren(t, a, p, 0, 10*time.Second)
}

func TestSemaphoreNeverExceedsN(t *testing.T) {
	needZK(t)
	const n, workers, rounds = 2, 5, 8
	p := lockPath(t)
	var chk checker
	var wg sync.WaitGroup
	ctx := ctxT(t, time.Minute)
	for i := 0; i < workers; i++ {
		s := connect(t, ens.Addrs())
		sem, err := NewSemaphore(s, p, n)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func(who string) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				l, err := sem.Acquire(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				start := time.Now()
				time.Sleep(5 * time.Millisecond)
				chk.Add(who, start, time.Now())
				if err := l.Release(ctx); err != nil {
					t.Error(err)
				}
			}
		}(fmt.Sprintf("w%d", i))
	}
	wg.Wait()
	if v := chk.Violations(n); len(v) > 0 {
		t.Fatalf("%d times over %d holders, first: %v", len(v), n, v[0])
	}
	obs := connect(t, ens.Addrs())
	waitChildren(t, obs, p+"/leases", 0, 10*time.Second)

	// n holders at once; the next one is refused, then waits and gets in
	// when one leaves.
	s := connect(t, ens.Addrs())
	sem, _ := NewSemaphore(s, p, n)
	var held []*Lease
	for i := 0; i < n; i++ {
		l, err := sem.TryAcquire(ctx)
		if err != nil {
			t.Fatalf("lease %d of %d: %v", i+1, n, err)
		}
		held = append(held, l)
	}
	if _, err := sem.TryAcquire(ctx); !errors.Is(err, ErrLocked) {
		t.Fatalf("TryAcquire when full: %v", err)
	}
	got := make(chan *Lease, 1)
	go func() {
		l, err := sem.Acquire(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	select {
	case <-got:
		t.Fatal("acquired past N")
	case <-time.After(200 * time.Millisecond):
	}
	_ = held[0].Release(ctx)
	l := <-got
	if l == nil {
		t.FailNow()
	}
	_ = l.Release(ctx)
	_ = held[1].Release(ctx)
	waitChildren(t, obs, p+"/leases", 0, 10*time.Second)
}

func TestMultiLock(t *testing.T) {
	needZK(t)
	a := connect(t, ens.Addrs())
	b := connect(t, ens.Addrs())
	p := lockPath(t)
	ctx := ctxT(t, 30*time.Second)
	a1, _ := NewMutex(a, p+"/one")
	a2, _ := NewMutex(a, p+"/two")
	b2, _ := NewMutex(b, p+"/two")
	// b holds "two"; a's multi-lock takes "one" then waits for "two".
	held, err := b2.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ml, err := NewMultiLock(a2, a1)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := ml.Lock(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("multi-lock with one lock held elsewhere: %v", err)
	}
	// It released "one" on the way out.
	waitChildren(t, a, p+"/one", 0, 10*time.Second)
	_ = held.Release(ctx)
	mlease, err := ml.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ls := mlease.Leases(); len(ls) != 2 || !strings.HasPrefix(ls[0].Path(), p+"/one/") {
		t.Fatalf("leases not in path order: %v", ls)
	}
	if err := mlease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if mlease.Context().Err() == nil {
		t.Fatal("multi-lease context alive after release")
	}
}

// A waiter keeps its place through connection loss and re-enters the queue
// on a new session after expiry.
func TestWaiterSurvivesConnectionLossAndExpiry(t *testing.T) {
	needZK(t)
	restore(t)
	holderS := connect(t, []string{ens.Server(1).Addr()})
	srv := ens.Server(0)
	waiterS := connect(t, []string{srv.Addr()}, resilience.WithSessionTimeout(2*time.Second))
	p := lockPath(t)
	holder, _ := NewMutex(holderS, p)
	waiter, _ := NewMutex(waiterS, p)
	ctx := ctxT(t, time.Minute)
	l, err := holder.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Lease, 1)
	go func() {
		l, err := waiter.Lock(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	queued := waitChildren(t, holderS, p, 2, 10*time.Second)

	// Connection loss: same session, same node, same place.
	srv.Proxy().DropConnections()
	if err := waiterS.WaitState(ctxT(t, 10*time.Second), resilience.Reconnected); err != nil {
		t.Fatal(err)
	}
	if now := waitChildren(t, holderS, p, 2, 10*time.Second); now[0] != queued[0] || now[1] != queued[1] {
		t.Fatalf("queue changed across a reconnect: %v -> %v", queued, now)
	}
	// Expiry: the old node goes with the session; a new one is queued.
	oldSID := waiterS.SessionID()
	if err := ens.ExpireSession(ctx, oldSID); err != nil {
		t.Fatal(err)
	}
	oldNode := otherThan(queued, l.Path())
	deadline := time.Now().Add(20 * time.Second)
	for {
		now := children(t, holderS, p)
		if len(now) == 2 && !contains(now, oldNode) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiter did not re-queue after expiry: %v (was %v)", now, queued)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if waiterS.SessionID() == oldSID {
		t.Fatal("session was not replaced")
	}
	select {
	case <-got:
		t.Fatal("waiter acquired while the holder holds")
	default:
	}
	_ = l.Release(ctx)
	w := <-got
	if w == nil {
		t.FailNow()
	}
	if ok, st, err := waiterS.Exists(ctx, w.Path()); err != nil || !ok || st.EphemeralOwner != waiterS.SessionID() {
		t.Fatalf("lease node not on the new session: %v %v", ok, err)
	}
	_ = w.Release(ctx)
}

func contains(names []string, n string) bool {
	for _, x := range names {
		if x == n {
			return true
		}
	}
	return false
}

// otherThan returns the name in names that is not the base name of p.
func otherThan(names []string, p string) string {
	for _, n := range names {
		if !strings.HasSuffix(p, "/"+n) {
			return n
		}
	}
	return ""
}
