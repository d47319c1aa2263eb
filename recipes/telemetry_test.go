package recipes_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/zkrecipes/zkrecipes/cache"
	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/recipes"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// spansNamed returns the ended spans called name, of this package's scope
// (package cache's, for the tree cache's spans).
func spansNamed(t testing.TB, sr *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	t.Helper()
	scope := recipes.ScopeName
	if strings.HasPrefix(name, "zkrecipes.treecache.") {
		scope = cache.ScopeName
	}
	var out []sdktrace.ReadOnlySpan
	for _, sp := range sr.Ended() {
		if sp.Name() != name {
			continue
		}
		if sc := sp.InstrumentationScope(); sc.Name != scope || sc.Version != resilience.Version {
			t.Errorf("span %s has scope %s@%s, want %s@%s", name, sc.Name, sc.Version, scope, resilience.Version)
		}
		out = append(out, sp)
	}
	return out
}

// waitSpans waits until n spans called name have ended.
func waitSpans(t testing.TB, sr *tracetest.SpanRecorder, name string, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	var got []sdktrace.ReadOnlySpan
	testkit.WaitFor(t, 20*time.Second, fmt.Sprintf("%d %s span(s)", n, name), func() bool {
		got = spansNamed(t, sr, name)
		return len(got) >= n
	})
	return got
}

// checkSpan asserts a span's attributes (exactly the keys in want, each
// with its value), its status and its parent.
func checkSpan(t testing.TB, sp sdktrace.ReadOnlySpan, want map[attribute.Key]attribute.Value, status codes.Code, parent sdktrace.ReadOnlySpan) {
	t.Helper()
	got := map[attribute.Key]attribute.Value{}
	for _, kv := range sp.Attributes() {
		got[kv.Key] = kv.Value
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("span %s: %s = %v (present %v), want %v", sp.Name(), k, g.String(), ok, v.String())
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("span %s: unexpected attribute %s = %v", sp.Name(), k, v.String())
		}
	}
	if sp.Status().Code != status {
		t.Errorf("span %s: status %v (%q), want %v", sp.Name(), sp.Status().Code, sp.Status().Description, status)
	}
	if parent == nil {
		if sp.Parent().IsValid() {
			t.Errorf("span %s has a parent %v, want a root span", sp.Name(), sp.Parent().SpanID())
		}
	} else if sp.Parent().SpanID() != parent.SpanContext().SpanID() || sp.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("span %s: parent %v in trace %v, want the caller's span %v in trace %v", sp.Name(),
			sp.Parent().SpanID(), sp.SpanContext().TraceID(), parent.SpanContext().SpanID(), parent.SpanContext().TraceID())
	}
}

func str(s string) attribute.Value { return attribute.StringValue(s) }

// The barriers' and the tree cache's spans: names, scope, attributes
// (zkrecipes.path, zkrecipes.outcome, error.type, the recipe's own),
// status, and nesting under the caller's span.
func TestSpans(t *testing.T) {
	needZK(t)
	restore(t)
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	defer tp.Shutdown(context.Background())
	ctx := ctxT(t, time.Minute)
	srv := ens.Server(0)
	s := connect(t, []string{srv.Addr()}, resilience.WithTracerProvider(tp), resilience.WithSessionTimeout(10*time.Second))
	base := testkit.Path("/spans")
	// The caller's span, under which the recipes' spans must nest.
	pctx, parentSpan := tp.Tracer("test").Start(ctx, "caller")
	parentSpan.End()
	var parent sdktrace.ReadOnlySpan
	for _, sp := range sr.Ended() {
		if sp.Name() == "caller" {
			parent = sp
		}
	}
	if parent == nil {
		t.Fatal("the caller's span was not recorded")
	}

	t.Run("barrier", func(t *testing.T) {
		p := base + "/barrier"
		b, err := recipes.NewBarrier(s, p)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Set(ctx); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- b.Wait(pctx) }()
		if err := b.Remove(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// A wait given up by its caller.
		if err := b.Set(ctx); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(pctx)
		cancel()
		if err := b.Wait(cctx); err == nil {
			t.Fatal("a cancelled Wait on a raised barrier returned nil")
		}
		// A wait that fails: its session is closed.
		closed := connect(t, ens.Addrs(), resilience.WithTracerProvider(tp))
		cb, err := recipes.NewBarrier(closed, p)
		if err != nil {
			t.Fatal(err)
		}
		closed.Close()
		if err := cb.Wait(pctx); err == nil {
			t.Fatal("Wait on a closed session returned nil")
		}
		spans := waitSpans(t, sr, "zkrecipes.barrier.wait", 3)
		if len(spans) != 3 {
			t.Fatalf("%d barrier wait spans, want 3", len(spans))
		}
		checkSpan(t, spans[0], map[attribute.Key]attribute.Value{"zkrecipes.path": str(p), "zkrecipes.outcome": str("ok")}, codes.Unset, parent)
		checkSpan(t, spans[1], map[attribute.Key]attribute.Value{"zkrecipes.path": str(p), "zkrecipes.outcome": str("canceled")}, codes.Unset, parent)
		checkSpan(t, spans[2], map[attribute.Key]attribute.Value{"zkrecipes.path": str(p), "zkrecipes.outcome": str("error"), "error.type": str("closed")}, codes.Error, parent)
		if evs := spans[2].Events(); len(evs) != 1 || evs[0].Name != "exception" {
			t.Errorf("failed wait span's events %v, want one exception", evs)
		}
		if err := b.Remove(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("doublebarrier", func(t *testing.T) {
		p := base + "/double"
		d, err := recipes.NewDoubleBarrier(s, p, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Enter(pctx); err != nil {
			t.Fatal(err)
		}
		if err := d.Leave(pctx); err != nil {
			t.Fatal(err)
		}
		want := map[attribute.Key]attribute.Value{"zkrecipes.path": str(p), "zkrecipes.outcome": str("ok"), "zkrecipes.doublebarrier.members": attribute.IntValue(1)}
		for _, name := range []string{"zkrecipes.doublebarrier.enter", "zkrecipes.doublebarrier.leave"} {
			spans := waitSpans(t, sr, name, 1)
			if len(spans) != 1 {
				t.Fatalf("%d %s spans, want 1", len(spans), name)
			}
			checkSpan(t, spans[0], want, codes.Unset, parent)
		}
	})

	t.Run("treecache", func(t *testing.T) {
		p := base + "/tree"
		mustCreate(t, s, p, "r")
		mustCreate(t, s, p+"/a", "a")
		mustCreate(t, s, p+"/a/b", "b")
		tc, err := cache.NewTree(pctx, s, p)
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		loads := waitSpans(t, sr, "zkrecipes.treecache.load", 1)
		if len(loads) != 1 {
			t.Fatalf("%d load spans, want 1", len(loads))
		}
		checkSpan(t, loads[0], map[attribute.Key]attribute.Value{
			"zkrecipes.path": str(p), "zkrecipes.outcome": str("ok"), "zkrecipes.treecache.nodes": attribute.IntValue(3),
		}, codes.Unset, parent)
		// A reconnect makes the cache read the subtree again: a root span.
		mustCreate(t, s, p+"/c", "c")
		testkit.WaitFor(t, 20*time.Second, "the cache to hold 4 nodes", func() bool { return tc.Len() == 4 })
		srv.Proxy().DropConnections()
		if err := s.WaitState(ctx, resilience.Reconnected); err != nil {
			t.Fatal(err)
		}
		resyncs := waitSpans(t, sr, "zkrecipes.treecache.resync", 1)
		checkSpan(t, resyncs[0], map[attribute.Key]attribute.Value{
			"zkrecipes.path": str(p), "zkrecipes.outcome": str("ok"), "zkrecipes.treecache.nodes": attribute.IntValue(4),
		}, codes.Unset, nil)
		// A load given up by its caller.
		cctx, cancel := context.WithCancel(pctx)
		cancel()
		if _, err := cache.NewTree(cctx, s, p); err == nil {
			t.Fatal("NewTreeCache with a cancelled context returned nil")
		}
		loads = waitSpans(t, sr, "zkrecipes.treecache.load", 2)
		checkSpan(t, loads[1], map[attribute.Key]attribute.Value{
			"zkrecipes.path": str(p), "zkrecipes.outcome": str("canceled"), "zkrecipes.treecache.nodes": attribute.IntValue(0),
		}, codes.Unset, parent)
	})
}
