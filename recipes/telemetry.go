package recipes

import (
	"context"

	"go.opentelemetry.io/otel/attribute"

	"github.com/zkrecipes/zkrecipes/internal/otelx"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// ScopeName is the OpenTelemetry instrumentation scope of this package's
// spans, which come from the session's tracer provider:
//
//   - zkrecipes.barrier.wait: Barrier.Wait.
//   - zkrecipes.doublebarrier.enter and zkrecipes.doublebarrier.leave:
//     DoubleBarrier.Enter and Leave, with zkrecipes.doublebarrier.members
//     (the n the barrier waits for).
//
// A Group's view of its members is a cache.Tree, whose spans are package
// cache's.
//
// Every span carries zkrecipes.path (the recipe's node) and ends with
// zkrecipes.outcome (ok, canceled or error) and, for an error, error.type
// and an Error status. Spans started by a call are children of the span in
// the caller's context.
const ScopeName = "github.com/zkrecipes/zkrecipes/recipes"

// Span and attribute names.
const (
	spanBarrierWait = "zkrecipes.barrier.wait"
	spanDoubleEnter = "zkrecipes.doublebarrier.enter"
	spanDoubleLeave = "zkrecipes.doublebarrier.leave"
	keyMembers      = attribute.Key("zkrecipes.doublebarrier.members")
)

// traced runs fn in a span of this package's scope (see otelx.Traced).
func traced(ctx context.Context, s *resilience.Session, name, p string, fn func(context.Context) error, attrs ...attribute.KeyValue) error {
	return otelx.Traced(ctx, s, ScopeName, name, p, fn, attrs...)
}
