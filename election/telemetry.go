package election

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/zkrecipes/zkrecipes/internal/otelx"
	"github.com/zkrecipes/zkrecipes/resilience"
)

const (
	// ScopeName is the OpenTelemetry instrumentation scope of this package.
	ScopeName = "github.com/zkrecipes/zkrecipes/election"
	// Version is the version of this package's instrumentation.
	Version = resilience.Version
)

type telemetry struct {
	tracer   trace.Tracer
	campaign metric.Float64Histogram
	terms    metric.Int64Counter
	termLen  metric.Float64Histogram
}

func newTelemetry(s *resilience.Session, o *options) (*telemetry, error) {
	tracer, m := otelx.Instrumentation(s, o.tp, o.mp, ScopeName)
	t := &telemetry{tracer: tracer}
	var err error
	if t.campaign, err = m.Float64Histogram("zkrecipes.election.campaign.duration",
		metric.WithDescription("Time from starting a campaign to leading or giving up, by outcome."),
		metric.WithUnit("s")); err != nil {
		return nil, err
	}
	if t.terms, err = m.Int64Counter("zkrecipes.election.leadership.changes",
		metric.WithDescription("Terms begun and ended by this process, by event (elected, resigned, lost)."),
		metric.WithUnit("{change}")); err != nil {
		return nil, err
	}
	if t.termLen, err = m.Float64Histogram("zkrecipes.election.term.duration",
		metric.WithDescription("Length of leadership terms, by how they ended."),
		metric.WithUnit("s")); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *telemetry) campaignSpan(ctx context.Context, path, id string, fn func(context.Context) (*Term, error)) (*Term, error) {
	start := time.Now()
	ctx, span := t.tracer.Start(ctx, "zkrecipes.election.campaign", trace.WithAttributes(
		attribute.String("zkrecipes.election.path", path),
		attribute.String("zkrecipes.election.id", id),
	))
	defer span.End()
	term, err := fn(ctx)
	outcome := "elected"
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		outcome = "canceled"
	default:
		outcome = "error"
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.SetAttributes(attribute.String("zkrecipes.outcome", outcome))
	t.campaign.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(attribute.String("zkrecipes.outcome", outcome)))
	return term, err
}

// termStarted opens the term's span and returns what to call when it ends.
func (t *telemetry) termStarted(parent context.Context, path, id, node string, token int64) (context.Context, func(lost bool, cause error, length time.Duration)) {
	ctx := context.Background()
	spanCtx, span := t.tracer.Start(parent, "zkrecipes.election.term", trace.WithAttributes(
		attribute.String("zkrecipes.election.path", path),
		attribute.String("zkrecipes.election.id", id),
		attribute.String("zkrecipes.election.node", node),
		attribute.Int64("zkrecipes.election.token", token),
	))
	t.terms.Add(ctx, 1, metric.WithAttributes(attribute.String("zkrecipes.event", "elected")))
	return spanCtx, func(lost bool, cause error, length time.Duration) {
		outcome := "resigned"
		if lost {
			outcome = "lost"
			span.SetStatus(codes.Error, cause.Error())
		}
		attrs := metric.WithAttributes(attribute.String("zkrecipes.event", outcome))
		t.terms.Add(ctx, 1, attrs)
		t.termLen.Record(ctx, length.Seconds(), metric.WithAttributes(attribute.String("zkrecipes.outcome", outcome)))
		span.SetAttributes(attribute.String("zkrecipes.outcome", outcome))
		span.End()
	}
}
