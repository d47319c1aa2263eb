package resilience

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func spanAttr(s sdktrace.ReadOnlySpan, key string) attribute.Value {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

func suspensionSpans(sr *tracetest.SpanRecorder) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range sr.Ended() {
		if s.Name() == "zkrecipes.session.suspension" {
			out = append(out, s)
		}
	}
	return out
}

// One suspension span per outage, ended with its outcome; metrics count the
// transitions and time the suspension.
func TestTelemetrySuspensionSpansAndMetrics(t *testing.T) {
	needZK(t)
	restore(t)
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	srv := ens.Server(0)
	s := connect(t, []string{srv.Addr()}, WithSessionTimeout(1500*time.Millisecond), WithPresumedExpiry(0),
		WithTracerProvider(tp), WithMeterProvider(mp))
	rec := record(s)

	// Outage 1: a dropped connection, back with the same session.
	srv.Proxy().DropConnections()
	rec.waitFor(t, 10*time.Second, "Reconnected", to(Reconnected))
	// Outage 2: the session expires.
	id := s.SessionID()
	srv.Proxy().Blackhole()
	rec.waitFor(t, 10*time.Second, "Suspended again", func(tr Transition) bool { return tr.To == Suspended && tr.From == Reconnected })
	if err := ens.ExpireSession(ctxT(t, 10*time.Second), id); err != nil {
		t.Fatal(err)
	}
	srv.Proxy().Heal()
	rec.waitFor(t, 30*time.Second, "new session", func(tr Transition) bool { return tr.To == Connected && tr.SessionID != id })

	spans := suspensionSpans(sr)
	if len(spans) != 2 {
		t.Fatalf("%d suspension spans, want one per outage (2)", len(spans))
	}
	for i, want := range []string{"reconnected", "lost"} {
		if got := spanAttr(spans[i], "zkrecipes.outcome").AsString(); got != want {
			t.Errorf("span %d outcome %q, want %q", i, got, want)
		}
		if spanAttr(spans[i], "server.port").AsInt64() == 0 || spanAttr(spans[i], "zkrecipes.session.id").AsString() == "" {
			t.Errorf("span %d lacks server or session attributes: %v", i, spans[i].Attributes())
		}
		if d := spans[i].EndTime().Sub(spans[i].StartTime()); d <= 0 || d > time.Minute {
			t.Errorf("span %d duration %v", i, d)
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var transitions int64
	var suspensions uint64
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if m.Name == "zkrecipes.session.transitions" {
					for _, dp := range d.DataPoints {
						transitions += dp.Value
					}
				}
			case metricdata.Histogram[float64]:
				if m.Name == "zkrecipes.session.suspension.duration" {
					for _, dp := range d.DataPoints {
						suspensions += dp.Count
					}
				}
			}
		}
	}
	// Connected (first) is before the recorder; then Suspended, Reconnected,
	// Suspended, Lost, Connected.
	if transitions != 6 {
		t.Errorf("transition counter %d, want 6", transitions)
	}
	if suspensions != 2 {
		t.Errorf("suspension histogram count %d, want 2", suspensions)
	}
}
