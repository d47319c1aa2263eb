package lock

import (
	"context"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/hold"
	"github.com/zkrecipes/zkrecipes/internal/queue"
)

// Lease is one holding of a lock or semaphore; the package doc's "Leases"
// section describes how it ends and what its methods promise. A Lease
// needs no goroutine of its own while held.
type Lease struct {
	h *hold.Hold
}

// leaseErr is a lease's own copy of ErrLeaseLost or ErrReleased, naming the
// lock, so that every error the lease returns says which lock it was.
type leaseErr struct {
	msg string
	err error
}

func (e *leaseErr) Error() string { return e.msg }
func (e *leaseErr) Unwrap() error { return e.err }

// newLease starts holding e, whose turn has come; ctx is the acquisition's
// (with its span), whose values the lease's context keeps.
func newLease(ctx context.Context, b *base, e queue.Entry, kind string, token int64) (*Lease, error) {
	what := describe(kind, b.path)
	began := time.Now()
	h, err := hold.New(b.s, e, hold.Config{
		Policy:   b.opts.policy,
		Token:    token,
		Lost:     &leaseErr{"lock: lease of " + what + " lost", ErrLeaseLost},
		Released: &leaseErr{"lock: lease of " + what + " released", ErrReleased},
		Parent:   ctx,
		OnEnd:    func(lost bool, _ error) { b.tel.ended(kind, began, lost) },
	})
	if err != nil {
		_ = queue.Leave(b.s, e)
		return nil, err
	}
	b.tel.began(kind)
	return &Lease{h: h}, nil
}

// Context returns a context that carries the values and trace span of the
// acquisition and is cancelled when the lease ends; context.Cause says why
// (an error wrapping ErrReleased or ErrLeaseLost).
func (l *Lease) Context() context.Context { return l.h.Context() }

// Done is Context().Done().
func (l *Lease) Done() <-chan struct{} { return l.h.Context().Done() }

// Err returns nil while the lease holds, then the reason it ended, as
// Context's cause.
func (l *Lease) Err() error { return l.h.Err() }

// Path returns the lease's own znode, a child of the lock's path.
func (l *Lease) Path() string { return l.h.Entry().Path }

// Token returns the lease's fencing token, known at acquisition: never 0,
// never blocking, the same after the lease ends (see Fencing in the
// package doc).
func (l *Lease) Token() int64 { return l.h.Token() }

// Guarded runs ops as one transaction that applies only while the lease's
// node exists; on an ended lease it returns an error wrapping
// ErrLeaseLost (see Leases in the package doc for a loss while in
// flight).
func (l *Lease) Guarded(ctx context.Context, ops ...any) ([]zk.MultiResponse, error) {
	return l.h.Guarded(ctx, ops...)
}

// Release gives the lease up and deletes its node; see Leases in the
// package doc for what it returns on a lease already lost or released.
func (l *Lease) Release(ctx context.Context) error { return l.h.Release(ctx) }
