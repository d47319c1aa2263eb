package lock

import (
	"context"
	"errors"
	"fmt"
	"path"

	"github.com/zkrecipes/zkrecipes/recipes"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// Node-name markers. Curator's InterProcessMutex and go-zookeeper/zk's Lock
// use "lock-"; Kazoo's Lock uses "__lock__" and its ReadLock "__rlock__";
// Curator's InterProcessReadWriteLock uses "__READ__" and "__WRIT__".
const (
	markerLock      = "lock-"
	markerKazoo     = "__lock__"
	markerKazooRead = "__rlock__"
	markerRead      = "__READ__"
	markerWrite     = "__WRIT__"
)

// queueSpec describes one kind of entry in a lock's queue.
type queueSpec struct {
	kind    string   // for telemetry
	name    string   // our node's name before the sequence number
	markers []string // every contender that counts
	// blocker returns the index of the contender entry idx must wait for,
	// or -1 when idx holds the lock.
	blocker func(cs []recipes.Contender, idx int) int
}

// exclusive holds when first; otherwise waits for its predecessor.
func exclusive(_ []recipes.Contender, idx int) int { return idx - 1 }

// shared holds unless a writer is ahead; then waits for the nearest one.
func shared(cs []recipes.Contender, idx int) int {
	for i := idx - 1; i >= 0; i-- {
		if m := cs[i].Marker; m == markerWrite || m == markerKazoo || m == markerLock {
			return i
		}
	}
	return -1
}

var errEntryGone = errors.New("lock: queue entry deleted by someone else")

// base is what every lock shares.
type base struct {
	s    *resilience.Session
	path string
	opts options
	tel  *telemetry
}

func newBase(s *resilience.Session, p string, opts []Option) (base, error) {
	if s == nil {
		return base{}, fmt.Errorf("%w: nil session", ErrInvalidArgument)
	}
	if err := resilience.ValidatePath(p, false); err != nil {
		return base{}, err
	}
	if p == "/" {
		return base{}, fmt.Errorf("%w: the root cannot be a lock", resilience.ErrInvalidPath)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	tel, err := newTelemetry(s, &o)
	if err != nil {
		return base{}, err
	}
	return base{s: s, path: p, opts: o, tel: tel}, nil
}

// acquire joins the queue under parent and waits for its turn (or, without
// wait, gives up with ErrLocked). It re-enters the queue on a new session
// if the one its node belonged to is lost, and leaves no node behind when it
// fails or is cancelled.
func (b *base) acquire(ctx context.Context, spec *queueSpec, parent string, wait bool) (*Lease, error) {
	return b.tel.acquireSpan(ctx, spec.kind, parent, func(ctx context.Context) (*Lease, error) {
		for {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			e, names, err := recipes.Join(ctx, b.s, parent, spec.name, b.opts.data)
			if errors.Is(err, resilience.ErrSessionLost) {
				continue
			}
			if err != nil {
				return nil, err
			}
			l, err := b.waitTurn(ctx, spec, parent, e, names, wait)
			switch {
			case err == nil:
				return l, nil
			case errors.Is(err, resilience.ErrSessionLost), errors.Is(err, errEntryGone):
				continue // our node went with its session: queue again
			default:
				_ = recipes.Leave(b.s, e)
				return nil, err
			}
		}
	})
}

func (b *base) waitTurn(ctx context.Context, spec *queueSpec, parent string, e recipes.Entry, names []string, wait bool) (*Lease, error) {
	for {
		cs := recipes.Contenders(names, spec.markers...)
		idx := recipes.Index(cs, e.Name)
		if idx < 0 {
			if b.s.SessionID() != e.SessionID {
				return nil, resilience.ErrSessionLost
			}
			return nil, errEntryGone
		}
		bi := spec.blocker(cs, idx)
		if bi < 0 {
			return newLease(b.s, e, b.opts.policy, b.tel, spec.kind), nil
		}
		if !wait {
			return nil, ErrLocked
		}
		if err := recipes.WaitGone(ctx, b.s, path.Join(parent, cs[bi].Name), e.SessionID); err != nil {
			return nil, err
		}
		var err error
		if names, _, err = b.s.Children(ctx, parent); err != nil {
			return nil, err
		}
	}
}
