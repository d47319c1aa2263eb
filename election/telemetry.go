package election

import (
	"context"
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

// Attribute keys of this package's spans (besides otelx's).
const (
	keyID    = attribute.Key("zkrecipes.election.id")
	keyNode  = attribute.Key("zkrecipes.election.node")
	keyToken = attribute.Key("zkrecipes.election.token")
)

// classes are this package's error.type values.
var classes = []otelx.Class{
	{Err: ErrClosed, Type: "closed"},
	{Err: ErrInvalidArgument, Type: "invalid_argument"},
}

type telemetry struct {
	tracer   trace.Tracer
	campaign metric.Float64Histogram
	leading  metric.Int64UpDownCounter
	termLen  metric.Float64Histogram
}

func newTelemetry(s *resilience.Session, o *options) (*telemetry, error) {
	tracer, m := otelx.Instrumentation(s, o.tp, o.mp, ScopeName)
	t := &telemetry{tracer: tracer}
	var err error
	if t.campaign, err = m.Float64Histogram("zkrecipes.election.campaign.duration",
		metric.WithDescription("Time from starting a campaign to leading or giving up, by zkrecipes.outcome."),
		metric.WithUnit("s")); err != nil {
		return nil, err
	}
	if t.leading, err = m.Int64UpDownCounter("zkrecipes.election.leading",
		metric.WithDescription("Terms of leadership in progress in this process."),
		metric.WithUnit("{term}")); err != nil {
		return nil, err
	}
	if t.termLen, err = m.Float64Histogram("zkrecipes.election.term.duration",
		metric.WithDescription("Length of leadership terms, by zkrecipes.end (released or lost)."),
		metric.WithUnit("s")); err != nil {
		return nil, err
	}
	return t, nil
}

// campaignSpan runs one campaign in the span zkrecipes.election.campaign,
// started from the caller's ctx, and records its duration.
func (t *telemetry) campaignSpan(ctx context.Context, path, id string, fn func(context.Context) (*Term, error)) (*Term, error) {
	start := time.Now()
	ctx, span := t.tracer.Start(ctx, "zkrecipes.election.campaign", trace.WithAttributes(
		otelx.KeyPath.String(path), keyID.String(id),
	))
	defer span.End()
	term, err := fn(ctx)
	attrs := otelx.Finish(span, err, classes)
	if term != nil {
		span.SetAttributes(keyNode.String(termNode(term)), keyToken.Int64(term.Token()))
	}
	t.campaign.Record(context.WithoutCancel(ctx), time.Since(start).Seconds(), metric.WithAttributes(attrs...))
	return term, err
}

func termNode(t *Term) string { return t.h.Entry().Name }

// termStarted opens the term's span, a child of the caller's, and returns
// the context carrying it and what to call when the term ends.
func (t *telemetry) termStarted(parent context.Context, path, id, node string, token int64) (context.Context, func(lost bool, cause error, length time.Duration)) {
	spanCtx, span := t.tracer.Start(parent, "zkrecipes.election.term", trace.WithAttributes(
		otelx.KeyPath.String(path), keyID.String(id), keyNode.String(node), keyToken.Int64(token),
	))
	mctx := context.WithoutCancel(spanCtx)
	t.leading.Add(mctx, 1)
	return spanCtx, func(lost bool, cause error, length time.Duration) {
		end := otelx.EndReleased
		if lost {
			end = otelx.EndLost
			span.SetStatus(codes.Error, cause.Error())
		}
		t.leading.Add(mctx, -1)
		t.termLen.Record(mctx, length.Seconds(), metric.WithAttributes(otelx.KeyEnd.String(end)))
		span.SetAttributes(otelx.KeyEnd.String(end))
		span.End()
	}
}
