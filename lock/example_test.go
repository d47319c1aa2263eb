package lock_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/lock"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// servers are the ZooKeeper servers the examples use, e.g.
// []string{"127.0.0.1:2181"}; here, the package tests' ensemble.
func servers() []string { return lock.EnsembleServers() }

// Two services take turns on one lock; the one that finds it held is
// refused. Work done under the lease's context stops when the lock can no
// longer be trusted, and writes downstream carry the fencing token.
func ExampleMutex() {
	ctx := context.Background()
	s, err := resilience.Connect(ctx, servers())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	other, err := resilience.Connect(ctx, servers())
	if err != nil {
		log.Fatal(err)
	}
	defer other.Close()

	m, err := lock.NewMutex(s, "/examples/locks/billing")
	if err != nil {
		log.Fatal(err)
	}
	lease, err := m.Lock(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := chargeCustomers(lease.Context(), lease.Token()); err != nil {
		log.Print(err)
	}

	theirs, _ := lock.NewMutex(other, "/examples/locks/billing")
	_, err = theirs.TryLock(ctx)
	fmt.Println("other service refused:", errors.Is(err, lock.ErrLocked))

	if err := lease.Release(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("lease ended:", context.Cause(lease.Context()))
	next, err := theirs.TryLock(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("other service holds it, with a larger token:", next.Token() > lease.Token())
	_ = next.Release(ctx)
	// Output:
	// charging with fencing token > 0: true
	// other service refused: true
	// lease ended: lock: lease of mutex /examples/locks/billing released
	// other service holds it, with a larger token: true
}

func chargeCustomers(ctx context.Context, token int64) error {
	fmt.Println("charging with fencing token > 0:", token > 0)
	return ctx.Err()
}

// A write to state kept in ZooKeeper applies only while the lease holds.
func ExampleLease_Guarded() {
	ctx := context.Background()
	s, err := resilience.Connect(ctx, servers())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Create(ctx, "/examples/config", []byte("v1"), 0, nil); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		log.Fatal(err)
	}
	m, err := lock.NewMutex(s, "/examples/locks/config")
	if err != nil {
		log.Fatal(err)
	}
	lease, err := m.Lock(ctx)
	if err != nil {
		log.Fatal(err)
	}
	set := &zk.SetDataRequest{Path: "/examples/config", Data: []byte("v2"), Version: -1}
	_, err = lease.Guarded(ctx, set)
	fmt.Println("write while holding:", err)

	_ = lease.Release(ctx)
	set.Data = []byte("v3")
	_, err = lease.Guarded(ctx, set)
	fmt.Println("write after release refused:", errors.Is(err, lock.ErrLeaseLost))
	data, _, err := s.Get(ctx, "/examples/config")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("config: %s\n", data)
	// Output:
	// write while holding: <nil>
	// write after release refused: true
	// config: v2
}

// At most three downloads run at once, across every client of the
// semaphore.
func ExampleSemaphore() {
	ctx := context.Background()
	s, err := resilience.Connect(ctx, servers())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	sem, err := lock.NewSemaphore(s, "/examples/semaphores/downloads", 3)
	if err != nil {
		log.Fatal(err)
	}
	var leases []*lock.Lease
	for i := 0; i < sem.Size(); i++ {
		l, err := sem.Acquire(ctx)
		if err != nil {
			log.Fatal(err)
		}
		leases = append(leases, l)
	}
	_, err = sem.TryAcquire(ctx)
	fmt.Println("a fourth download:", err)
	for _, l := range leases {
		_ = l.Release(ctx)
	}
	// Output:
	// a fourth download: lock: held by another client: semaphore /examples/semaphores/downloads
}
