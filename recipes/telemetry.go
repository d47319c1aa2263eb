package recipes

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

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
//   - zkrecipes.treecache.load: NewTreeCache's (and NewNodeCache's,
//     JoinGroup's) initial load; zkrecipes.treecache.resync: the full read
//     after a reconnect or a new session (a root span: no caller's context
//     asked for it). Both carry zkrecipes.treecache.nodes, the nodes cached
//     when the read is done.
//
// Every span carries zkrecipes.path (the recipe's node) and ends with
// zkrecipes.outcome (ok, canceled or error) and, for an error, error.type
// and an Error status. Spans started by a call are children of the span in
// the caller's context.
const ScopeName = "github.com/zkrecipes/zkrecipes/recipes"

// Span and attribute names.
const (
	spanBarrierWait   = "zkrecipes.barrier.wait"
	spanDoubleEnter   = "zkrecipes.doublebarrier.enter"
	spanDoubleLeave   = "zkrecipes.doublebarrier.leave"
	spanTreeLoad      = "zkrecipes.treecache.load"
	spanTreeResync    = "zkrecipes.treecache.resync"
	keyMembers        = attribute.Key("zkrecipes.doublebarrier.members")
	keyTreeCacheNodes = attribute.Key("zkrecipes.treecache.nodes")
)

// traced runs fn, an operation of one of this package's recipes, in a span
// named name (with the recipe's path and attrs), taken from the session's
// tracer provider, and finishes the span with fn's result.
func traced(ctx context.Context, s *resilience.Session, name, p string, fn func(context.Context) error, attrs ...attribute.KeyValue) error {
	tracer, _ := otelx.Instrumentation(s, nil, nil, ScopeName)
	ctx, span := tracer.Start(ctx, name, trace.WithAttributes(append([]attribute.KeyValue{otelx.KeyPath.String(p)}, attrs...)...))
	defer span.End()
	err := fn(ctx)
	otelx.Finish(span, err, nil)
	return err
}
