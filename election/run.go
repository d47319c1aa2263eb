package election

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/zkrecipes/zkrecipes/resilience"
)

// Run's pause: the least time from a term's start to the next campaign.
// It starts at runBackoffMin, doubles (up to runBackoffMax) after a term
// shorter than itself, and is runBackoffMin again after a term at least as
// long.
const (
	runBackoffMin = 100 * time.Millisecond
	runBackoffMax = 5 * time.Second
)

// Run is the service loop of a participant: it campaigns, calls fn while
// this participant leads, gives the term up when fn returns, and campaigns
// again, until ctx ends, the session closes, or fn fails.
//
// fn gets the term (its fencing token, Guarded) and a context that ends
// when the term ends or ctx does, whichever is first; context.Cause says
// which. The context carries ctx's values and the term's trace span.
//
// What Run does when fn returns:
//
//   - fn returned nil, or returned (with any error) after its context
//     ended because the term was lost: Run resigns the term if it still
//     lasts and campaigns again, but never sooner than a pause after the
//     term began. The pause is 100 ms at first; after a term shorter than
//     the pause it doubles, up to 5 s; after a term at least as long it is
//     100 ms again. So a function that returns at once, or a term lost as
//     soon as won, does not spin (100 ms, 200 ms, 400 ms, ... apart), while
//     a function that works for a while is called again at once.
//   - fn returned a non-nil error while its term still lasted: Run resigns
//     and returns that error, wrapped with the election's path and the
//     participant id (errors.Is and errors.As see fn's error).
//   - fn panicked: Run recovers, resigns, logs the stack at Error level
//     on the session's logger, and returns an error wrapping
//     ErrLeaderPanicked.
//   - ctx ended (while fn ran, or at any other moment): Run resigns if it
//     leads, and returns ctx.Err().
//   - the session was closed: the term ends as resigned and Run returns an
//     error wrapping ErrClosed.
//
// Resigning is bounded by the session timeout. A campaign that fails for
// another reason than ctx or the session's close (Campaign waits out
// connection and session loss itself, so such a failure is not transient:
// a denied ACL, say) ends Run with that error. On an observer (no WithID),
// Run fails at once with ErrInvalidArgument.
func (e *Election) Run(ctx context.Context, fn func(ctx context.Context, t *Term) error) error {
	if err := e.needID("Run"); err != nil {
		return err
	}
	pause := runBackoffMin
	for {
		term, err := e.Campaign(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		lead, cancel := context.WithCancelCause(term.Context())
		stop := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
		stack, ferr := call(lead, term, fn)
		ended := lead.Err() != nil
		stop()
		cancel(nil)
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), e.s.Timeout())
		_ = term.Resign(rctx)
		rcancel()
		lasted := time.Since(term.start)
		switch {
		case stack != nil:
			e.s.Logger().Error("election: leader function panicked; resigned", "path", e.path, "id", e.opts.id,
				"token", term.Token(), "error", ferr, "stack", string(stack))
			return fmt.Errorf("%s, term %d: %w", e.describe(), term.Token(), ferr)
		case ctx.Err() != nil:
			return ctx.Err()
		case e.s.State() == resilience.Closed:
			return e.closedErr()
		case ferr != nil && !ended:
			return fmt.Errorf("%s, term %d: leader function: %w", e.describe(), term.Token(), ferr)
		}
		wait := time.Until(term.start.Add(pause))
		if lasted < pause {
			pause = min(2*pause, runBackoffMax)
		} else {
			pause = runBackoffMin
		}
		e.s.Logger().Debug("election: term over; campaigning again", "path", e.path, "id", e.opts.id,
			"token", term.Token(), "term_duration", lasted, "wait", max(wait, 0), "cause", term.Err(), "error", ferr)
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
	}
}

// call runs fn, turning a panic into an error wrapping ErrLeaderPanicked
// and the panicking goroutine's stack (nil when fn returned).
func call(ctx context.Context, t *Term, fn func(context.Context, *Term) error) (stack []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			stack, err = debug.Stack(), fmt.Errorf("%w: %v", ErrLeaderPanicked, r)
		}
	}()
	return nil, fn(ctx, t)
}
