package lock

import (
	"context"

	"github.com/zkrecipes/zkrecipes/internal/queue"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// RWMutex is a distributed reader/writer lock compatible with Curator's
// InterProcessReadWriteLock: readers share, a writer is exclusive, and both
// kinds queue in one order (a reader arriving after a waiting writer waits
// for it). Kazoo's ReadLock and WriteLock contenders are seen, but Kazoo
// sees ours only if configured to (see the package doc).
type RWMutex struct {
	b           base
	read, write queue.Queue
}

// NewRWMutex returns a reader/writer lock at path. It fails with
// ErrInvalidArgument for a nil session or an invalid path, and with
// ErrInvalidOption for a bad option.
func NewRWMutex(s *resilience.Session, path string, opts ...Option) (*RWMutex, error) {
	b, err := newBase(s, path, opts)
	if err != nil {
		return nil, err
	}
	all := []string{markerRead, markerWrite, markerKazooRead, markerKazoo}
	return &RWMutex{
		b:     b,
		read:  queue.Queue{Parent: path, Name: markerRead, Markers: all, Blocker: shared, Data: b.opts.data},
		write: queue.Queue{Parent: path, Name: markerWrite, Markers: all, Data: b.opts.data},
	}, nil
}

// Path returns the lock's znode path.
func (rw *RWMutex) Path() string { return rw.b.path }

// RLock waits for a shared (read) lease.
func (rw *RWMutex) RLock(ctx context.Context) (*Lease, error) {
	return rw.b.acquire(ctx, kindRead, rw.taker(&rw.read, true))
}

// TryRLock takes a read lease only if no writer holds or waits ahead, and
// otherwise returns an error wrapping ErrLocked.
func (rw *RWMutex) TryRLock(ctx context.Context) (*Lease, error) {
	return rw.b.acquire(ctx, kindRead, rw.taker(&rw.read, false))
}

// Lock waits for the exclusive (write) lease.
func (rw *RWMutex) Lock(ctx context.Context) (*Lease, error) {
	return rw.b.acquire(ctx, kindWrite, rw.taker(&rw.write, true))
}

// TryLock takes the write lease only if nobody holds or waits, and
// otherwise returns an error wrapping ErrLocked.
func (rw *RWMutex) TryLock(ctx context.Context) (*Lease, error) {
	return rw.b.acquire(ctx, kindWrite, rw.taker(&rw.write, false))
}

func (rw *RWMutex) taker(q *queue.Queue, wait bool) func(context.Context) (queue.Entry, error) {
	return func(ctx context.Context) (queue.Entry, error) { return q.Take(ctx, rw.b.s, wait) }
}
