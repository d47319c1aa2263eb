package registry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/zkrecipes/zkrecipes/internal/otelx"
	"github.com/zkrecipes/zkrecipes/resilience"
)

const (
	// ScopeName is the OpenTelemetry instrumentation scope of this package.
	ScopeName = "github.com/zkrecipes/zkrecipes/registry"
	// Version is the version of this package's instrumentation.
	Version = resilience.Version
)

type telemetry struct {
	tracer        trace.Tracer
	registrations metric.Int64Counter
	reregistered  metric.Int64Counter
	restored      metric.Int64Counter
	cacheSize     metric.Int64Gauge
	malformed     metric.Int64Counter
}

func newTelemetry(s *resilience.Session, o *options) (*telemetry, error) {
	tracer, m := otelx.Instrumentation(s, o.tp, o.mp, ScopeName)
	t := &telemetry{tracer: tracer}
	var err error
	counter := func(dst *metric.Int64Counter, name, desc, unit string) {
		if err == nil {
			*dst, err = m.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit(unit))
		}
	}
	counter(&t.registrations, "zkrecipes.registry.registrations", "Instances registered.", "{instance}")
	counter(&t.reregistered, "zkrecipes.registry.reregistrations", "Ephemeral instances registered again after a new session.", "{instance}")
	counter(&t.restored, "zkrecipes.registry.restorations", "Registrations restored after someone else deleted them.", "{instance}")
	counter(&t.malformed, "zkrecipes.registry.cache.malformed", "Nodes skipped by a cache because their data is not an instance.", "{node}")
	if err == nil {
		t.cacheSize, err = m.Int64Gauge("zkrecipes.registry.cache.size",
			metric.WithDescription("Instances in a cache."), metric.WithUnit("{instance}"))
	}
	return t, err
}

func (t *telemetry) start(ctx context.Context, name string, in Instance) (context.Context, trace.Span) {
	return t.tracer.Start(ctx, name, trace.WithAttributes(
		attribute.String("zkrecipes.registry.service", in.Name),
		attribute.String("zkrecipes.registry.id", in.ID),
	))
}
