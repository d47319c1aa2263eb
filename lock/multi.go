package lock

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/hashicorp/go-multierror"
)

// Locker is a lock that MultiLock can take: Mutex and anything with the
// same two methods.
type Locker interface {
	// Path returns the lock's znode path; MultiLock takes its locks in
	// the order of their paths.
	Path() string
	// Lock waits until the lock is held, or ctx ends, and returns the
	// lease.
	Lock(ctx context.Context) (*Lease, error)
}

// MultiLock takes several locks as one: always in the order of their paths
// (so two MultiLocks over overlapping sets cannot deadlock), and on failure
// releases the ones it already took.
type MultiLock struct {
	locks []Locker
}

// NewMultiLock returns a MultiLock over locks, which must be non-empty,
// non-nil and have distinct paths (else an error wrapping
// ErrInvalidArgument).
func NewMultiLock(locks ...Locker) (*MultiLock, error) {
	if len(locks) == 0 {
		return nil, fmt.Errorf("%w: no locks", ErrInvalidArgument)
	}
	for i, l := range locks {
		if l == nil {
			return nil, fmt.Errorf("%w: lock %d is nil", ErrInvalidArgument, i)
		}
	}
	sorted := append([]Locker(nil), locks...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path() < sorted[j].Path() })
	for i := 1; i < len(sorted); i++ {
		if sorted[i].Path() == sorted[i-1].Path() {
			return nil, fmt.Errorf("%w: lock %s listed twice", ErrInvalidArgument, sorted[i].Path())
		}
	}
	return &MultiLock{locks: sorted}, nil
}

// Lock takes every lock in path order and returns their combined lease.
// If a lease it already took ends while it waits for a later lock (its
// session was suspended or lost, by the locks' loss policy), it releases
// what it holds and starts again, so the lease it returns is held in full.
func (ml *MultiLock) Lock(ctx context.Context) (*MultiLease, error) {
	for {
		m, err := ml.lockAll(ctx)
		if !errors.Is(err, errTakenLost) || ctx.Err() != nil {
			return m, err
		}
	}
}

// errTakenLost says a lease taken earlier ended while waiting for a later
// one.
var errTakenLost = errors.New("lock: a lease taken earlier ended while waiting")

func (ml *MultiLock) lockAll(ctx context.Context) (*MultiLease, error) {
	leases := make([]*Lease, 0, len(ml.locks))
	release := func() {
		for i := len(leases) - 1; i >= 0; i-- {
			_ = leases[i].Release(context.WithoutCancel(ctx))
		}
	}
	// wctx ends when the caller's does or when a lease taken so far ends.
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	for _, lk := range ml.locks {
		l, err := lk.Lock(wctx)
		if err == nil && wctx.Err() != nil {
			leases = append(leases, l) // taken as the wait was being stopped
			err = context.Cause(wctx)
		}
		if err != nil {
			release()
			if ctx.Err() == nil && errors.Is(context.Cause(wctx), errTakenLost) {
				return nil, errTakenLost
			}
			return nil, fmt.Errorf("lock: multi-lock at %s: %w", lk.Path(), err)
		}
		leases = append(leases, l)
		stop := context.AfterFunc(l.Context(), func() { cancel(errTakenLost) })
		defer stop()
	}
	for _, l := range leases {
		if l.Err() != nil {
			release()
			return nil, errTakenLost
		}
	}
	ctx2, cancel2 := context.WithCancelCause(context.Background())
	ml2 := &MultiLease{leases: leases, ctx: ctx2, cancel: cancel2}
	for _, l := range leases {
		ml2.stops = append(ml2.stops, context.AfterFunc(l.Context(), func() { cancel2(context.Cause(l.Context())) }))
	}
	return ml2, nil
}

// MultiLease holds every lock of a MultiLock. Its context is cancelled as
// soon as any of its leases ends.
type MultiLease struct {
	leases []*Lease
	ctx    context.Context
	cancel context.CancelCauseFunc
	stops  []func() bool
}

// Context is cancelled when any lease ends; its cause is that lease's.
func (m *MultiLease) Context() context.Context { return m.ctx }

// Done is Context().Done().
func (m *MultiLease) Done() <-chan struct{} { return m.ctx.Done() }

// Token returns the multi-lease's fencing token: the largest token of its
// leases, which is that of the lock with the greatest path (taken last);
// never 0, and known at acquisition like Lease.Token. A later MultiLease
// of the same MultiLock has a larger token: its node on that last lock was
// created after the earlier holder's, because a node ahead of the earlier
// holder's would have had to be gone before the earlier holding began. So a
// resource written only under this MultiLock can be fenced with Token. Do
// not mix these tokens with those of single locks on the same resource
// unless that lock is the last one: a Mutex lease on an earlier path may be
// newer yet carry a smaller token.
func (m *MultiLease) Token() int64 {
	var max int64
	for _, l := range m.leases {
		if t := l.Token(); t > max {
			max = t
		}
	}
	return max
}

// Leases returns the individual leases, in path order.
func (m *MultiLease) Leases() []*Lease { return append([]*Lease(nil), m.leases...) }

// Release releases every lease (in reverse order) and returns all their
// errors together.
func (m *MultiLease) Release(ctx context.Context) error {
	for _, stop := range m.stops {
		stop()
	}
	m.cancel(ErrReleased)
	var merr *multierror.Error
	for i := len(m.leases) - 1; i >= 0; i-- {
		if err := m.leases[i].Release(ctx); err != nil {
			merr = multierror.Append(merr, err)
		}
	}
	return merr.ErrorOrNil()
}
