package lock

import (
	"context"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/hold"
	"github.com/zkrecipes/zkrecipes/internal/queue"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// Lease is one holding of a lock or semaphore. Its Context is cancelled
// when the holding ends: by Release (cause ErrReleased) or by loss (cause
// wrapping ErrLeaseLost). A Lease needs no goroutine of its own while held:
// session transitions reach it through a listener.
type Lease struct {
	h *hold.Hold
}

func newLease(ctx context.Context, s *resilience.Session, e queue.Entry, policy resilience.LossPolicy, tel *telemetry, kind string, token int64) (*Lease, error) {
	h, err := hold.New(s, e, hold.Config{
		Policy: policy, Token: token, Lost: ErrLeaseLost, Released: ErrReleased, Parent: ctx,
		OnEnd: func(lost bool, cause error) {
			tel.held.Add(context.Background(), -1, tel.kindAttr(kind))
			if lost {
				tel.lost(kind, cause)
			}
		},
	})
	if err != nil {
		_ = queue.Leave(s, e)
		return nil, err
	}
	tel.held.Add(context.Background(), 1, tel.kindAttr(kind))
	return &Lease{h: h}, nil
}

// Context returns a context that is cancelled when the lease ends; its
// context.Cause says why (ErrReleased, or an error wrapping ErrLeaseLost).
func (l *Lease) Context() context.Context { return l.h.Context() }

// Done is Context().Done().
func (l *Lease) Done() <-chan struct{} { return l.h.Context().Done() }

// Err returns nil while the lease holds, then the reason it ended.
func (l *Lease) Err() error { return l.h.Err() }

// Path returns the lease's znode.
func (l *Lease) Path() string { return l.h.Entry().Path }

// Token returns the fencing token: the czxid of the lease's node; never 0.
// It is read when the lease is acquired, so Token never blocks, and it
// returns the same value after the lease has ended (released or lost).
// Every later holder of the same Mutex (or write side of an RWMutex) has a
// larger token, so a store that refuses tokens lower than the highest it
// has seen (see package fence) refuses the writes of a holder that has
// been superseded. Concurrent holders (RWMutex readers, Semaphore leases)
// have different tokens, ordered by acquisition, none of which excludes
// the others.
func (l *Lease) Token() int64 { return l.h.Token() }

// Guarded runs ops (*zk.CreateRequest, *zk.SetDataRequest, *zk.DeleteRequest,
// *zk.CheckVersionRequest) as one transaction that applies only if the
// lease's node still exists, so a write to ZooKeeper-held state is
// conditional on still holding the lock. It returns the ops' responses, or
// an error wrapping ErrLeaseLost if the lease has ended or its node is gone
// (then nothing was written, unless the lease was lost while the
// transaction was in flight: then it may have been applied while the node
// still existed).
func (l *Lease) Guarded(ctx context.Context, ops ...any) ([]zk.MultiResponse, error) {
	return l.h.Guarded(ctx, ops...)
}

// Release gives the lease up and deletes its node. If the lease was already
// lost it returns at once with an error wrapping ErrLeaseLost (the node is
// gone with its session, or is removed when the session comes back); a
// second Release returns ErrReleased. If the session ends during the
// release, the node went with it (ErrLeaseLost). If ctx ends before the
// node is deleted, the deletion continues in the background.
func (l *Lease) Release(ctx context.Context) error { return l.h.Release(ctx) }
