package election

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/zkrecipes/zkrecipes/resilience"
)

type telemetryKit struct {
	sr     *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	opts   []Option
}

func newTelemetryKit(t *testing.T) *telemetryKit {
	k := &telemetryKit{sr: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	k.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(k.sr))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(k.reader))
	t.Cleanup(func() {
		_ = k.tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	k.opts = []Option{WithTracerProvider(k.tp), WithMeterProvider(mp)}
	return k
}

func (k *telemetryKit) spans(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range k.sr.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// attrs returns a span's attributes as a map of strings.
func attrs(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

func (k *telemetryKit) metric(t *testing.T, name string) metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := k.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m.Data
			}
		}
	}
	t.Fatalf("no metric %s in scope %s", name, ScopeName)
	return nil
}

// histogramCounts returns a histogram's counts by its points' attributes.
func histogramCounts(t *testing.T, a metricdata.Aggregation) map[string]uint64 {
	t.Helper()
	h, ok := a.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%T is not a float64 histogram", a)
	}
	out := map[string]uint64{}
	for _, dp := range h.DataPoints {
		key := ""
		for _, kv := range dp.Attributes.ToSlice() {
			key += string(kv.Key) + "=" + kv.Value.String() + " "
		}
		out[key] += dp.Count
	}
	return out
}

func sumValue(t *testing.T, a metricdata.Aggregation) int64 {
	t.Helper()
	s, ok := a.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%T is not an int64 sum", a)
	}
	var v int64
	for _, dp := range s.DataPoints {
		v += dp.Value
	}
	return v
}

// The campaign and term spans are children of the caller's span, the term's
// context carries the term span (a span started from it is its child), and
// spans and metrics carry zkrecipes.outcome, error.type and zkrecipes.end
// as otelx defines them.
func TestTelemetry(t *testing.T) {
	needZK(t)
	restore(t)
	k := newTelemetryKit(t)
	p := electionPath()
	s := connect(t, ens.Addrs())
	e, err := New(s, p, append([]Option{WithID("traced")}, k.opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, time.Minute)
	callerCtx, caller := k.tp.Tracer("test").Start(ctx, "caller")

	// 1. A term won and resigned, with a user span inside it.
	term, err := e.Campaign(callerCtx)
	if err != nil {
		t.Fatal(err)
	}
	if got := sumValue(t, k.metric(t, "zkrecipes.election.leading")); got != 1 {
		t.Errorf("zkrecipes.election.leading while leading = %d, want 1", got)
	}
	_, user := k.tp.Tracer("test").Start(term.Context(), "user work")
	user.End()
	if err := term.Resign(ctx); err != nil {
		t.Fatal(err)
	}

	// 2. A term lost with its session.
	term2, err := e.Campaign(callerCtx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ens.ExpireSession(ctx, s.SessionID()); err != nil {
		t.Fatal(err)
	}
	<-term2.Done()

	// 3. A cancelled campaign (behind a rival), and 4. one after Close.
	rival, _ := New(connect(t, ens.Addrs()), p, WithID("rival"))
	rt, err := rival.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(callerCtx, 300*time.Millisecond)
	if _, err := e.Campaign(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("campaign behind a rival: %v, want context.DeadlineExceeded", err)
	}
	cancel()
	_ = rt.Resign(ctx)
	closedS, err := resilience.Connect(ctx, ens.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	closedE, _ := New(closedS, p, append([]Option{WithID("closed")}, k.opts...)...)
	closedS.Close()
	if _, err := closedE.Campaign(callerCtx); !errors.Is(err, ErrClosed) {
		t.Fatalf("campaign after Close: %v, want ErrClosed", err)
	}
	caller.End()

	camps := k.spans("zkrecipes.election.campaign")
	terms := k.spans("zkrecipes.election.term")
	users := k.spans("user work")
	if len(camps) != 4 || len(terms) != 2 || len(users) != 1 {
		t.Fatalf("%d campaign spans, %d term spans, %d user spans; want 4, 2, 1", len(camps), len(terms), len(users))
	}
	callerID := caller.SpanContext().SpanID()
	for _, sp := range append(append([]sdktrace.ReadOnlySpan{}, camps...), terms...) {
		if sp.Parent().SpanID() != callerID {
			t.Errorf("span %s is not a child of the caller's span", sp.Name())
		}
	}
	if users[0].Parent().SpanID() != terms[0].SpanContext().SpanID() {
		t.Errorf("a span started from Term.Context() is not a child of the term span")
	}
	wantCamp := []map[string]string{
		{"zkrecipes.outcome": "ok", "zkrecipes.election.id": "traced"},
		{"zkrecipes.outcome": "ok", "zkrecipes.election.id": "traced"},
		{"zkrecipes.outcome": "canceled", "zkrecipes.election.id": "traced"},
		{"zkrecipes.outcome": "error", "error.type": "closed", "zkrecipes.election.id": "closed"},
	}
	for i, sp := range camps {
		got := attrs(sp.Attributes())
		if got["zkrecipes.path"] != p {
			t.Errorf("campaign span %d: zkrecipes.path %q, want %q", i, got["zkrecipes.path"], p)
		}
		for k, v := range wantCamp[i] {
			if got[k] != v {
				t.Errorf("campaign span %d: %s = %q, want %q (all: %v)", i, k, got[k], v, got)
			}
		}
		if _, ok := got["error.type"]; ok != (wantCamp[i]["error.type"] != "") {
			t.Errorf("campaign span %d: error.type present %v (all: %v)", i, ok, got)
		}
		if failed := sp.Status().Code == codes.Error; failed != (i == 3) {
			t.Errorf("campaign span %d: status %v", i, sp.Status())
		}
	}
	for i, want := range []struct {
		term *Term
		end  string
	}{{term, "released"}, {term2, "lost"}} {
		got := attrs(terms[i].Attributes())
		if got["zkrecipes.end"] != want.end || got["zkrecipes.path"] != p || got["zkrecipes.election.id"] != "traced" ||
			got["zkrecipes.election.token"] != attribute.Int64Value(want.term.Token()).String() || got["zkrecipes.election.node"] == "" {
			t.Errorf("term span %d attributes %v, want zkrecipes.end=%s, path, id, node and token %d", i, got, want.end, want.term.Token())
		}
		if _, ok := got["zkrecipes.event"]; ok {
			t.Errorf("term span %d still has zkrecipes.event", i)
		}
		if lost := terms[i].Status().Code == codes.Error; lost != (want.end == "lost") {
			t.Errorf("term span %d status %v", i, terms[i].Status())
		}
	}

	campaigns := histogramCounts(t, k.metric(t, "zkrecipes.election.campaign.duration"))
	wantCounts := map[string]uint64{
		"zkrecipes.outcome=ok ":                      2,
		"zkrecipes.outcome=canceled ":                1,
		"error.type=closed zkrecipes.outcome=error ": 1,
	}
	for key, n := range wantCounts {
		if campaigns[key] != n {
			t.Errorf("campaign.duration{%s} count %d, want %d (all: %v)", key, campaigns[key], n, campaigns)
		}
	}
	if len(campaigns) != len(wantCounts) {
		t.Errorf("campaign.duration attribute sets %v, want %v", campaigns, wantCounts)
	}
	ends := histogramCounts(t, k.metric(t, "zkrecipes.election.term.duration"))
	if ends["zkrecipes.end=released "] != 1 || ends["zkrecipes.end=lost "] != 1 || len(ends) != 2 {
		t.Errorf("term.duration counts %v, want one released and one lost", ends)
	}
	if got := sumValue(t, k.metric(t, "zkrecipes.election.leading")); got != 0 {
		t.Errorf("zkrecipes.election.leading after both terms = %d, want 0", got)
	}
}
