// Package otelx holds the telemetry conventions every zkrecipes package
// follows, so that spans and metrics read the same whichever recipe made
// them:
//
//   - Each public package has its own instrumentation scope (its import
//     path, exported as ScopeName) and takes its providers from options,
//     falling back to the session's (which default to the global ones).
//   - Attribute names carry no units; durations are float64 histograms in
//     seconds (unit "s") named "<thing>.duration".
//   - An operation's result is the attribute zkrecipes.outcome, one of
//     the Outcome* values below; a failure also sets the semantic
//     conventions' error.type to a low-cardinality class (never the
//     error text) and the span status to Error.
//   - How a holding (lease, term, registration) ended is zkrecipes.end,
//     "released" or "lost", on both its span and its metrics.
package otelx

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/zkrecipes/zkrecipes/resilience"
)

// Version is the instrumentation version of every zkrecipes scope.
const Version = resilience.Version

// Attribute keys shared by every package.
const (
	KeyOutcome   = attribute.Key("zkrecipes.outcome")
	KeyErrorType = attribute.Key("error.type")
	KeyEnd       = attribute.Key("zkrecipes.end")
	KeyPath      = attribute.Key("zkrecipes.path")
)

// The values of zkrecipes.outcome.
const (
	OutcomeOK       = "ok"       // done
	OutcomeCanceled = "canceled" // the caller's context ended first
	OutcomeRefused  = "refused"  // an expected refusal: a TryLock that found the lock held
	OutcomeError    = "error"    // failed; error.type says how
)

// The values of zkrecipes.end.
const (
	EndReleased = "released"
	EndLost     = "lost"
)

// Instrumentation returns the tracer and meter of scope: from tp and mp
// when given, otherwise from the session's providers.
func Instrumentation(s *resilience.Session, tp trace.TracerProvider, mp metric.MeterProvider, scope string) (trace.Tracer, metric.Meter) {
	if tp == nil {
		tp = s.TracerProvider()
	}
	if mp == nil {
		mp = s.MeterProvider()
	}
	return tp.Tracer(scope, trace.WithInstrumentationVersion(Version)), mp.Meter(scope, metric.WithInstrumentationVersion(Version))
}

// Class names one kind of failure for error.type: errors wrapping Err are
// classified as Type.
type Class struct {
	Err  error
	Type string
}

// Classes every package shares, tried after the package's own.
var common = []Class{
	{context.Canceled, "canceled"},
	{context.DeadlineExceeded, "timeout"},
	{resilience.ErrSessionLost, "session_lost"},
	{resilience.ErrClosed, "closed"},
	{resilience.ErrOutcomeUnknown, "outcome_unknown"},
	{resilience.ErrInvalidPath, "invalid_path"},
}

// ErrorType returns the error.type of err: the Type of the first class in
// own, then in the shared list, that err wraps; "_OTHER" if none does; ""
// for nil.
func ErrorType(err error, own ...Class) string {
	if err == nil {
		return ""
	}
	for _, c := range own {
		if errors.Is(err, c.Err) {
			return c.Type
		}
	}
	for _, c := range common {
		if errors.Is(err, c.Err) {
			return c.Type
		}
	}
	return "_OTHER"
}

// Outcome returns the zkrecipes.outcome of err: ok for nil, canceled for
// a context error, refused if err wraps one of refusals, error otherwise.
func Outcome(err error, refusals ...error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return OutcomeCanceled
	}
	for _, r := range refusals {
		if errors.Is(err, r) {
			return OutcomeRefused
		}
	}
	return OutcomeError
}

// Result returns the attributes that describe err: zkrecipes.outcome, and
// error.type when err is a failure (not a cancellation or refusal).
func Result(err error, own []Class, refusals ...error) []attribute.KeyValue {
	out := Outcome(err, refusals...)
	attrs := []attribute.KeyValue{KeyOutcome.String(out)}
	if out == OutcomeError {
		attrs = append(attrs, KeyErrorType.String(ErrorType(err, own...)))
	}
	return attrs
}

// Finish records err's result on span (attributes, and for a failure the
// error event and an Error status) and returns the same attributes, for the
// metrics that go with the span.
func Finish(span trace.Span, err error, own []Class, refusals ...error) []attribute.KeyValue {
	attrs := Result(err, own, refusals...)
	span.SetAttributes(attrs...)
	if Outcome(err, refusals...) == OutcomeError {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return attrs
}

// Traced runs fn in a span named name, from the tracer of scope in the
// session's tracer provider, with the path attribute and attrs, and
// finishes the span with fn's result. The span is a child of the one in
// ctx.
func Traced(ctx context.Context, s *resilience.Session, scope, name, p string, fn func(context.Context) error, attrs ...attribute.KeyValue) error {
	tracer, _ := Instrumentation(s, nil, nil, scope)
	ctx, span := tracer.Start(ctx, name, trace.WithAttributes(append([]attribute.KeyValue{KeyPath.String(p)}, attrs...)...))
	defer span.End()
	err := fn(ctx)
	Finish(span, err, nil)
	return err
}
