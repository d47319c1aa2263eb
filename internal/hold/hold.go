// Package hold is the holding behind lock.Lease and election.Term: a queue
// entry whose turn has come, ended by release or by loss according to a
// resilience.LossPolicy, with its fencing token and guarded transactions.
// Each recipe passes its own sentinel errors.
package hold

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/queue"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// Hold is one holding of a queue entry whose turn has come: a lock lease, a
// leadership term. Its context is cancelled when the holding ends, by
// Release (cause the Released sentinel) or by loss (cause wrapping the Lost sentinel). It needs
// no goroutine while held: session transitions reach it through a listener.
type Hold struct {
	s      *resilience.Session
	entry  queue.Entry
	policy resilience.LossPolicy
	onEnd  func(lost bool, cause error)

	errLost, errReleased error

	ctx    context.Context
	cancel context.CancelCauseFunc

	token int64 // the node's czxid, known before the holding began

	mu       sync.Mutex
	ended    bool
	released bool
	cleanup  bool // lost while Suspended: delete the node once the session is back
	unlisten func()
	deadline *time.Timer // resilience.LoseOnSessionLoss while Suspended: ends the holding at SafeUntil
}

// Config says how a holding behaves and what it reports.
type Config struct {
	// Policy says when the holding counts as lost.
	Policy resilience.LossPolicy
	// Token is the fencing token: the czxid of the entry's node, which the
	// caller read (Session.Exists) after its turn came and before New, so
	// that Token is known for the whole holding. It must be positive.
	Token int64
	// Lost is the recipe's sentinel that every loss cause wraps
	// (lock.ErrLeaseLost, election.ErrTermLost).
	Lost error
	// Released is the recipe's sentinel for a holding given up: the cause
	// of its context and the error of a second release.
	Released error
	// Parent is the caller's context: the holding's context keeps its
	// values (a trace span among them) but not its cancellation. Nil means
	// context.Background().
	Parent context.Context
	// OnEnd, if not nil, is called once when the holding ends.
	OnEnd func(lost bool, cause error)
}

// New starts holding e. It returns an error, and holds nothing, if the
// configuration lacks its token or sentinels.
func New(s *resilience.Session, e queue.Entry, c Config) (*Hold, error) {
	if c.Token <= 0 || c.Lost == nil || c.Released == nil {
		return nil, fmt.Errorf("hold: holding of %s without its fencing token (czxid %d) or sentinels", e.Path, c.Token)
	}
	parent := c.Parent
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	h := &Hold{s: s, entry: e, policy: c.Policy, token: c.Token, onEnd: c.OnEnd, errLost: c.Lost, errReleased: c.Released, ctx: ctx, cancel: cancel}
	h.mu.Lock()
	h.unlisten = s.AddListener(h.onTransition)
	h.mu.Unlock()
	// The listener covers what happens from now on; the state covers what
	// happened since the entry was last seen.
	switch st := s.State(); {
	case st == resilience.Closed || st == resilience.Lost || s.SessionID() != e.SessionID:
		h.lose(fmt.Errorf("%w: session %#x ended before the holding began", h.errLost, e.SessionID), false)
	case st == resilience.Suspended && c.Policy == resilience.LoseOnSuspend:
		h.lose(fmt.Errorf("%w: connection suspended", h.errLost), true)
	case st == resilience.Suspended:
		h.armDeadline()
	}
	return h, nil
}

// armDeadline ends a LoseOnSessionLoss holding at the session's SafeUntil,
// the last moment at which the ensemble provably still holds the session,
// unless the session is back first.
func (h *Hold) armDeadline() {
	until := h.s.SafeUntil()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended || h.deadline != nil {
		return
	}
	h.deadline = time.AfterFunc(time.Until(until), func() {
		if h.s.State() != resilience.Suspended || h.s.SessionID() != h.entry.SessionID {
			return // back (or lost) in the meantime; the listener decides
		}
		h.lose(fmt.Errorf("%w: suspended past %s, when the ensemble may expire session %#x",
			h.errLost, until.Format("15:04:05.000"), h.entry.SessionID), true)
	})
}

func (h *Hold) disarmDeadline() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.deadline != nil {
		h.deadline.Stop()
		h.deadline = nil
	}
}

// onTransition runs on the session's goroutine; it only cancels and
// schedules.
func (h *Hold) onTransition(t resilience.Transition) {
	switch t.To {
	case resilience.Suspended:
		if t.SessionID != h.entry.SessionID {
			return
		}
		if h.policy == resilience.LoseOnSuspend {
			h.lose(fmt.Errorf("%w: connection to ZooKeeper suspended (%s)", h.errLost, t.Cause), true)
		} else {
			h.armDeadline()
		}
	case resilience.Reconnected:
		if t.SessionID != h.entry.SessionID {
			return
		}
		h.disarmDeadline()
		h.mu.Lock()
		clean, ended := h.cleanup, h.ended
		h.cleanup = false
		h.mu.Unlock()
		switch {
		case clean:
			// Same session back, and our node still blocks the next in
			// line: remove it.
			go func() {
				defer h.stopListening()
				for try := 0; try < 5 && h.s.SessionID() == h.entry.SessionID; try++ {
					if queue.Leave(h.s, h.entry) == nil {
						return
					}
					time.Sleep(time.Duration(try+1) * 100 * time.Millisecond)
				}
			}()
		case !ended:
			// Held through the suspension: confirm, never assume, that the
			// node is still there and ours.
			go h.confirm()
		}
	case resilience.Lost:
		if t.OldSessionID == h.entry.SessionID {
			h.disarmDeadline()
			h.lose(fmt.Errorf("%w: session %#x %s", h.errLost, t.OldSessionID, t.Cause), false)
			h.stopListening()
		}
	case resilience.Closed:
		// Closing the session is the holder's own doing, and its close
		// deletes the node: a release, not a loss.
		h.disarmDeadline()
		h.end(fmt.Errorf("%w: session closed", h.errReleased))
		h.stopListening()
	}
}

func (h *Hold) confirm() {
	ok, st, err := h.s.Exists(h.ctx, h.entry.Path)
	switch {
	case err != nil:
		// The context ended (the holding did) or the session went; the
		// listener handles the latter.
	case !ok:
		h.lose(fmt.Errorf("%w: node %s is gone", h.errLost, h.entry.Path), false)
	case st.EphemeralOwner != h.entry.SessionID:
		h.lose(fmt.Errorf("%w: node %s belongs to session %#x", h.errLost, h.entry.Path, st.EphemeralOwner), false)
	}
}

// lose ends the holding as lost, with its node marked for cleanup once
// the same session is back if cleanup.
func (h *Hold) lose(cause error, cleanup bool) { h.finish(cause, true, cleanup) }

// end ends the holding as released by the session's close.
func (h *Hold) end(cause error) { h.finish(cause, false, false) }

func (h *Hold) finish(cause error, lost, cleanup bool) {
	h.mu.Lock()
	if h.ended {
		h.mu.Unlock()
		return
	}
	h.ended, h.cleanup = true, cleanup
	if !lost {
		h.released = true
	}
	h.mu.Unlock()
	h.cancel(cause)
	if h.onEnd != nil {
		h.onEnd(lost, cause)
	}
}

func (h *Hold) stopListening() {
	h.disarmDeadline()
	h.mu.Lock()
	f := h.unlisten
	h.unlisten = nil
	h.mu.Unlock()
	if f != nil {
		f()
	}
}

// Context returns a context cancelled when the holding ends.
func (h *Hold) Context() context.Context { return h.ctx }

// Err returns nil while the holding lasts, then the reason it ended.
func (h *Hold) Err() error {
	if h.ctx.Err() == nil {
		return nil
	}
	return context.Cause(h.ctx)
}

// Entry returns the held queue entry.
func (h *Hold) Entry() queue.Entry { return h.entry }

// Token returns the fencing token: the czxid of the held node; never 0.
// It was known before the holding began, so Token never blocks and returns
// the same value after the holding has ended (lost or released). Every
// later node under the same parent has a larger czxid, so a later holder
// of an exclusive turn always has a larger token.
func (h *Hold) Token() int64 { return h.token }

// Guarded runs ops as one transaction that applies only if the held node
// still exists. A holding already lost, or a missing node, gives an error
// wrapping the Lost sentinel and nothing is written. If the holding is lost while the
// transaction is in flight, Guarded also returns the Lost sentinel, but the
// transaction may have been applied (while the node still existed). If the
// connection breaks with the transaction in flight and nothing shows
// whether it ran, the error wraps resilience.ErrOutcomeUnknown (see
// resilience.Session.Multi); it is never run twice.
func (h *Hold) Guarded(ctx context.Context, ops ...any) ([]zk.MultiResponse, error) {
	if err := h.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", h.errLost, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(h.ctx, cancel)
	defer stop()
	all := append([]any{&zk.CheckVersionRequest{Path: h.entry.Path, Version: -1}}, ops...)
	res, err := h.s.Multi(ctx, all...)
	if err != nil {
		if len(res) > 0 && errors.Is(res[0].Error, zk.ErrNoNode) {
			return nil, fmt.Errorf("%w: node %s is gone", h.errLost, h.entry.Path)
		}
		if herr := h.Err(); herr != nil {
			return nil, fmt.Errorf("%w: %v", h.errLost, herr)
		}
		if len(res) > 1 {
			res = res[1:]
		}
		return res, err
	}
	return res[1:], nil
}

// Release ends the holding and deletes its node. If the holding was
// already lost it returns at once with that cause (wrapping the Lost sentinel); a
// second Release returns the Released sentinel. If the session ends while deleting,
// the node went with it (the Lost sentinel). If ctx ends first, the deletion goes on
// in the background.
func (h *Hold) Release(ctx context.Context) error {
	h.mu.Lock()
	if h.released {
		h.mu.Unlock()
		return h.errReleased
	}
	h.released = true
	lost := h.ended
	h.ended = true
	h.mu.Unlock()
	if lost {
		return context.Cause(h.ctx)
	}
	h.cancel(h.errReleased)
	if h.onEnd != nil {
		h.onEnd(false, h.errReleased)
	}
	h.stopListening()
	gone, unwatch := queue.LostSignal(h.s, h.entry.SessionID)
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
	err := h.s.Delete(dctx, h.entry.Path, -1)
	select {
	case <-gone:
		return fmt.Errorf("%w: session %#x ended during release", h.errLost, h.entry.SessionID)
	default:
	}
	switch {
	case err == nil, errors.Is(err, resilience.ErrOutcomeUnknown):
		// For a delete, an unknown outcome means the node is gone, and
		// nobody else makes a node under this holding's protected name.
		return nil
	case errors.Is(err, zk.ErrNoNode):
		return fmt.Errorf("%w: node %s was already gone", h.errLost, h.entry.Path)
	case errors.Is(err, resilience.ErrSessionLost), errors.Is(err, resilience.ErrClosed):
		return fmt.Errorf("%w: %v", h.errLost, err)
	case ctx.Err() != nil:
		go func() { _ = queue.Leave(h.s, h.entry) }()
	}
	return err
}
