package lock

import (
	"context"
	"errors"
	"fmt"

	"github.com/zkrecipes/zkrecipes/internal/queue"
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

// The kinds of lock, as the zkrecipes.lock.kind attribute names them.
const (
	kindMutex     = "mutex"
	kindRead      = "read"
	kindWrite     = "write"
	kindSemaphore = "semaphore"
)

// describe names a lock of kind at p the way a user knows it.
func describe(kind, p string) string {
	switch kind {
	case kindRead:
		return "read lock " + p
	case kindWrite:
		return "write lock " + p
	}
	return kind + " " + p
}

// shared is the Blocker of a reader: it holds unless a writer is ahead,
// and then waits for the nearest one.
func shared(cs []queue.Contender, idx int) int {
	for i := idx - 1; i >= 0; i-- {
		if m := cs[i].Marker; m == markerWrite || m == markerKazoo {
			return i
		}
	}
	return -1
}

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
		return base{}, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	if p == "/" {
		return base{}, fmt.Errorf("%w: %w \"/\": the root cannot be a lock", ErrInvalidArgument, resilience.ErrInvalidPath)
	}
	o, err := buildOptions(opts)
	if err != nil {
		return base{}, err
	}
	tel, err := newTelemetry(s, &o)
	if err != nil {
		return base{}, err
	}
	return base{s: s, path: p, opts: o, tel: tel}, nil
}

// acquire runs take until its entry's turn has come and returns that entry
// as a lease, in one span. take returns queue.ErrNotFirst when it gives up
// without waiting; it re-enters its queue on a new session and leaves no
// node behind when it fails or is cancelled.
func (b *base) acquire(ctx context.Context, kind string, take func(context.Context) (queue.Entry, error)) (*Lease, error) {
	ctx, span, start := b.tel.start(ctx, kind, b.path)
	l, err := b.acquireLoop(ctx, kind, take)
	b.tel.finish(ctx, span, start, kind, l, err)
	return l, err
}

func (b *base) acquireLoop(ctx context.Context, kind string, take func(context.Context) (queue.Entry, error)) (*Lease, error) {
	for {
		e, err := take(ctx)
		if errors.Is(err, queue.ErrNotFirst) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, describe(kind, b.path))
		}
		if err != nil {
			return nil, fmt.Errorf("lock: acquiring %s: %w", describe(kind, b.path), err)
		}
		token, err := readToken(ctx, b.s, e)
		if errors.Is(err, errNodeGone) || errors.Is(err, resilience.ErrSessionLost) {
			continue // our node went before the lease began: queue again
		}
		if err != nil {
			return nil, fmt.Errorf("lock: acquiring %s: %w", describe(kind, b.path), err)
		}
		return newLease(ctx, b, e, kind, token)
	}
}

// errNodeGone: the node whose turn came was gone (or not ours) when its
// fencing token was read.
var errNodeGone = errors.New("lock: node gone before its lease began")

// readToken reads the czxid of e's node, the lease's fencing token, once
// its turn has come and before the lease begins, so that Token is known
// for the whole lease. go-zookeeper/zk's create returns only the path, so
// this is one read per acquisition. A node that is gone or belongs to
// another session gives errNodeGone; on any error e is left (its node
// deleted, if still there).
func readToken(ctx context.Context, s *resilience.Session, e queue.Entry) (int64, error) {
	ok, st, err := s.Exists(ctx, e.Path)
	switch {
	case err != nil:
		_ = queue.Leave(s, e)
		return 0, err
	case !ok || st.EphemeralOwner != e.SessionID || st.Czxid <= 0:
		_ = queue.Leave(s, e)
		return 0, fmt.Errorf("%w: %s", errNodeGone, e.Path)
	}
	return st.Czxid, nil
}
