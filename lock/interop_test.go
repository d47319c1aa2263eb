package lock

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/internal/interop"
)

// kazooOpts makes Kazoo's Lock honour Curator's and our "-lock-" nodes, and
// name its own nodes "-lock-" too: Curator orders lock nodes by the text
// after "lock-", so it does not see Kazoo's default "__lock__" nodes at all
// (our Mutex sees both).
var kazooOpts = []string{"extra=-lock-", "node=-lock-"}

// Go, Java (Curator's InterProcessMutex) and Python (Kazoo's Lock)
// contenders on one path each wait for the others and never hold together.
func TestInteropWithCuratorAndKazoo(t *testing.T) {
	needZK(t)
	cur := interop.Curator(t)
	kaz := interop.Kazoo(t)
	ctx := ctxT(t, 2*time.Minute)
	conn := ens.ConnectString()
	for _, c := range []string{"c1"} {
		if err := cur.Connect(ctx, c, conn, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := kaz.Connect(ctx, "k1", conn, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	gs := connect(t, ens.Addrs())
	p := lockPath(t)
	m, _ := NewMutex(gs, p)

	// 1. Handoff in queue order: Go holds, Java and Python queue behind it.
	gl, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type acq struct {
		at  time.Time
		err error
	}
	javaGot, pyGot := make(chan acq, 1), make(chan acq, 1)
	go func() {
		_, at, err := cur.MutexAcquire(ctx, "c1", p, time.Minute)
		javaGot <- acq{at, err}
	}()
	waitChildren(t, gs, p, 2, 20*time.Second)
	go func() {
		_, at, err := kaz.MutexAcquire(ctx, "k1", p, time.Minute, kazooOpts...)
		pyGot <- acq{at, err}
	}()
	names := waitChildren(t, gs, p, 3, 20*time.Second)
	for _, n := range names {
		if !strings.Contains(n, "-lock-") {
			t.Errorf("contender %q has no -lock- marker", n)
		}
	}
	select {
	case a := <-javaGot:
		t.Fatalf("Curator acquired while Go held: %+v", a)
	case a := <-pyGot:
		t.Fatalf("Kazoo acquired while Go held: %+v", a)
	case <-time.After(300 * time.Millisecond):
	}
	goReleased := time.Now()
	if err := gl.Release(ctx); err != nil {
		t.Fatal(err)
	}
	j := <-javaGot
	if j.err != nil {
		t.Fatal(j.err)
	}
	if j.at.Before(goReleased) {
		t.Fatalf("Curator acquired at %v, before Go released at %v", j.at, goReleased)
	}
	select {
	case a := <-pyGot:
		t.Fatalf("Kazoo acquired while Curator held: %+v", a)
	case <-time.After(300 * time.Millisecond):
	}
	// Go queues behind Python too.
	goGot := make(chan acq, 1)
	go func() {
		l, err := m.Lock(ctx)
		a := acq{time.Now(), err}
		goGot <- a
		if err == nil {
			time.Sleep(50 * time.Millisecond)
			_ = l.Release(ctx)
		}
	}()
	waitChildren(t, gs, p, 3, 20*time.Second)
	javaReleased, err := cur.MutexRelease(ctx, "c1", p)
	if err != nil {
		t.Fatal(err)
	}
	py := <-pyGot
	if py.err != nil {
		t.Fatal(py.err)
	}
	if py.at.Before(javaReleased) {
		t.Fatalf("Kazoo acquired at %v, before Curator released at %v", py.at, javaReleased)
	}
	select {
	case a := <-goGot:
		t.Fatalf("Go acquired while Kazoo held: %+v", a)
	case <-time.After(300 * time.Millisecond):
	}
	pyReleased, err := kaz.MutexRelease(ctx, "k1", p)
	if err != nil {
		t.Fatal(err)
	}
	g := <-goGot
	if g.err != nil {
		t.Fatal(g.err)
	}
	if g.at.Before(pyReleased) {
		t.Fatalf("Go acquired at %v, before Kazoo released at %v", g.at, pyReleased)
	}

	// 2. All of them hammering the lock at once: no overlap.
	var chk checker
	var wg sync.WaitGroup
	const rounds = 6
	run := func(who string, acquire func() (time.Time, error), release func() (time.Time, error)) {
		defer wg.Done()
		for r := 0; r < rounds; r++ {
			start, err := acquire()
			if err != nil {
				t.Errorf("%s acquire: %v", who, err)
				return
			}
			time.Sleep(10 * time.Millisecond)
			end, err := release()
			if err != nil {
				t.Errorf("%s release: %v", who, err)
				return
			}
			chk.Add(who, start, end)
		}
	}
	for i := 0; i < 2; i++ {
		gm, _ := NewMutex(connect(t, ens.Addrs()), p)
		var l *Lease
		wg.Add(1)
		go run(fmt.Sprintf("go%d", i), func() (time.Time, error) {
			var err error
			l, err = gm.Lock(ctx)
			return time.Now(), err
		}, func() (time.Time, error) {
			end := time.Now()
			return end, l.Release(ctx)
		})
	}
	wg.Add(2)
	go run("curator", func() (time.Time, error) {
		_, at, err := cur.MutexAcquire(ctx, "c1", p, time.Minute)
		return at, err
	}, func() (time.Time, error) { return cur.MutexRelease(ctx, "c1", p) })
	go run("kazoo", func() (time.Time, error) {
		_, at, err := kaz.MutexAcquire(ctx, "k1", p, time.Minute, kazooOpts...)
		return at, err
	}, func() (time.Time, error) { return kaz.MutexRelease(ctx, "k1", p) })
	wg.Wait()
	if v := chk.Violations(1); len(v) > 0 {
		t.Fatalf("Go, Curator and Kazoo held together: %v", v)
	}
	waitChildren(t, gs, p, 0, 10*time.Second)
}

// What the package doc says of Kazoo: its default Lock does not see our
// nodes and takes a lock a Go client holds; given extra_lock_patterns
// ["-lock-"] (its default "__lock__" node name kept) the two exclude each
// other both ways.
func TestInteropWithKazooDefaultLock(t *testing.T) {
	needZK(t)
	kaz := interop.Kazoo(t)
	ctx := ctxT(t, time.Minute)
	if err := kaz.Connect(ctx, "k1", ens.ConnectString(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	gs := connect(t, ens.Addrs())
	p := lockPath(t)
	m, _ := NewMutex(gs, p)
	gl, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Kazoo's defaults (no extra patterns): it acquires while Go holds.
	node, _, err := kaz.MutexAcquire(ctx, "k1", p, 10*time.Second, "extra=")
	if err != nil {
		t.Fatalf("Kazoo without extra_lock_patterns did not acquire while Go held (%v): the package doc's warning is wrong", err)
	}
	if !strings.Contains(node, "__lock__") {
		t.Errorf("Kazoo's default node %q has no __lock__ marker", node)
	}
	t.Logf("as the package doc says, default Kazoo acquired %s while Go held %s", node, gl.Path())
	if _, err := kaz.MutexRelease(ctx, "k1", p); err != nil {
		t.Fatal(err)
	}

	// With extra_lock_patterns=["-lock-"] (the driver's default) Kazoo
	// waits for Go: its bounded attempt times out.
	if _, _, err := kaz.MutexAcquire(ctx, "k1", p, 300*time.Millisecond); !errors.Is(err, interop.ErrTimeout) {
		t.Fatalf("Kazoo with extra_lock_patterns while Go held: %v, want a timeout", err)
	}
	goReleased := time.Now()
	if err := gl.Release(ctx); err != nil {
		t.Fatal(err)
	}
	node, at, err := kaz.MutexAcquire(ctx, "k1", p, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if at.Before(goReleased) {
		t.Errorf("Kazoo acquired at %v, before Go released at %v", at, goReleased)
	}
	// And Go sees Kazoo's "__lock__" holder.
	if l, err := m.TryLock(ctx); !errors.Is(err, ErrLocked) {
		t.Errorf("Go TryLock while Kazoo (%s) held: %v, want ErrLocked", node, err)
		if err == nil {
			_ = l.Release(ctx)
		}
	}
	if _, err := kaz.MutexRelease(ctx, "k1", p); err != nil {
		t.Fatal(err)
	}
	l, err := m.TryLock(ctx)
	if err != nil {
		t.Fatalf("Go TryLock after Kazoo released: %v", err)
	}
	_ = l.Release(ctx)
	waitChildren(t, gs, p, 0, 10*time.Second)
}

// Curator's read-write lock and ours share one queue: a Curator reader
// shares with a Go reader and keeps Go's writer waiting until it leaves;
// Go's writer keeps Curator's writer out until it releases.
func TestInteropRWLockWithCurator(t *testing.T) {
	needZK(t)
	cur := interop.Curator(t)
	ctx := ctxT(t, time.Minute)
	if err := cur.Connect(ctx, "c1", ens.ConnectString(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	gs := connect(t, ens.Addrs())
	p := lockPath(t)
	rw, _ := NewRWMutex(gs, p)
	// Java reads; Go reads alongside; Go's writer may not get in.
	if _, _, err := cur.RWLockAcquire(ctx, "c1", p, "read", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	r, err := rw.TryRLock(ctx)
	if err != nil {
		t.Fatalf("Go reader next to a Curator reader: %v", err)
	}
	if l, err := rw.TryLock(ctx); !errors.Is(err, ErrLocked) {
		t.Errorf("Go writer next to a Curator reader: %v, want ErrLocked", err)
		if err == nil {
			_ = l.Release(ctx)
		}
	}
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// Go's writer queues behind the Curator reader and waits for it.
	type acq struct {
		l   *Lease
		at  time.Time
		err error
	}
	wgot := make(chan acq, 1)
	go func() {
		l, err := rw.Lock(ctx)
		wgot <- acq{l, time.Now(), err}
	}()
	waitChildren(t, gs, p, 2, 20*time.Second) // Curator's reader, Go's writer
	var w acq
	early := false
	select {
	case w = <-wgot:
		early = true
		t.Errorf("Go writer acquired at %v while the Curator reader held (err %v)", w.at, w.err)
	case <-time.After(300 * time.Millisecond):
	}
	released, err := cur.RWLockRelease(ctx, "c1", p, "read")
	if err != nil {
		t.Fatal(err)
	}
	if !early {
		w = <-wgot
	}
	if w.err != nil {
		t.Fatal(w.err)
	}
	// Both times are the realtime clock: Curator's taken just before its
	// release, ours just after Lock returned.
	if !w.at.After(released) {
		t.Errorf("Go writer acquired at %d, before the Curator reader released at %d", w.at.UnixNano(), released.UnixNano())
	}
	// Java's writer waits for Go's: its bounded attempt times out.
	if _, _, err := cur.RWLockAcquire(ctx, "c1", p, "write", 300*time.Millisecond); !errors.Is(err, interop.ErrTimeout) {
		t.Errorf("Curator writer while Go's writer held: %v, want a timeout", err)
		if err == nil {
			_, _ = cur.RWLockRelease(ctx, "c1", p, "write")
		}
	}
	if err := w.l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cur.RWLockAcquire(ctx, "c1", p, "write", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := cur.RWLockRelease(ctx, "c1", p, "write"); err != nil {
		t.Fatal(err)
	}
	waitChildren(t, gs, p, 0, 10*time.Second)
}

// Curator's InterProcessSemaphoreV2 and our Semaphore count the same leases.
func TestInteropSemaphoreWithCurator(t *testing.T) {
	needZK(t)
	cur := interop.Curator(t)
	ctx := ctxT(t, time.Minute)
	if err := cur.Connect(ctx, "c1", ens.ConnectString(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	gs := connect(t, ens.Addrs())
	p := lockPath(t)
	sem, _ := NewSemaphore(gs, p, 2)
	lease, _, err := cur.SemaphoreAcquire(ctx, "c1", p, 2, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	mine, err := sem.TryAcquire(ctx)
	if err != nil {
		t.Fatalf("second of two leases: %v", err)
	}
	if l, err := sem.TryAcquire(ctx); !errors.Is(err, ErrLocked) {
		t.Errorf("a third lease out of two: %v, want ErrLocked", err)
		if err == nil {
			_ = l.Release(ctx)
		}
	}
	if id, _, err := cur.SemaphoreAcquire(ctx, "c1", p, 2, 300*time.Millisecond); !errors.Is(err, interop.ErrTimeout) {
		t.Errorf("Curator asking for a third lease out of two: %v, want a timeout", err)
		if err == nil {
			_, _ = cur.SemaphoreRelease(ctx, "c1", id)
		}
	}
	if _, err := cur.SemaphoreRelease(ctx, "c1", lease); err != nil {
		t.Fatal(err)
	}
	again, err := sem.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = again.Release(ctx)
	_ = mine.Release(ctx)
}
