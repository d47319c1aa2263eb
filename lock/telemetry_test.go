package lock

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
	"go.opentelemetry.io/otel/trace"

	"github.com/zkrecipes/zkrecipes/resilience"
)

// providers records what the package reports.
type providers struct {
	sr     *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newProviders(t *testing.T) *providers {
	p := &providers{sr: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	p.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(p.sr))
	p.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(p.reader))
	t.Cleanup(func() {
		_ = p.tp.Shutdown(context.Background())
		_ = p.mp.Shutdown(context.Background())
	})
	return p
}

func (p *providers) opts() []Option {
	return []Option{WithTracerProvider(p.tp), WithMeterProvider(p.mp)}
}

// spans returns the ended spans named name.
func (p *providers) spans(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range p.sr.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// metrics collects the package's metrics by name.
func (p *providers) metrics(t *testing.T) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := p.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

func attrsOf(kvs []attribute.KeyValue) map[string]string {
	out := map[string]string{}
	for _, kv := range kvs {
		out[string(kv.Key)] = kv.Value.String()
	}
	return out
}

// sameAttrs reports whether got holds exactly want.
func sameAttrs(got, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// histCount returns the count of the histogram point with exactly attrs.
func histCount(t *testing.T, agg metricdata.Aggregation, attrs map[string]string) uint64 {
	t.Helper()
	h, ok := agg.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%T is not a float64 histogram", agg)
	}
	for _, dp := range h.DataPoints {
		if sameAttrs(attrsOf(dp.Attributes.ToSlice()), attrs) {
			return dp.Count
		}
	}
	return 0
}

// sumValue returns the value of the int64 sum point with exactly attrs.
func sumValue(t *testing.T, agg metricdata.Aggregation, attrs map[string]string) int64 {
	t.Helper()
	s, ok := agg.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%T is not an int64 sum", agg)
	}
	for _, dp := range s.DataPoints {
		if sameAttrs(attrsOf(dp.Attributes.ToSlice()), attrs) {
			return dp.Value
		}
	}
	return 0
}

// The acquire span nests under the caller's span, the lease's context
// carries it (so the holder's own spans nest under the acquisition), and
// spans and metrics carry the names and attributes the README lists.
func TestTelemetry(t *testing.T) {
	needZK(t)
	restore(t)
	pr := newProviders(t)
	ctx := ctxT(t, time.Minute)
	c := connect(t, ens.Addrs())
	p := lockPath(t)
	m, err := NewMutex(c, p, pr.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	user := pr.tp.Tracer("user")

	// 1. Acquired: a child of the caller's span; work under the lease is a
	// child of the acquisition.
	reqCtx, req := user.Start(ctx, "user.request")
	l, err := m.Lock(reqCtx)
	if err != nil {
		t.Fatal(err)
	}
	_, work := user.Start(l.Context(), "user.work")
	work.End()
	req.End()
	if got := sumValue(t, pr.metrics(t)["zkrecipes.lock.held"], map[string]string{"zkrecipes.lock.kind": "mutex"}); got != 1 {
		t.Errorf("held{mutex} = %d while one lease is held, want 1", got)
	}

	// 2. Refused: TryLock while held.
	if _, err := m.TryLock(ctx); !errors.Is(err, ErrLocked) {
		t.Fatalf("TryLock while held: %v, want ErrLocked", err)
	}
	// 3. Canceled: a Lock that waits until its context ends.
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if _, err := m.Lock(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock while held, until the deadline: %v", err)
	}
	cancel()
	// 4. Released.
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// 5. Lost.
	ll := lostLease(ctx, t, p, pr.opts()...)
	_ = ll.Release(ctx)
	// 6. Failed: a Lock on a closed session.
	dead := connect(t, ens.Addrs())
	dm, _ := NewMutex(dead, p, pr.opts()...)
	dead.Close()
	if _, err := dm.Lock(ctx); !errors.Is(err, resilience.ErrClosed) {
		t.Fatalf("Lock on a closed session: %v, want ErrClosed", err)
	}
	// 7. A semaphore acquisition is one span of kind semaphore (its inner
	// mutex reports nothing of its own).
	sem, _ := NewSemaphore(c, p+"-sem", 1, pr.opts()...)
	sl, err := sem.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = sl.Release(ctx)

	// Spans.
	acq := pr.spans("zkrecipes.lock.acquire")
	if len(acq) != 6 {
		t.Fatalf("%d acquire spans, want 6 (ok, refused, canceled, lost's ok, error, semaphore)", len(acq))
	}
	reqs, works := pr.spans("user.request"), pr.spans("user.work")
	if len(reqs) != 1 || len(works) != 1 {
		t.Fatalf("user spans: %d requests, %d works", len(reqs), len(works))
	}
	first := acq[0]
	if first.Parent().SpanID() != reqs[0].SpanContext().SpanID() {
		t.Errorf("acquire span's parent %v, want the caller's span %v", first.Parent().SpanID(), reqs[0].SpanContext().SpanID())
	}
	if works[0].Parent().SpanID() != first.SpanContext().SpanID() || works[0].SpanContext().TraceID() != reqs[0].SpanContext().TraceID() {
		t.Errorf("span under the lease: parent %v in trace %v, want the acquire span %v in trace %v",
			works[0].Parent().SpanID(), works[0].SpanContext().TraceID(), first.SpanContext().SpanID(), reqs[0].SpanContext().TraceID())
	}
	if trace.SpanContextFromContext(l.Context()).SpanID() != first.SpanContext().SpanID() {
		t.Errorf("the lease's context does not carry the acquire span")
	}
	for i, want := range []map[string]string{
		{"zkrecipes.lock.kind": "mutex", "zkrecipes.path": p, "zkrecipes.outcome": "ok",
			"zkrecipes.lock.node": l.Path()[len(p)+1:], "zkrecipes.lock.token": attribute.Int64Value(l.Token()).String()},
		{"zkrecipes.lock.kind": "mutex", "zkrecipes.path": p, "zkrecipes.outcome": "refused"},
		{"zkrecipes.lock.kind": "mutex", "zkrecipes.path": p, "zkrecipes.outcome": "canceled"},
		{"zkrecipes.lock.kind": "mutex", "zkrecipes.path": p, "zkrecipes.outcome": "ok",
			"zkrecipes.lock.node": ll.Path()[len(p)+1:], "zkrecipes.lock.token": attribute.Int64Value(ll.Token()).String()},
		{"zkrecipes.lock.kind": "mutex", "zkrecipes.path": p, "zkrecipes.outcome": "error", "error.type": "closed"},
		{"zkrecipes.lock.kind": "semaphore", "zkrecipes.path": p + "-sem", "zkrecipes.outcome": "ok",
			"zkrecipes.lock.node": sl.Path()[len(p+"-sem/leases/"):], "zkrecipes.lock.token": attribute.Int64Value(sl.Token()).String()},
	} {
		if got := attrsOf(acq[i].Attributes()); !sameAttrs(got, want) {
			t.Errorf("acquire span %d: attributes %v, want %v", i, got, want)
		}
		wantStatus := codes.Unset
		if want["zkrecipes.outcome"] == "error" {
			wantStatus = codes.Error
		}
		if st := acq[i].Status().Code; st != wantStatus {
			t.Errorf("acquire span %d (%s): status %v, want %v", i, want["zkrecipes.outcome"], st, wantStatus)
		}
	}

	// Metrics.
	ms := pr.metrics(t)
	for _, name := range []string{"zkrecipes.lock.wait.duration", "zkrecipes.lock.acquisitions", "zkrecipes.lock.held", "zkrecipes.lock.hold.duration"} {
		if ms[name] == nil {
			t.Fatalf("no metric %s; have %v", name, ms)
		}
	}
	if len(ms) != 4 {
		t.Errorf("metrics %v, want only the four", ms)
	}
	wait := ms["zkrecipes.lock.wait.duration"]
	for want, n := range map[string]uint64{"ok": 2, "refused": 1, "canceled": 1} {
		if got := histCount(t, wait, map[string]string{"zkrecipes.lock.kind": "mutex", "zkrecipes.outcome": want}); got != n {
			t.Errorf("wait.duration{mutex, %s} count %d, want %d", want, got, n)
		}
	}
	if got := histCount(t, wait, map[string]string{"zkrecipes.lock.kind": "mutex", "zkrecipes.outcome": "error", "error.type": "closed"}); got != 1 {
		t.Errorf("wait.duration{mutex, error, closed} count %d, want 1", got)
	}
	if got := histCount(t, wait, map[string]string{"zkrecipes.lock.kind": "semaphore", "zkrecipes.outcome": "ok"}); got != 1 {
		t.Errorf("wait.duration{semaphore, ok} count %d, want 1", got)
	}
	acqs := ms["zkrecipes.lock.acquisitions"]
	if got := sumValue(t, acqs, map[string]string{"zkrecipes.lock.kind": "mutex"}); got != 2 {
		t.Errorf("acquisitions{mutex} = %d, want 2 (the successes only)", got)
	}
	if got := sumValue(t, acqs, map[string]string{"zkrecipes.lock.kind": "semaphore"}); got != 1 {
		t.Errorf("acquisitions{semaphore} = %d, want 1", got)
	}
	if n := len(acqs.(metricdata.Sum[int64]).DataPoints); n != 2 {
		t.Errorf("acquisitions has %d series, want 2 (mutex, semaphore)", n)
	}
	for _, kind := range []string{"mutex", "semaphore"} {
		if got := sumValue(t, ms["zkrecipes.lock.held"], map[string]string{"zkrecipes.lock.kind": kind}); got != 0 {
			t.Errorf("held{%s} = %d after every lease ended, want 0", kind, got)
		}
	}
	hold := ms["zkrecipes.lock.hold.duration"]
	for _, c := range []struct {
		kind, end string
		n         uint64
	}{{"mutex", "released", 1}, {"mutex", "lost", 1}, {"semaphore", "released", 1}} {
		if got := histCount(t, hold, map[string]string{"zkrecipes.lock.kind": c.kind, "zkrecipes.end": c.end}); got != c.n {
			t.Errorf("hold.duration{%s, %s} count %d, want %d", c.kind, c.end, got, c.n)
		}
	}
}
