package resilience

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

const (
	// ScopeName is the OpenTelemetry instrumentation scope of this package.
	ScopeName = "github.com/zkrecipes/zkrecipes/resilience"
	// Version is the version of this package's instrumentation.
	Version = "0.1.0"
)

// Span, metric and attribute names. The keys shared with the recipe
// packages (zkrecipes.outcome and its values, error.type and its classes)
// are the ones internal/otelx defines; resilience cannot import it (otelx
// builds on resilience), so they are spelled out here.
const (
	spanSuspension  = "zkrecipes.session.suspension"
	spanRebuild     = "zkrecipes.session.rebuild"
	spanRebuildStep = "zkrecipes.session.rebuild.step"
	eventLost       = "zkrecipes.session.lost"

	keyOutcome       = attribute.Key("zkrecipes.outcome")
	keyErrorType     = attribute.Key("error.type")
	keyCause         = attribute.Key("zkrecipes.cause")
	keyStateFrom     = attribute.Key("zkrecipes.state.from")
	keyStateTo       = attribute.Key("zkrecipes.state.to")
	keySessionID     = attribute.Key("zkrecipes.session.id")
	keyTimeout       = attribute.Key("zkrecipes.session.timeout")
	keyRebuildSteps  = attribute.Key("zkrecipes.session.rebuild.steps")
	keyRebuildRounds = attribute.Key("zkrecipes.session.rebuild.rounds")
	keyStepName      = attribute.Key("zkrecipes.session.rebuild.step.name")

	outcomeOK       = "ok"
	outcomeCanceled = "canceled"
	outcomeError    = "error"
)

type telemetry struct {
	tracer      trace.Tracer
	transitions metric.Int64Counter
	suspension  metric.Float64Histogram
	rebuildDur  metric.Float64Histogram
	rebuildFail metric.Int64Counter

	// Owned by the machine goroutine: the outage in progress.
	suspSpan trace.Span
	suspFrom time.Time
	suspLost bool // the session was lost during it
}

func newTelemetry(tp trace.TracerProvider, mp metric.MeterProvider) (*telemetry, error) {
	t := &telemetry{tracer: tp.Tracer(ScopeName, trace.WithInstrumentationVersion(Version))}
	m := mp.Meter(ScopeName, metric.WithInstrumentationVersion(Version))
	var err error
	if t.transitions, err = m.Int64Counter("zkrecipes.session.transitions",
		metric.WithDescription("Session state transitions, by from, to and cause."),
		metric.WithUnit("{transition}")); err != nil {
		return nil, err
	}
	if t.suspension, err = m.Float64Histogram("zkrecipes.session.suspension.duration",
		metric.WithDescription("Outages: from the first loss of contact until the session was usable again (Reconnected, or Connected on a new session after Lost), by outcome."),
		metric.WithUnit("s")); err != nil {
		return nil, err
	}
	if t.rebuildDur, err = m.Float64Histogram("zkrecipes.session.rebuild.duration",
		metric.WithDescription("Wall time of one round of rebuild steps after a new session, by outcome."),
		metric.WithUnit("s")); err != nil {
		return nil, err
	}
	if t.rebuildFail, err = m.Int64Counter("zkrecipes.session.rebuild.failures",
		metric.WithDescription("Rebuild steps that failed (and were retried), by error.type."),
		metric.WithUnit("{step}")); err != nil {
		return nil, err
	}
	return t, nil
}

func serverAttrs(server string) []attribute.KeyValue {
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		return nil
	}
	attrs := []attribute.KeyValue{attribute.String("server.address", host)}
	if p, err := strconv.Atoi(port); err == nil {
		attrs = append(attrs, attribute.Int("server.port", p))
	}
	return attrs
}

// errorClasses are the error.type values, as internal/otelx classifies
// them for every package.
var errorClasses = []struct {
	err  error
	name string
}{
	{context.Canceled, "canceled"},
	{context.DeadlineExceeded, "timeout"},
	{ErrSessionLost, "session_lost"},
	{ErrClosed, "closed"},
	{ErrOutcomeUnknown, "outcome_unknown"},
	{ErrInvalidPath, "invalid_path"},
}

// errorType returns err's error.type: a low-cardinality class, never the
// error text.
func errorType(err error) string {
	for _, c := range errorClasses {
		if errors.Is(err, c.err) {
			return c.name
		}
	}
	return "_OTHER"
}

// observe records a transition: the counter, and the outage. An outage
// opens a suspension span at the first Suspended and ends it when the
// session is usable again: at Reconnected (outcome ok), or at Connected on
// a new session after Lost (outcome error, error.type session_lost; the
// loss is an event on the span), or at Closed (canceled, or error if the
// session was lost first). The span and the histogram both measure that
// whole outage.
func (t *telemetry) observe(tr Transition) {
	ctx := context.Background()
	t.transitions.Add(ctx, 1, metric.WithAttributes(
		keyStateFrom.String(strings.ToLower(tr.From.String())),
		keyStateTo.String(strings.ToLower(tr.To.String())),
		keyCause.String(tr.Cause.String()),
	))
	switch {
	case tr.To == Suspended && t.suspSpan == nil:
		attrs := append(serverAttrs(tr.Server),
			keySessionID.String(sessionHex(tr.SessionID)),
			keyTimeout.Float64(tr.Timeout.Seconds()),
			keyCause.String(tr.Cause.String()),
		)
		_, t.suspSpan = t.tracer.Start(ctx, spanSuspension,
			trace.WithTimestamp(tr.Time), trace.WithAttributes(attrs...))
		t.suspFrom, t.suspLost = tr.Time, false
	case t.suspSpan == nil:
	case tr.To == Lost:
		t.suspLost = true
		t.suspSpan.AddEvent(eventLost, trace.WithTimestamp(tr.Time),
			trace.WithAttributes(keyCause.String(tr.Cause.String())))
	case tr.To == Reconnected, tr.To == Connected, tr.To == Closed:
		res := []attribute.KeyValue{keyOutcome.String(outcomeOK)}
		switch {
		case t.suspLost:
			res = []attribute.KeyValue{keyOutcome.String(outcomeError), keyErrorType.String("session_lost")}
			t.suspSpan.SetStatus(codes.Error, "session lost")
		case tr.To == Closed:
			res = []attribute.KeyValue{keyOutcome.String(outcomeCanceled)}
		}
		t.suspSpan.SetAttributes(res...)
		t.suspSpan.End(trace.WithTimestamp(tr.Time))
		t.suspSpan = nil
		t.suspension.Record(ctx, tr.Time.Sub(t.suspFrom).Seconds(), metric.WithAttributes(res...))
	}
}

// canceled reports whether err means the work was called off rather than
// failed: its context ended (as internal/otelx counts it), or the Session
// was closed.
func canceled(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrClosed)
}

// result returns the outcome attributes of err: zkrecipes.outcome, and
// error.type for a failure. A rebuild cut short by Close is canceled; one
// cut short by the session's loss failed (session_lost).
func result(err error) []attribute.KeyValue {
	switch {
	case err == nil:
		return []attribute.KeyValue{keyOutcome.String(outcomeOK)}
	case canceled(err):
		return []attribute.KeyValue{keyOutcome.String(outcomeCanceled)}
	}
	return []attribute.KeyValue{keyOutcome.String(outcomeError), keyErrorType.String(errorType(err))}
}

// finish records err on span: its result attributes, and for a failure the
// error and an Error status.
func finish(span trace.Span, err error) []attribute.KeyValue {
	attrs := result(err)
	span.SetAttributes(attrs...)
	if err != nil && !canceled(err) {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return attrs
}

// rebuilt records one rebuild round: its duration by outcome, and each
// failed step by error.type.
func (t *telemetry) rebuilt(ctx context.Context, r RebuildReport, failures []error) {
	for _, err := range failures {
		t.rebuildFail.Add(ctx, 1, metric.WithAttributes(keyErrorType.String(errorType(err))))
	}
	t.rebuildDur.Record(ctx, r.Duration.Seconds(), metric.WithAttributes(result(r.Err)...))
}
