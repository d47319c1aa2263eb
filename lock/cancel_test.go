package lock

import (
	"context"
	"errors"
	"path"
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// cancelCase is one acquisition of the cancellation matrix, made by the
// client w while a holder on another session keeps it waiting.
type cancelCase struct {
	name string
	op   func(ctx context.Context) (holding, error)
	// dirs are the queue directories where w may have nodes.
	dirs []string
	// waitDir holds w's node once it waits.
	waitDir string
	// createDirs are the directories of the creates the acquisition makes
	// before it waits, in order: each is cancelled with its reply in
	// flight.
	createDirs []string
	// done ends the case's holders.
	done func()
}

// TestCancellationMatrix cancels every waiting acquisition of the package
// (Mutex.Lock, RWMutex.RLock and Lock, Semaphore.Acquire at both of its
// waits, MultiLock.Lock with its first lock taken) at every step: with a
// context already cancelled, while waiting, by a deadline while waiting,
// and with the reply to each of its creates in flight. Every time the
// error wraps the context's, and the client has no node left in any queue
// (goroutines: goleak in TestMain).
func TestCancellationMatrix(t *testing.T) {
	needZK(t)
	restore(t)
	h := connect(t, ens.Addrs())
	w := testkit.NewClient(t, ens, resilience.WithSessionTimeout(8*time.Second))
	obs := connect(t, ens.Addrs())
	base := lockPath(t)
	ctx := ctxT(t, 3*time.Minute)

	hold := func(acquire func(context.Context) (*Lease, error)) *Lease {
		t.Helper()
		l, err := acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	release := func(ls ...*Lease) func() {
		return func() {
			for _, l := range ls {
				if err := l.Release(ctx); err != nil {
					t.Errorf("release %s: %v", l.Path(), err)
				}
			}
		}
	}

	var cases []cancelCase
	{
		p := path.Join(base, "mutex")
		mh, _ := NewMutex(h, p)
		mw, _ := NewMutex(w.S, p)
		cases = append(cases, cancelCase{name: "Mutex.Lock", dirs: []string{p}, waitDir: p, createDirs: []string{p},
			op:   func(ctx context.Context) (holding, error) { return leaseOf(mw.Lock(ctx)) },
			done: release(hold(mh.Lock))})
	}
	{
		p := path.Join(base, "rw-read")
		rh, _ := NewRWMutex(h, p)
		rw, _ := NewRWMutex(w.S, p)
		cases = append(cases, cancelCase{name: "RWMutex.RLock behind a writer", dirs: []string{p}, waitDir: p, createDirs: []string{p},
			op:   func(ctx context.Context) (holding, error) { return leaseOf(rw.RLock(ctx)) },
			done: release(hold(rh.Lock))})
	}
	{
		p := path.Join(base, "rw-write")
		rh, _ := NewRWMutex(h, p)
		rw, _ := NewRWMutex(w.S, p)
		cases = append(cases, cancelCase{name: "RWMutex.Lock behind a reader", dirs: []string{p}, waitDir: p, createDirs: []string{p},
			op:   func(ctx context.Context) (holding, error) { return leaseOf(rw.Lock(ctx)) },
			done: release(hold(rh.RLock))})
	}
	{
		// Both slots taken: w takes the guard, adds a lease node, waits.
		p := path.Join(base, "sem-slot")
		sh, _ := NewSemaphore(h, p, 2)
		sw, _ := NewSemaphore(w.S, p, 2)
		cases = append(cases, cancelCase{name: "Semaphore.Acquire waiting for a slot",
			dirs: []string{p + "/locks", p + "/leases"}, waitDir: p + "/leases", createDirs: []string{p + "/locks", p + "/leases"},
			op:   func(ctx context.Context) (holding, error) { return leaseOf(sw.Acquire(ctx)) },
			done: release(hold(sh.Acquire), hold(sh.Acquire))})
	}
	{
		// Both slots taken and another acquirer of h waiting for one, so
		// holding the guard: w waits for the guard.
		p := path.Join(base, "sem-guard")
		sh, _ := NewSemaphore(h, p, 2)
		sw, _ := NewSemaphore(w.S, p, 2)
		full := release(hold(sh.Acquire), hold(sh.Acquire))
		third, cancelThird := context.WithCancel(ctx)
		thirdDone := make(chan error, 1)
		go func() { _, err := sh.Acquire(third); thirdDone <- err }()
		waitChildren(t, obs, p+"/leases", 3, 10*time.Second)
		cases = append(cases, cancelCase{name: "Semaphore.Acquire waiting for the guard",
			dirs: []string{p + "/locks", p + "/leases"}, waitDir: p + "/locks", createDirs: []string{p + "/locks"},
			op: func(ctx context.Context) (holding, error) { return leaseOf(sw.Acquire(ctx)) },
			done: func() {
				cancelThird()
				if err := <-thirdDone; !errors.Is(err, context.Canceled) {
					t.Errorf("the holder's own waiting Acquire: %v, want context.Canceled", err)
				}
				full()
			}})
	}
	{
		// w's multi-lock takes a, then waits for b, which h holds.
		pa, pb := path.Join(base, "multi-a"), path.Join(base, "multi-b")
		bh, _ := NewMutex(h, pb)
		aw, _ := NewMutex(w.S, pa)
		bw, _ := NewMutex(w.S, pb)
		ml, _ := NewMultiLock(aw, bw)
		cases = append(cases, cancelCase{name: "MultiLock.Lock holding its first lock",
			dirs: []string{pa, pb}, waitDir: pb, createDirs: []string{pa, pb},
			op:   func(ctx context.Context) (holding, error) { return multiOf(ml.Lock(ctx)) },
			done: release(hold(bh.Lock))})
	}

	wOwns := func(dir string) int { return owned(t, obs, dir, w.S.SessionID()) }
	noneLeft := func(t *testing.T, c cancelCase, step string) {
		t.Helper()
		for _, dir := range c.dirs {
			testkit.WaitFor(t, 10*time.Second, step+": a node of the cancelled client left in "+dir, func() bool { return wOwns(dir) == 0 })
		}
	}
	start := func(ctx context.Context, c cancelCase) <-chan error {
		errc := make(chan error, 1)
		go func() {
			l, err := c.op(ctx)
			if err == nil {
				_ = l.Release(context.Background())
			}
			errc <- err
		}()
		return errc
	}
	wantErr := func(t *testing.T, step string, errc <-chan error, want error) {
		t.Helper()
		select {
		case err := <-errc:
			if !errors.Is(err, want) {
				t.Fatalf("%s: %v, want %v", step, err, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: the acquisition did not return", step)
		}
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defer c.done()
			// A context cancelled before the call: nothing is created.
			pre, cancel := context.WithCancel(ctx)
			cancel()
			if _, err := c.op(pre); !errors.Is(err, context.Canceled) {
				t.Fatalf("already cancelled: %v, want context.Canceled", err)
			}
			for _, dir := range c.dirs {
				if n := wOwns(dir); n != 0 {
					t.Fatalf("already cancelled: %d node(s) created in %s", n, dir)
				}
			}

			// Cancelled as soon as its node is queued: in the tail of the
			// join or in the wait, whichever it is in by then.
			wctx, cancel := context.WithCancel(ctx)
			errc := start(wctx, c)
			testkit.WaitFor(t, 10*time.Second, "the client to wait in "+c.waitDir, func() bool { return wOwns(c.waitDir) > 0 })
			cancel()
			wantErr(t, "cancelled while waiting", errc, context.Canceled)
			noneLeft(t, c, "cancelled while waiting")

			// A deadline that passes while waiting, well into the wait
			// (this step is the one that catches a wait that does not
			// leave on cancellation).
			dctx, dcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
			errc = start(dctx, c)
			testkit.WaitFor(t, 10*time.Second, "the client to wait in "+c.waitDir+" before its deadline", func() bool {
				return wOwns(c.waitDir) > 0 || dctx.Err() != nil
			})
			if dctx.Err() != nil {
				t.Fatal("the deadline passed before the client waited; the step is void")
			}
			wantErr(t, "deadline while waiting", errc, context.DeadlineExceeded)
			dcancel()
			noneLeft(t, c, "deadline while waiting")

			// Cancelled while the reply to each create is in flight: the
			// node exists on the ensemble, its creator has not heard yet.
			const latency = 500 * time.Millisecond
			for _, dir := range c.createDirs {
				step := "cancelled with the create in " + dir + " unanswered"
				setLatency(w, latency)
				fctx, cancel := context.WithCancel(ctx)
				errc := start(fctx, c)
				deadline := time.Now().Add(20 * time.Second)
				for wOwns(dir) == 0 {
					if time.Now().After(deadline) {
						t.Fatalf("%s: the node never appeared", step)
					}
					time.Sleep(5 * time.Millisecond)
				}
				cancel()
				seen := time.Now()
				setLatency(w, 0)
				wantErr(t, step, errc, context.Canceled)
				t.Logf("%s: returned %v after the node appeared", step, time.Since(seen))
				noneLeft(t, c, step)
			}
		})
	}
}

func setLatency(c *testkit.Client, d time.Duration) {
	for i := range c.Link.Addrs() {
		c.Link.Proxy(i).SetLatency(d)
	}
}
