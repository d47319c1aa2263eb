package lock

import (
	"context"

	"github.com/zkrecipes/zkrecipes/internal/queue"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// Mutex is a distributed mutual-exclusion lock at a znode path, compatible
// with Curator's InterProcessMutex (and go-zookeeper/zk's Lock) on the same
// path, and with Kazoo's Lock only if Kazoo is configured to see our nodes
// (see the package doc). A Mutex is safe for concurrent use; each Lock
// call is a separate contender (it is not reentrant).
type Mutex struct {
	b base
	q queue.Queue
}

// NewMutex returns a mutex at path (created as a container when first
// used). It fails with ErrInvalidArgument for a nil session or an invalid
// path, and with ErrInvalidOption for a bad option.
func NewMutex(s *resilience.Session, path string, opts ...Option) (*Mutex, error) {
	b, err := newBase(s, path, opts)
	if err != nil {
		return nil, err
	}
	return &Mutex{b: b, q: queue.Queue{
		Parent:  path,
		Name:    markerLock,
		Markers: []string{markerLock, markerKazoo},
		Data:    b.opts.data,
	}}, nil
}

// Path returns the lock's znode path.
func (m *Mutex) Path() string { return m.b.path }

// Lock waits until this client holds the lock, or ctx ends, and returns the
// lease. Connection loss is waited out; if the session is lost while
// waiting, Lock queues again on the new session.
func (m *Mutex) Lock(ctx context.Context) (*Lease, error) {
	return m.b.acquire(ctx, kindMutex, func(ctx context.Context) (queue.Entry, error) {
		return m.q.Take(ctx, m.b.s, true)
	})
}

// TryLock takes the lock if nobody holds it or waits for it, and otherwise
// returns an error wrapping ErrLocked at once (after one round trip).
func (m *Mutex) TryLock(ctx context.Context) (*Lease, error) {
	return m.b.acquire(ctx, kindMutex, func(ctx context.Context) (queue.Entry, error) {
		return m.q.Take(ctx, m.b.s, false)
	})
}
