package cache

import (
	"context"

	"go.opentelemetry.io/otel/attribute"

	"github.com/zkrecipes/zkrecipes/internal/otelx"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// ScopeName is the OpenTelemetry instrumentation scope of this package's
// spans, which come from the session's tracer provider:
//
//   - zkrecipes.treecache.load: NewTree's (and NewNode's) initial load;
//   - zkrecipes.treecache.resync: the full read after a reconnect or a new
//     session (a root span: no caller's context asked for it).
//
// Both carry zkrecipes.path (the cache's root) and
// zkrecipes.treecache.nodes (the nodes cached when the read is done), and
// end with zkrecipes.outcome (ok, canceled or error) and, for an error,
// error.type and an Error status. The load span is a child of the span in
// the caller's context.
const ScopeName = "github.com/zkrecipes/zkrecipes/cache"

// Span and attribute names.
const (
	spanTreeLoad      = "zkrecipes.treecache.load"
	spanTreeResync    = "zkrecipes.treecache.resync"
	keyTreeCacheNodes = attribute.Key("zkrecipes.treecache.nodes")
)

// traced runs fn in a span of this package's scope (see otelx.Traced).
func traced(ctx context.Context, s *resilience.Session, name, p string, fn func(context.Context) error, attrs ...attribute.KeyValue) error {
	return otelx.Traced(ctx, s, ScopeName, name, p, fn, attrs...)
}
