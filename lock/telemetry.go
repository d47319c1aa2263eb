package lock

import (
	"context"
	"time"

	"github.com/go-zookeeper/zk"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/zkrecipes/zkrecipes/internal/otelx"
	"github.com/zkrecipes/zkrecipes/resilience"
)

const (
	// ScopeName is the OpenTelemetry instrumentation scope of this package.
	ScopeName = "github.com/zkrecipes/zkrecipes/lock"
	// Version is the version of this package's instrumentation.
	Version = resilience.Version
)

// Telemetry names and attribute keys of this package (the shared ones,
// zkrecipes.path, zkrecipes.outcome, error.type and zkrecipes.end, are
// described in the README).
const (
	spanAcquire     = "zkrecipes.lock.acquire"
	metricWait      = "zkrecipes.lock.wait.duration"
	metricAcquired  = "zkrecipes.lock.acquisitions"
	metricHeld      = "zkrecipes.lock.held"
	metricHoldTime  = "zkrecipes.lock.hold.duration"
	keyKind         = attribute.Key("zkrecipes.lock.kind")
	keyNode         = attribute.Key("zkrecipes.lock.node")
	keyToken        = attribute.Key("zkrecipes.lock.token")
	errorTypeLost   = "lease_lost"
	errorTypeNoAuth = "no_auth"
)

// errorClasses are this package's error.type values, tried before the
// shared ones.
var errorClasses = []otelx.Class{
	{Err: ErrLeaseLost, Type: errorTypeLost},
	{Err: zk.ErrNoAuth, Type: errorTypeNoAuth},
}

type telemetry struct {
	tracer       trace.Tracer
	wait         metric.Float64Histogram
	acquisitions metric.Int64Counter
	held         metric.Int64UpDownCounter
	holdTime     metric.Float64Histogram
}

func newTelemetry(s *resilience.Session, o *options) (*telemetry, error) {
	tracer, m := otelx.Instrumentation(s, o.tp, o.mp, ScopeName)
	t := &telemetry{tracer: tracer}
	var err error
	if t.wait, err = m.Float64Histogram(metricWait,
		metric.WithDescription("Time from asking for a lock to getting it or giving up, by kind and outcome."),
		metric.WithUnit("s")); err != nil {
		return nil, err
	}
	if t.acquisitions, err = m.Int64Counter(metricAcquired,
		metric.WithDescription("Leases acquired, by kind."),
		metric.WithUnit("{lease}")); err != nil {
		return nil, err
	}
	if t.held, err = m.Int64UpDownCounter(metricHeld,
		metric.WithDescription("Leases currently held, by kind."),
		metric.WithUnit("{lease}")); err != nil {
		return nil, err
	}
	if t.holdTime, err = m.Float64Histogram(metricHoldTime,
		metric.WithDescription("How long leases were held, by kind and how they ended (zkrecipes.end: released or lost)."),
		metric.WithUnit("s")); err != nil {
		return nil, err
	}
	return t, nil
}

// start begins an acquisition's span, a child of the caller's.
func (t *telemetry) start(ctx context.Context, kind, p string) (context.Context, trace.Span, time.Time) {
	ctx, span := t.tracer.Start(ctx, spanAcquire, trace.WithAttributes(keyKind.String(kind), otelx.KeyPath.String(p)))
	return ctx, span, time.Now()
}

// finish ends an acquisition's span and records its wait; a refused
// TryLock is outcome "refused", not an error.
func (t *telemetry) finish(ctx context.Context, span trace.Span, start time.Time, kind string, l *Lease, err error) {
	defer span.End()
	attrs := append([]attribute.KeyValue{keyKind.String(kind)}, otelx.Finish(span, err, errorClasses, ErrLocked)...)
	t.wait.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(attrs...))
	if l != nil {
		span.SetAttributes(keyNode.String(l.h.Entry().Name), keyToken.Int64(l.Token()))
		t.acquisitions.Add(ctx, 1, metric.WithAttributes(keyKind.String(kind)))
	}
}

// began counts a lease as held.
func (t *telemetry) began(kind string) {
	t.held.Add(context.Background(), 1, metric.WithAttributes(keyKind.String(kind)))
}

// ended counts a lease as no longer held and records how long it was.
func (t *telemetry) ended(kind string, since time.Time, lost bool) {
	end := otelx.EndReleased
	if lost {
		end = otelx.EndLost
	}
	ctx := context.Background()
	t.held.Add(ctx, -1, metric.WithAttributes(keyKind.String(kind)))
	t.holdTime.Record(ctx, time.Since(since).Seconds(), metric.WithAttributes(keyKind.String(kind), otelx.KeyEnd.String(end)))
}
