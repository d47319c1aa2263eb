package recipes

import (
	"context"

	"github.com/zkrecipes/zkrecipes/internal/otelx"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// ScopeName is the OpenTelemetry instrumentation scope of this package.
const ScopeName = "github.com/zkrecipes/zkrecipes/recipes"

// traced runs fn, a wait of one of this package's recipes, in a span named
// name (with the recipe's path), taken from the session's tracer provider.
func traced(ctx context.Context, s *resilience.Session, name, p string, fn func(context.Context) error) error {
	tracer, _ := otelx.Instrumentation(s, nil, nil, ScopeName)
	return otelx.Traced(ctx, tracer, name, p, fn)
}
