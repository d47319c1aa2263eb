package lock_test

import (
	"context"
	"errors"
	"log"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/lock"
	"github.com/zkrecipes/zkrecipes/resilience"
)

func ExampleMutex() {
	ctx := context.Background()
	s, err := resilience.Connect(ctx, []string{"127.0.0.1:2181"})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	m, err := lock.NewMutex(s, "/locks/billing")
	if err != nil {
		log.Fatal(err)
	}
	lease, err := m.Lock(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer lease.Release(context.Background())

	// Do the work under the lease's context: it is cancelled the moment the
	// lock can no longer be trusted. Pass the fencing token downstream.
	if err := chargeCustomers(lease.Context(), lease.Token()); err != nil {
		log.Print(err)
	}
}

func chargeCustomers(ctx context.Context, token int64) error { return ctx.Err() }

func ExampleLease_Guarded() {
	ctx := context.Background()
	s, err := resilience.Connect(ctx, []string{"127.0.0.1:2181"})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	m, _ := lock.NewMutex(s, "/locks/config")
	lease, err := m.Lock(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer lease.Release(ctx)

	// The write applies only while the lease's node still exists.
	_, err = lease.Guarded(ctx, &zk.SetDataRequest{Path: "/config/current", Data: []byte("v2"), Version: -1})
	if errors.Is(err, lock.ErrLeaseLost) {
		log.Print("lost the lock; the write did not apply, or (lost in flight) applied while still held")
	}
}

func ExampleSemaphore() {
	ctx := context.Background()
	s, err := resilience.Connect(ctx, []string{"127.0.0.1:2181"})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	sem, err := lock.NewSemaphore(s, "/semaphores/downloads", 3)
	if err != nil {
		log.Fatal(err)
	}
	lease, err := sem.Acquire(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer lease.Release(ctx)
}
