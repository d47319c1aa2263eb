package lock

import (
	"context"
	"errors"
	"time"

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

type telemetry struct {
	tracer       trace.Tracer
	wait         metric.Float64Histogram
	acquisitions metric.Int64Counter
	held         metric.Int64UpDownCounter
	losses       metric.Int64Counter
}

func newTelemetry(s *resilience.Session, o *options) (*telemetry, error) {
	tracer, m := otelx.Instrumentation(s, o.tp, o.mp, ScopeName)
	t := &telemetry{tracer: tracer}
	var err error
	if t.wait, err = m.Float64Histogram("zkrecipes.lock.wait.duration",
		metric.WithDescription("Time from asking for a lock to getting it or giving up, by kind and outcome."),
		metric.WithUnit("s")); err != nil {
		return nil, err
	}
	if t.acquisitions, err = m.Int64Counter("zkrecipes.lock.acquisitions",
		metric.WithDescription("Lock acquisition attempts, by kind and outcome."),
		metric.WithUnit("{attempt}")); err != nil {
		return nil, err
	}
	if t.held, err = m.Int64UpDownCounter("zkrecipes.lock.held",
		metric.WithDescription("Leases currently held, by kind."),
		metric.WithUnit("{lease}")); err != nil {
		return nil, err
	}
	if t.losses, err = m.Int64Counter("zkrecipes.lock.losses",
		metric.WithDescription("Leases lost without Release, by kind."),
		metric.WithUnit("{lease}")); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *telemetry) kindAttr(kind string) metric.MeasurementOption {
	return metric.WithAttributes(attribute.String("zkrecipes.lock.kind", kind))
}

func outcome(err error) string {
	switch {
	case err == nil:
		return "acquired"
	case errors.Is(err, ErrLocked):
		return "locked"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	default:
		return "error"
	}
}

// acquireSpan wraps one acquisition in a span and records its wait.
func (t *telemetry) acquireSpan(ctx context.Context, kind, path string, fn func(context.Context) (*Lease, error)) (*Lease, error) {
	start := time.Now()
	ctx, span := t.tracer.Start(ctx, "zkrecipes.lock.acquire", trace.WithAttributes(
		attribute.String("zkrecipes.lock.kind", kind),
		attribute.String("zkrecipes.lock.path", path),
	))
	defer span.End()
	l, err := fn(ctx)
	wait := time.Since(start)
	out := outcome(err)
	attrs := metric.WithAttributes(attribute.String("zkrecipes.lock.kind", kind), attribute.String("zkrecipes.outcome", out))
	t.wait.Record(ctx, wait.Seconds(), attrs)
	t.acquisitions.Add(ctx, 1, attrs)
	span.SetAttributes(attribute.String("zkrecipes.outcome", out), attribute.Int64("zkrecipes.lock.wait_ms", wait.Milliseconds()))
	if err != nil && out == "error" {
		span.RecordError(err)
	}
	if l != nil {
		span.SetAttributes(attribute.String("zkrecipes.lock.node", l.h.Entry().Name))
	}
	return l, err
}

func (t *telemetry) lost(kind string, _ error) {
	t.losses.Add(context.Background(), 1, t.kindAttr(kind))
}
