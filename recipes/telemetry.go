package recipes

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/zkrecipes/zkrecipes/resilience"
)

const (
	// ScopeName is the OpenTelemetry instrumentation scope of this package.
	ScopeName = "github.com/zkrecipes/zkrecipes/recipes"
	// Version is the version of this package's instrumentation.
	Version = resilience.Version
)

// Instrumentation returns the tracer and meter of the recipe package named
// scope: from tp and mp when given, otherwise from the session's providers
// (which default to the global ones).
func Instrumentation(s *resilience.Session, tp trace.TracerProvider, mp metric.MeterProvider, scope string) (trace.Tracer, metric.Meter) {
	if tp == nil {
		tp = s.TracerProvider()
	}
	if mp == nil {
		mp = s.MeterProvider()
	}
	return tp.Tracer(scope, trace.WithInstrumentationVersion(Version)), mp.Meter(scope, metric.WithInstrumentationVersion(Version))
}

// traced runs fn, a wait of one of this package's recipes, in a span named
// name (with the recipe's path), taken from the session's tracer provider.
func traced(ctx context.Context, s *resilience.Session, name, p string, fn func(context.Context) error) error {
	tracer, _ := Instrumentation(s, nil, nil, ScopeName)
	ctx, span := tracer.Start(ctx, name, trace.WithAttributes(attribute.String("zkrecipes.path", p)))
	defer span.End()
	err := fn(ctx)
	outcome := "ok"
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
	return err
}
