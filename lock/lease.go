package lock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/recipes"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// Lease is one holding of a lock or semaphore. Its Context is cancelled
// when the holding ends: by Release (cause ErrReleased) or by loss (cause
// wrapping ErrLeaseLost). A Lease needs no goroutine of its own while held.
type Lease struct {
	s      *resilience.Session
	entry  recipes.Entry
	policy LossPolicy
	tel    *telemetry
	kind   string

	ctx    context.Context
	cancel context.CancelCauseFunc
	since  time.Time

	mu        sync.Mutex
	ended     bool // released or lost
	released  bool
	cleanup   bool // lost at Suspended: delete the node once the session is back
	unlisten  func()
	tokenDone chan struct{}
	token     int64
}

func newLease(s *resilience.Session, e recipes.Entry, policy LossPolicy, tel *telemetry, kind string) *Lease {
	ctx, cancel := context.WithCancelCause(context.Background())
	l := &Lease{
		s: s, entry: e, policy: policy, tel: tel, kind: kind,
		ctx: ctx, cancel: cancel, since: time.Now(),
		tokenDone: make(chan struct{}),
	}
	tel.held.Add(context.Background(), 1, tel.kindAttr(kind))
	l.mu.Lock()
	l.unlisten = s.AddListener(l.onTransition)
	l.mu.Unlock()
	// The listener covers what happens from now on; the state covers what
	// happened since the lease's node was last seen.
	switch st := s.State(); {
	case st == resilience.Closed || st == resilience.Lost || s.SessionID() != e.SessionID:
		l.lose(fmt.Errorf("%w: session %#x ended before the lease was handed out", ErrLeaseLost, e.SessionID), false)
	case st == resilience.Suspended && policy == LoseOnSuspend:
		l.lose(fmt.Errorf("%w: connection suspended", ErrLeaseLost), true)
	}
	// The fencing token is the node's czxid. Reading it overlaps with the
	// holder's work (and with Release) instead of delaying the acquisition.
	go l.fetchToken()
	return l
}

func (l *Lease) fetchToken() {
	defer close(l.tokenDone)
	_, st, err := l.s.Exists(l.ctx, l.entry.Path)
	if err == nil && st != nil && st.Czxid != 0 {
		l.token = st.Czxid
	}
}

// onTransition runs on the session's goroutine; it only cancels and
// schedules.
func (l *Lease) onTransition(t resilience.Transition) {
	switch t.To {
	case resilience.Suspended:
		if l.policy == LoseOnSuspend && t.SessionID == l.entry.SessionID {
			l.lose(fmt.Errorf("%w: connection to ZooKeeper suspended (%s)", ErrLeaseLost, t.Cause), true)
		}
	case resilience.Reconnected:
		if t.SessionID != l.entry.SessionID {
			return
		}
		l.mu.Lock()
		clean := l.cleanup
		l.cleanup = false
		l.mu.Unlock()
		if clean {
			// Same session back: our node still exists and blocks the next
			// waiter. Remove it.
			go func() {
				_ = recipes.Leave(l.s, l.entry)
				l.stopListening()
			}()
		}
	case resilience.Lost:
		if t.OldSessionID == l.entry.SessionID {
			l.lose(fmt.Errorf("%w: session %#x %s", ErrLeaseLost, t.OldSessionID, t.Cause), false)
			l.stopListening()
		}
	case resilience.Closed:
		l.lose(fmt.Errorf("%w: session closed", ErrLeaseLost), false)
		l.stopListening()
	}
}

func (l *Lease) lose(cause error, cleanup bool) {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return
	}
	l.ended, l.cleanup = true, cleanup
	l.mu.Unlock()
	l.cancel(cause)
	l.tel.lost(l.kind, cause)
	l.tel.held.Add(context.Background(), -1, l.tel.kindAttr(l.kind))
}

func (l *Lease) stopListening() {
	l.mu.Lock()
	f := l.unlisten
	l.unlisten = nil
	l.mu.Unlock()
	if f != nil {
		f()
	}
}

// Context returns a context that is cancelled when the lease ends; its
// context.Cause says why (ErrReleased, or an error wrapping ErrLeaseLost).
func (l *Lease) Context() context.Context { return l.ctx }

// Done is Context().Done().
func (l *Lease) Done() <-chan struct{} { return l.ctx.Done() }

// Err returns nil while the lease holds, then the reason it ended.
func (l *Lease) Err() error {
	if l.ctx.Err() == nil {
		return nil
	}
	return context.Cause(l.ctx)
}

// Path returns the lease's znode.
func (l *Lease) Path() string { return l.entry.Path }

// Token returns the fencing token: the czxid of the lease's node, larger for
// every later holder of the same lock. The first call may wait for one read
// issued at acquisition. It returns 0 if the lease ended before the token
// was known.
func (l *Lease) Token() int64 {
	select {
	case <-l.tokenDone:
	case <-l.ctx.Done():
		select {
		case <-l.tokenDone:
		default:
			return 0
		}
	}
	return l.token
}

// Guarded runs ops (*zk.CreateRequest, *zk.SetDataRequest, *zk.DeleteRequest,
// *zk.CheckVersionRequest) as one transaction that applies only if the
// lease's node still exists, so a write to ZooKeeper-held state is
// conditional on still holding the lock. It returns the ops' responses, or
// an error wrapping ErrLeaseLost if the lease has ended or its node is gone.
func (l *Lease) Guarded(ctx context.Context, ops ...any) ([]zk.MultiResponse, error) {
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLeaseLost, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(l.ctx, cancel)
	defer stop()
	all := append([]any{&zk.CheckVersionRequest{Path: l.entry.Path, Version: -1}}, ops...)
	res, err := l.s.Multi(ctx, all...)
	if err != nil {
		if len(res) > 0 && errors.Is(res[0].Error, zk.ErrNoNode) {
			return nil, fmt.Errorf("%w: node %s is gone", ErrLeaseLost, l.entry.Path)
		}
		if lerr := l.Err(); lerr != nil {
			return nil, fmt.Errorf("%w: %v", ErrLeaseLost, lerr)
		}
		if len(res) > 1 {
			res = res[1:]
		}
		return res, err
	}
	return res[1:], nil
}

// Release gives the lease up and deletes its node. If the lease was already
// lost it returns at once with an error wrapping ErrLeaseLost (the node is
// gone with its session, or is removed when the session comes back); a
// second Release returns ErrReleased. If ctx ends before the node is
// deleted, the deletion continues in the background.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return ErrReleased
	}
	l.released = true
	lost := l.ended
	l.ended = true
	l.mu.Unlock()
	if lost {
		return fmt.Errorf("lock: release %s: %w", l.entry.Path, context.Cause(l.ctx))
	}
	l.cancel(ErrReleased)
	l.tel.held.Add(context.Background(), -1, l.tel.kindAttr(l.kind))
	l.stopListening()
	// If the session goes while we wait to delete, so did the node.
	gone, unwatch := recipes.LostSignal(l.s, l.entry.SessionID)
	defer unwatch()
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-gone:
			cancel()
		case <-dctx.Done():
		}
	}()
	err := l.s.Delete(dctx, l.entry.Path, -1)
	select {
	case <-gone:
		return fmt.Errorf("%w: session %#x ended during release", ErrLeaseLost, l.entry.SessionID)
	default:
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, zk.ErrNoNode):
		return fmt.Errorf("%w: node %s was already gone", ErrLeaseLost, l.entry.Path)
	case errors.Is(err, resilience.ErrSessionLost), errors.Is(err, resilience.ErrClosed):
		return fmt.Errorf("%w: %v", ErrLeaseLost, err)
	case ctx.Err() != nil:
		go func() { _ = recipes.Leave(l.s, l.entry) }()
	}
	return err
}
