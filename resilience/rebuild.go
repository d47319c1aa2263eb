package resilience

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"
	"go.opentelemetry.io/otel/trace"
)

// RebuildFunc re-creates, on a new session, the ephemeral nodes and watches
// a recipe owns. ctx ends when that session is lost or the Session closes.
type RebuildFunc func(ctx context.Context) error

type rebuildStep struct {
	name string
	fn   RebuildFunc
}

// OnNewSession registers a rebuild step, run after every new session that
// follows Lost (not after the first session, nor after Reconnected, where
// nothing was lost). Steps run concurrently, at most WithConcurrency
// at a time; all failures of a round are collected, reported together (log,
// span, the WithRebuildReport hook) and the failed steps are retried with
// backoff until they succeed or the session is lost again. The returned
// function unregisters the step.
func (s *Session) OnNewSession(name string, fn RebuildFunc) (unregister func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	id := s.nextID
	s.steps[id] = &rebuildStep{name: name, fn: fn}
	return func() {
		s.mu.Lock()
		delete(s.steps, id)
		s.mu.Unlock()
	}
}

// RebuildReport describes one round of rebuild steps after a new session.
type RebuildReport struct {
	SessionID int64
	Round     int           // 1 for the first run, then one more per retry
	Steps     int           // steps run in this round
	Err       error         // nil, or a *multierror.Error with every failure
	Duration  time.Duration // wall time of the round
}

// WithRebuildReport sets a function called after every rebuild round, on
// the rebuild's goroutine. nil is rejected.
func WithRebuildReport(fn func(RebuildReport)) Option {
	return func(c *config) {
		if fn == nil {
			c.reject("nil rebuild report function")
		}
		c.rebuildReport = fn
	}
}

// startRebuild cancels a rebuild still running for an earlier session and
// runs every registered step for session sid.
func (s *Session) startRebuild(sid int64) {
	if s.rebuildCancel != nil {
		s.rebuildCancel(fmt.Errorf("%w: a new session replaced it before the rebuild finished", ErrSessionLost))
	}
	// The cancel's cause says why the rebuild was cut short, as it
	// happened: looking at the session afterwards would see a Close that
	// came later.
	ctx, cancel := context.WithCancelCause(context.Background())
	s.rebuildCancel = cancel
	// Bind the steps' context to this session: it ends when the session does.
	remove := s.AddListener(func(t Transition) {
		switch {
		case t.To == Closed:
			cancel(fmt.Errorf("%w: closed before the rebuild finished", ErrClosed))
		case t.To == Lost || (t.To == Connected && t.SessionID != sid):
			cancel(fmt.Errorf("%w: session %s ended before the rebuild finished", ErrSessionLost, sessionHex(sid)))
		}
	})
	if !s.goTracked(func() {
		defer remove()
		defer cancel(nil)
		s.rebuild(ctx, sid)
	}) {
		remove()
		cancel(nil)
	}
}

func (s *Session) rebuild(ctx context.Context, sid int64) {
	s.mu.Lock()
	pending := make(map[uint64]*rebuildStep, len(s.steps))
	for id, st := range s.steps {
		pending[id] = st
	}
	s.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	ctx, span := s.tel.tracer.Start(ctx, spanRebuild, trace.WithAttributes(
		keySessionID.String(sessionHex(sid)),
		keyRebuildSteps.Int(len(pending)),
	))
	defer span.End()
	// ended is the span's error when the session ends before the steps do.
	ended := func() error {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			return cause
		}
		select {
		case <-s.closing:
			return fmt.Errorf("%w: closed before the rebuild finished", ErrClosed)
		default:
			return fmt.Errorf("%w: session %s ended before the rebuild finished", ErrSessionLost, sessionHex(sid))
		}
	}
	b := s.newBackoff()
	for round := 1; ; round++ {
		start := time.Now()
		failed, errs := s.rebuildRound(ctx, pending)
		rep := RebuildReport{SessionID: sid, Round: round, Steps: len(pending), Duration: time.Since(start)}
		if len(errs) > 0 {
			rep.Err = multierror.Append(nil, errs...)
		}
		s.tel.rebuilt(ctx, rep, errs)
		// The span and log come before the report, so that whoever acts on
		// the report finds them complete.
		span.SetAttributes(keyRebuildRounds.Int(round))
		if rep.Err == nil {
			finish(span, nil)
			span.End()
			s.log.Info("zookeeper: rebuilt on new session", "session.id", sessionHex(sid), "steps", rep.Steps, "round", round, "duration", rep.Duration)
			s.report(rep)
			return
		}
		span.RecordError(rep.Err)
		s.log.Warn("zookeeper: rebuild steps failed; retrying", "session.id", sessionHex(sid), "failed", len(failed), "round", round, "error", rep.Err)
		if ctx.Err() != nil {
			finish(span, ended())
			span.End()
			s.report(rep)
			return
		}
		s.report(rep)
		if b.wait(ctx, s.closing) != nil {
			finish(span, ended())
			return
		}
		// Retry only the failed steps that are still registered.
		s.mu.Lock()
		pending = make(map[uint64]*rebuildStep, len(failed))
		for _, id := range failed {
			if st, ok := s.steps[id]; ok {
				pending[id] = st
			}
		}
		s.mu.Unlock()
		if len(pending) == 0 {
			finish(span, nil) // what failed was unregistered
			return
		}
	}
}

// rebuildRound runs steps, at most WithConcurrency at a time, and returns
// the ids of the failed ones and their errors (each a *StepError).
func (s *Session) rebuildRound(ctx context.Context, steps map[uint64]*rebuildStep) ([]uint64, []error) {
	var (
		mu     sync.Mutex
		errs   []error
		failed []uint64
		wg     sync.WaitGroup
		sem    = make(chan struct{}, s.cfg.concurrency)
	)
	for id, st := range steps {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			sctx, span := s.tel.tracer.Start(ctx, spanRebuildStep,
				trace.WithAttributes(keyStepName.String(st.name)))
			err := st.fn(sctx)
			finish(span, err)
			if err != nil {
				mu.Lock()
				errs = append(errs, &StepError{Step: st.name, Err: err})
				failed = append(failed, id)
				mu.Unlock()
			}
			span.End()
		}()
	}
	wg.Wait()
	return failed, errs
}

// StepError is one rebuild step's failure inside a RebuildReport's Err.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return "rebuild step " + e.Step + ": " + e.Err.Error() }

// Unwrap returns the step's error.
func (e *StepError) Unwrap() error { return e.Err }

// report hands a round's report to the WithRebuildReport hook, if any.
func (s *Session) report(rep RebuildReport) {
	if s.cfg.rebuildReport != nil {
		s.cfg.rebuildReport(rep)
	}
}
