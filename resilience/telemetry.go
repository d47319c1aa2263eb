package resilience

import (
	"context"
	"net"
	"strconv"
	"strings"

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

type telemetry struct {
	tracer      trace.Tracer
	transitions metric.Int64Counter
	suspension  metric.Float64Histogram
	rebuildDur  metric.Float64Histogram
	rebuildFail metric.Int64Counter

	// Owned by the machine goroutine.
	suspSpan trace.Span
	suspFrom int64 // unix nanos
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
		metric.WithDescription("How long the session stayed Suspended, by outcome."),
		metric.WithUnit("s")); err != nil {
		return nil, err
	}
	if t.rebuildDur, err = m.Float64Histogram("zkrecipes.session.rebuild.duration",
		metric.WithDescription("Wall time of one round of rebuild steps after a new session."),
		metric.WithUnit("s")); err != nil {
		return nil, err
	}
	if t.rebuildFail, err = m.Int64Counter("zkrecipes.session.rebuild.failures",
		metric.WithDescription("Rebuild steps that failed (and were retried)."),
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

// observe records a transition: the counter, and the suspension span that
// opens at Suspended and ends at Reconnected, Lost or Closed.
func (t *telemetry) observe(tr Transition) {
	ctx := context.Background()
	t.transitions.Add(ctx, 1, metric.WithAttributes(
		attribute.String("zkrecipes.state.from", strings.ToLower(tr.From.String())),
		attribute.String("zkrecipes.state.to", strings.ToLower(tr.To.String())),
		attribute.String("zkrecipes.cause", tr.Cause.String()),
	))
	if tr.To == Suspended && t.suspSpan == nil {
		attrs := append(serverAttrs(tr.Server),
			attribute.String("zkrecipes.session.id", sessionHex(tr.SessionID)),
			attribute.Int64("zkrecipes.session.timeout_ms", tr.Timeout.Milliseconds()),
		)
		_, t.suspSpan = t.tracer.Start(ctx, "zkrecipes.session.suspension",
			trace.WithTimestamp(tr.Time), trace.WithAttributes(attrs...))
		t.suspFrom = tr.Time.UnixNano()
		return
	}
	if tr.From == Suspended && t.suspSpan != nil {
		outcome := strings.ToLower(tr.To.String())
		t.suspSpan.SetAttributes(
			attribute.String("zkrecipes.outcome", outcome),
			attribute.String("zkrecipes.cause", tr.Cause.String()),
		)
		if tr.To == Lost {
			t.suspSpan.SetStatus(codes.Error, "session lost: "+tr.Cause.String())
		}
		t.suspSpan.End(trace.WithTimestamp(tr.Time))
		t.suspSpan = nil
		secs := float64(tr.Time.UnixNano()-t.suspFrom) / 1e9
		t.suspension.Record(ctx, secs, metric.WithAttributes(attribute.String("zkrecipes.outcome", outcome)))
	}
}

func (t *telemetry) rebuilt(ctx context.Context, r RebuildReport, failed int) {
	outcome := "ok"
	if r.Err != nil {
		outcome = "error"
		t.rebuildFail.Add(ctx, int64(failed))
	}
	t.rebuildDur.Record(ctx, r.Duration.Seconds(), metric.WithAttributes(attribute.String("zkrecipes.outcome", outcome)))
}
