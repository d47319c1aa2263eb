package registry

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
	ScopeName = "github.com/zkrecipes/zkrecipes/registry"
	// Version is the version of this package's instrumentation.
	Version = resilience.Version
)

// Span names.
const (
	spanRegister     = "zkrecipes.registry.register"
	spanRegistration = "zkrecipes.registry.registration"
	spanUpdate       = "zkrecipes.registry.update"
	spanUnregister   = "zkrecipes.registry.unregister"
	spanCacheLoad    = "zkrecipes.registry.cache.load"
)

// Attribute keys of this package's spans and metrics (besides otelx's).
const (
	keyService   = attribute.Key("zkrecipes.registry.service")
	keyID        = attribute.Key("zkrecipes.registry.id")
	keyType      = attribute.Key("zkrecipes.registry.service_type")
	keyInstances = attribute.Key("zkrecipes.registry.instances")
)

// classes are this package's error.type values, tried before otelx's.
var classes = []otelx.Class{
	{Err: ErrIDInUse, Type: "id_in_use"},
	{Err: ErrUnregistered, Type: "unregistered"},
	{Err: ErrClosed, Type: "closed"},
	{Err: ErrInvalidInstance, Type: "invalid_instance"},
	{Err: ErrInvalidArgument, Type: "invalid_argument"},
}

type telemetry struct {
	tracer       trace.Tracer
	register     metric.Float64Histogram
	registered   metric.Int64UpDownCounter
	lifetime     metric.Float64Histogram
	reregistered metric.Int64Counter
	restored     metric.Int64Counter
	cacheSize    metric.Int64Gauge
	malformed    metric.Int64Counter
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
	histogram := func(dst *metric.Float64Histogram, name, desc string) {
		if err == nil {
			*dst, err = m.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"))
		}
	}
	histogram(&t.register, "zkrecipes.registry.register.duration",
		"Time Register took, by zkrecipes.outcome (and error.type for a failure).")
	histogram(&t.lifetime, "zkrecipes.registry.registration.duration",
		"How long registrations were kept, by zkrecipes.end (released: Unregister or the Registry's Close; lost: another session's node took the path).")
	counter(&t.reregistered, "zkrecipes.registry.reregistrations",
		"Ephemeral instances written again after a new session, by zkrecipes.outcome (and error.type for a failure).", "{instance}")
	counter(&t.restored, "zkrecipes.registry.restorations",
		"Registrations restored after someone else deleted them, by service.", "{instance}")
	counter(&t.malformed, "zkrecipes.registry.cache.malformed",
		"Nodes skipped by a cache because their data is not an instance, by service.", "{node}")
	if err == nil {
		t.registered, err = m.Int64UpDownCounter("zkrecipes.registry.registered",
			metric.WithDescription("Registrations this process keeps registered, by service."), metric.WithUnit("{registration}"))
	}
	if err == nil {
		t.cacheSize, err = m.Int64Gauge("zkrecipes.registry.cache.size",
			metric.WithDescription("Instances in a cache, by service."), metric.WithUnit("{instance}"))
	}
	return t, err
}

// instanceAttrs are the attributes naming an instance on its spans.
func instanceAttrs(in Instance) trace.SpanStartOption {
	return trace.WithAttributes(keyService.String(in.Name), keyID.String(in.ID), keyType.String(string(in.ServiceType)))
}

// traced runs fn in the span name, a child of ctx's, and finishes the span
// with fn's result, which it returns with the result's attributes.
func (t *telemetry) traced(ctx context.Context, name string, in Instance, fn func(context.Context) error) ([]attribute.KeyValue, error) {
	ctx, span := t.tracer.Start(ctx, name, instanceAttrs(in))
	defer span.End()
	err := fn(ctx)
	return otelx.Finish(span, err, classes), err
}

// tracedService runs fn in the span name (a child of ctx's) for service, and
// finishes the span with fn's result.
func tracedService(ctx context.Context, tracer trace.Tracer, name, service string, fn func(context.Context) error) ([]attribute.KeyValue, error) {
	ctx, span := tracer.Start(ctx, name, trace.WithAttributes(keyService.String(service)))
	defer span.End()
	err := fn(ctx)
	return otelx.Finish(span, err, classes), err
}

// registerSpan runs one Register in the span zkrecipes.registry.register
// and records its duration.
func (t *telemetry) registerSpan(ctx context.Context, in Instance, fn func(context.Context) (*Registration, error)) (*Registration, error) {
	start := time.Now()
	var reg *Registration
	attrs, err := t.traced(ctx, spanRegister, in, func(ctx context.Context) error {
		var err error
		reg, err = fn(ctx)
		if reg != nil {
			trace.SpanFromContext(ctx).SetAttributes(otelx.KeyPath.String(reg.Path()))
		}
		return err
	})
	t.register.Record(context.WithoutCancel(ctx), time.Since(start).Seconds(), metric.WithAttributes(attrs...))
	return reg, err
}

// registrationStarted opens a registration's span, a child of the
// caller's, counts the registration as kept, and returns what to call
// when the registration ends, with the reason it ended.
func (t *telemetry) registrationStarted(parent context.Context, in Instance, p string) func(why error) {
	start := time.Now()
	_, span := t.tracer.Start(parent, spanRegistration, instanceAttrs(in), trace.WithAttributes(otelx.KeyPath.String(p)))
	mctx := context.WithoutCancel(parent)
	service := metric.WithAttributes(keyService.String(in.Name))
	t.registered.Add(mctx, 1, service)
	return func(why error) {
		end := otelx.EndReleased
		attrs := []attribute.KeyValue{otelx.KeyEnd.String(otelx.EndReleased)}
		if errors.Is(why, ErrIDInUse) {
			end = otelx.EndLost
			attrs = []attribute.KeyValue{otelx.KeyEnd.String(end), otelx.KeyErrorType.String(otelx.ErrorType(why, classes...))}
			span.RecordError(why)
			span.SetStatus(codes.Error, why.Error())
		}
		t.registered.Add(mctx, -1, service)
		t.lifetime.Record(mctx, time.Since(start).Seconds(), metric.WithAttributes(otelx.KeyEnd.String(end)))
		span.SetAttributes(attrs...)
		span.End()
	}
}
