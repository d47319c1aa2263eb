package election

import (
	"context"
	"fmt"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/hold"
	"github.com/zkrecipes/zkrecipes/internal/queue"
)

// Term is one stretch of leadership. Its Context is cancelled when the term
// ends: resigned (cause wrapping ErrResigned: Resign, Run giving it up, or
// the session closed) or lost (cause wrapping ErrTermLost). A Term needs no
// goroutine of its own while it lasts.
type Term struct {
	e     *Election
	h     *hold.Hold
	start time.Time
}

// newTerm starts the term of entry; caller is the context Campaign was
// called with, whose values and span the term's context keeps.
func (e *Election) newTerm(caller context.Context, entry queue.Entry, czxid int64) (*Term, error) {
	t := &Term{e: e, start: time.Now()}
	ctx, end := e.tel.termStarted(caller, e.path, e.opts.id, entry.Name, czxid)
	h, err := hold.New(e.s, entry, hold.Config{
		Policy: e.opts.policy, Token: czxid, Lost: ErrTermLost, Released: ErrResigned, Parent: ctx,
		OnEnd: func(lost bool, cause error) { end(lost, cause, time.Since(t.start)) },
	})
	if err != nil {
		end(true, err, 0)
		_ = queue.Leave(e.s, entry)
		return nil, fmt.Errorf("%s: %w", e.describe(), err)
	}
	t.h = h
	e.setTerm(t)
	return t, nil
}

// Context returns a context cancelled when the term ends; context.Cause
// says why. It carries the values and the trace span (the term's span,
// zkrecipes.election.term) of the context the campaign was called with, so
// spans started from it nest under the term.
func (t *Term) Context() context.Context { return t.h.Context() }

// Done is Context().Done().
func (t *Term) Done() <-chan struct{} { return t.h.Context().Done() }

// Err returns nil while the term lasts, then why it ended: an error
// wrapping ErrResigned or ErrTermLost, naming the election and participant.
func (t *Term) Err() error { return t.wrap(t.h.Err()) }

// wrap names the election and participant in an error of the term.
func (t *Term) wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s, term %d: %w", t.e.describe(), t.h.Token(), err)
}

// Token returns the fencing token: the czxid of the candidate node; never
// 0. It is read when leadership is confirmed, before the term begins, so
// Token never blocks and returns the same value after the term has ended.
// Every later leader of the same election has a larger token, so a store
// that refuses tokens lower than the highest it has seen (see package
// fence) refuses the writes of a leader that has been superseded, even one
// whose process was paused through its own step-down.
func (t *Term) Token() int64 { return t.h.Token() }

// Path returns the candidate node of this term.
func (t *Term) Path() string { return t.h.Entry().Path }

// Guarded runs ops as one transaction that applies only while the
// candidate node exists, so writes to ZooKeeper-held state are conditional
// on still leading. A lost term gives an error wrapping ErrTermLost, and
// nothing is written. If the term is lost while the transaction is in
// flight, the error wraps ErrTermLost too, but the transaction may have
// been applied (while the node still existed). A connection broken with the
// transaction in flight, with nothing to show whether it ran, gives an
// error wrapping resilience.ErrOutcomeUnknown; it is never run twice.
func (t *Term) Guarded(ctx context.Context, ops ...any) ([]zk.MultiResponse, error) {
	res, err := t.h.Guarded(ctx, ops...)
	return res, t.wrap(err)
}

// Resign ends the term and deletes the candidate node, handing leadership to
// the next in line. After a loss it returns at once with the loss (wrapping
// ErrTermLost); a second Resign returns an error wrapping ErrResigned. If
// ctx ends before the node is deleted, the deletion goes on in the
// background.
func (t *Term) Resign(ctx context.Context) error { return t.wrap(t.h.Release(ctx)) }
