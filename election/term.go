package election

import (
	"context"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkrecipes/zkrecipes/internal/hold"
	"github.com/zkrecipes/zkrecipes/internal/queue"
)

// Term is one stretch of leadership. Its Context is cancelled when the term
// ends: by Resign (cause ErrResigned) or by loss (cause wrapping
// ErrTermLost). A Term needs no goroutine of its own while it lasts.
type Term struct {
	e     *Election
	h     *hold.Hold
	start time.Time
}

func (e *Election) newTerm(ctx context.Context, entry queue.Entry, czxid int64) (*Term, error) {
	t := &Term{e: e, start: time.Now()}
	ctx, end := e.tel.termStarted(ctx, e.path, e.id, entry.Name, czxid)
	h, err := hold.New(e.s, entry, hold.Config{
		Policy: e.opts.policy, Token: czxid, Lost: ErrTermLost, Released: ErrResigned, Parent: ctx,
		OnEnd: func(lost bool, cause error) { end(lost, cause, time.Since(t.start)) },
	})
	if err != nil {
		end(true, err, 0)
		_ = queue.Leave(e.s, entry)
		return nil, err
	}
	t.h = h
	return t, nil
}

// Context returns a context cancelled when the term ends; context.Cause
// says why.
func (t *Term) Context() context.Context { return t.h.Context() }

// Done is Context().Done().
func (t *Term) Done() <-chan struct{} { return t.h.Context().Done() }

// Err returns nil while the term lasts, then the reason it ended.
func (t *Term) Err() error { return t.h.Err() }

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
// on still leading. A lost term gives an error wrapping ErrTermLost.
func (t *Term) Guarded(ctx context.Context, ops ...any) ([]zk.MultiResponse, error) {
	return t.h.Guarded(ctx, ops...)
}

// Resign ends the term and deletes the candidate node, handing leadership to
// the next in line. After a loss it returns at once with the loss (wrapping
// ErrTermLost); a second Resign returns ErrResigned.
func (t *Term) Resign(ctx context.Context) error { return t.h.Release(ctx) }
