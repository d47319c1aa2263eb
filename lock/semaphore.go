package lock

import (
	"context"
	"errors"
	"fmt"

	"github.com/zkrecipes/zkrecipes/internal/queue"
	"github.com/zkrecipes/zkrecipes/resilience"
)

const markerLease = "lease-"

// errGuardLost: the session of the mutex that serialises the counting of
// leases was lost before the lease node was made, so another acquirer may
// be counting.
var errGuardLost = errors.New("lock: semaphore guard lost while counting leases")

// Semaphore hands out at most N leases at a time. Its layout is that of
// Curator's InterProcessSemaphoreV2 (a mutex at path/locks serialising
// acquirers, lease nodes "lease-" under path/leases), so Go and Java
// clients can share one semaphore; they must agree on N. Kazoo's Semaphore
// has another layout and does not share leases with it.
type Semaphore struct {
	b      base
	guard  queue.Queue // path/locks: one acquirer at a time counts
	leases queue.Queue // path/leases: a counting queue of N
}

// NewSemaphore returns a semaphore of n leases at path. It fails with
// ErrInvalidArgument for a nil session, an invalid path or n < 1, and with
// ErrInvalidOption for a bad option.
func NewSemaphore(s *resilience.Session, path string, n int, opts ...Option) (*Semaphore, error) {
	b, err := newBase(s, path, opts)
	if err != nil {
		return nil, err
	}
	if n < 1 {
		return nil, fmt.Errorf("%w: semaphore %s: size %d must be at least 1", ErrInvalidArgument, path, n)
	}
	return &Semaphore{
		b: b,
		guard: queue.Queue{Parent: path + "/locks", Name: markerLock,
			Markers: []string{markerLock, markerKazoo}, Data: b.opts.data},
		leases: queue.Queue{Parent: path + "/leases", Name: markerLease,
			Markers: []string{markerLease}, Limit: n, Data: b.opts.data},
	}, nil
}

// Path returns the semaphore's znode path.
func (sem *Semaphore) Path() string { return sem.b.path }

// Size returns N, the number of leases.
func (sem *Semaphore) Size() int { return sem.leases.Limit }

// Acquire waits for a lease, or until ctx ends. Like Mutex.Lock it waits
// out connection loss and queues again on a new session.
func (sem *Semaphore) Acquire(ctx context.Context) (*Lease, error) {
	return sem.b.acquire(ctx, kindSemaphore, func(ctx context.Context) (queue.Entry, error) {
		return sem.take(ctx, true)
	})
}

// TryAcquire takes a lease if one is free now (and no other acquirer is
// counting), and otherwise returns an error wrapping ErrLocked.
func (sem *Semaphore) TryAcquire(ctx context.Context) (*Lease, error) {
	return sem.b.acquire(ctx, kindSemaphore, func(ctx context.Context) (queue.Entry, error) {
		return sem.take(ctx, false)
	})
}

// take adds a lease node while holding the guard, and waits (with wait)
// until at most N lease nodes exist, its own included.
func (sem *Semaphore) take(ctx context.Context, wait bool) (queue.Entry, error) {
	for {
		g, err := sem.guard.Take(ctx, sem.b.s, wait)
		if err != nil {
			return queue.Entry{}, err
		}
		e, err := sem.takeGuarded(ctx, g, wait)
		_ = queue.Leave(sem.b.s, g)
		if errors.Is(err, errGuardLost) || errors.Is(err, resilience.ErrSessionLost) || errors.Is(err, queue.ErrEntryGone) {
			continue // the guard or our lease node went: count again
		}
		return e, err
	}
}

// takeGuarded is one count under guard g. The lease node must be on g's
// session: if that session was lost before the node was made, the guard is
// gone and another acquirer may be counting (errGuardLost). Once the node
// is made on g's session, losing that session loses both (TakeOnce returns
// resilience.ErrSessionLost).
func (sem *Semaphore) takeGuarded(ctx context.Context, g queue.Entry, wait bool) (queue.Entry, error) {
	e, err := sem.leases.TakeOnce(ctx, sem.b.s, wait)
	if err != nil {
		return queue.Entry{}, err
	}
	if e.SessionID != g.SessionID {
		_ = queue.Leave(sem.b.s, e)
		return queue.Entry{}, errGuardLost
	}
	return e, nil
}
