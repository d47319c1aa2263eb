package lock

import (
	"context"
	"errors"
	"fmt"
	"path"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/queue"
	"github.com/zkrecipes/zkrecipes/resilience"
)

const markerLease = "lease-"

// errLeaseGone: our lease node was deleted by someone else while counting.
var errLeaseGone = errors.New("lock: semaphore lease node deleted by someone else")

// Semaphore hands out at most N leases at a time. Its layout is that of
// Curator's InterProcessSemaphoreV2 (a mutex at path/locks serialising
// acquirers, lease nodes "lease-" under path/leases), so Go and Java
// clients can share one semaphore; they must agree on N.
type Semaphore struct {
	b     base
	max   int
	guard *Mutex
}

// NewSemaphore returns a semaphore of n leases at path. n must be positive.
func NewSemaphore(s *resilience.Session, path string, n int, opts ...Option) (*Semaphore, error) {
	if n <= 0 {
		return nil, fmt.Errorf("%w: semaphore size %d must be positive", ErrInvalidArgument, n)
	}
	b, err := newBase(s, path, opts)
	if err != nil {
		return nil, err
	}
	guard, err := NewMutex(s, path+"/locks", opts...)
	if err != nil {
		return nil, err
	}
	return &Semaphore{b: b, max: n, guard: guard}, nil
}

// Path returns the semaphore's znode path.
func (sem *Semaphore) Path() string { return sem.b.path }

// Size returns N, the number of leases.
func (sem *Semaphore) Size() int { return sem.max }

// Acquire waits for a lease.
func (sem *Semaphore) Acquire(ctx context.Context) (*Lease, error) {
	return sem.b.tel.acquireSpan(ctx, "semaphore", sem.b.path, func(ctx context.Context) (*Lease, error) {
		return sem.acquire(ctx, true)
	})
}

// TryAcquire takes a lease if one is free now, else returns ErrLocked.
func (sem *Semaphore) TryAcquire(ctx context.Context) (*Lease, error) {
	return sem.b.tel.acquireSpan(ctx, "semaphore", sem.b.path, func(ctx context.Context) (*Lease, error) {
		return sem.acquire(ctx, false)
	})
}

func (sem *Semaphore) acquire(ctx context.Context, wait bool) (*Lease, error) {
	leases := path.Join(sem.b.path, "leases")
	for {
		// One acquirer at a time counts the leases.
		var g *Lease
		var err error
		if wait {
			g, err = sem.guard.Lock(ctx)
		} else {
			g, err = sem.guard.TryLock(ctx)
		}
		if err != nil {
			return nil, err
		}
		l, err := sem.take(ctx, g, leases, wait)
		_ = g.Release(context.WithoutCancel(ctx))
		if errors.Is(err, resilience.ErrSessionLost) || errors.Is(err, errLeaseGone) || errors.Is(err, ErrLeaseLost) {
			continue // the guard or our lease node went with its session
		}
		return l, err
	}
}

// take adds a lease node and waits until it is among the first N.
func (sem *Semaphore) take(ctx context.Context, guard *Lease, leases string, wait bool) (*Lease, error) {
	// Stop waiting if the guard is lost: another acquirer may be counting.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(guard.Context(), cancel)
	defer stop()

	e, names, err := queue.Join(ctx, sem.b.s, leases, markerLease, sem.b.opts.data)
	if err != nil {
		return nil, guardErr(guard, err)
	}
	lost, unwatch := queue.LostSignal(sem.b.s, e.SessionID)
	defer unwatch()
	for {
		cs := queue.Contenders(names, markerLease)
		if queue.Index(cs, e.Name) < 0 {
			if sem.b.s.SessionID() != e.SessionID {
				return nil, resilience.ErrSessionLost
			}
			return nil, errLeaseGone
		}
		if len(cs) <= sem.max {
			token, err := readToken(ctx, sem.b.s, e)
			if errors.Is(err, errNodeGone) {
				return nil, errLeaseGone
			}
			if err != nil {
				return nil, guardErr(guard, err)
			}
			return newLease(ctx, sem.b.s, e, sem.b.opts.policy, sem.b.tel, "semaphore", token)
		}
		if !wait {
			_ = queue.Leave(sem.b.s, e)
			return nil, ErrLocked
		}
		var ch <-chan zk.Event
		names, _, ch, err = sem.b.s.ChildrenW(ctx, leases)
		if err != nil {
			_ = queue.Leave(sem.b.s, e)
			return nil, guardErr(guard, err)
		}
		if len(queue.Contenders(names, markerLease)) <= sem.max {
			continue
		}
		select {
		case <-ch:
			if names, _, err = sem.b.s.Children(ctx, leases); err != nil {
				_ = queue.Leave(sem.b.s, e)
				return nil, guardErr(guard, err)
			}
		case <-lost:
			return nil, resilience.ErrSessionLost
		case <-ctx.Done():
			_ = queue.Leave(sem.b.s, e)
			return nil, guardErr(guard, ctx.Err())
		}
	}
}

// guardErr reports a lost guard as such, so acquire starts over.
func guardErr(guard *Lease, err error) error {
	if gerr := guard.Err(); gerr != nil && !errors.Is(gerr, ErrReleased) {
		return gerr
	}
	return err
}
