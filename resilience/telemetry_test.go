package resilience

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// otelRig is a tracer provider with a span recorder and a meter provider
// with a manual reader, shut down at cleanup.
type otelRig struct {
	sr     *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newOtelRig(t *testing.T) *otelRig {
	r := &otelRig{sr: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	r.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.sr))
	r.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))
	t.Cleanup(func() {
		_ = r.tp.Shutdown(context.Background())
		_ = r.mp.Shutdown(context.Background())
	})
	return r
}

func (r *otelRig) options() []Option {
	return []Option{WithTracerProvider(r.tp), WithMeterProvider(r.mp)}
}

func (r *otelRig) spans(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range r.sr.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// metrics collects this package's metrics by name.
func (r *otelRig) metrics(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != ScopeName {
			continue
		}
		if sm.Scope.Version != Version {
			t.Errorf("scope version %q, want %q", sm.Scope.Version, Version)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// attrString renders a set as sorted key=value pairs.
func attrString(kvs []attribute.KeyValue) string {
	parts := make([]string, len(kvs))
	for i, kv := range kvs {
		parts[i] = string(kv.Key) + "=" + kv.Value.String()
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// histogram returns a float64 histogram's data points by attribute set.
func histogram(t *testing.T, m metricdata.Metrics) map[string]metricdata.HistogramDataPoint[float64] {
	t.Helper()
	h, ok := m.Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s is %T, want a float64 histogram", m.Name, m.Data)
	}
	out := map[string]metricdata.HistogramDataPoint[float64]{}
	for _, dp := range h.DataPoints {
		out[attrString(dp.Attributes.ToSlice())] = dp
	}
	return out
}

// counter returns an int64 counter's values by attribute set.
func counter(t *testing.T, m metricdata.Metrics) map[string]int64 {
	t.Helper()
	s, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s is %T, want an int64 sum", m.Name, m.Data)
	}
	out := map[string]int64{}
	for _, dp := range s.DataPoints {
		out[attrString(dp.Attributes.ToSlice())] += dp.Value
	}
	return out
}

var unitSuffix = regexp.MustCompile(`[._](ms|s|sec|secs|seconds|millis|milliseconds|ns|us)$`)

// noUnits fails t for an attribute name that carries a unit.
func noUnits(t *testing.T, where string, kvs []attribute.KeyValue) {
	t.Helper()
	for _, kv := range kvs {
		if unitSuffix.MatchString(string(kv.Key)) {
			t.Errorf("%s: attribute %s carries a unit in its name", where, kv.Key)
		}
	}
}

func sameTime(a, b time.Time) bool { return a.Equal(b) }

// One suspension span per outage, from the first loss of contact until the
// session is usable again (Reconnected, or Connected on a new session after
// Lost, or Closed), with the histogram measuring the same interval, and
// the transitions counted.
func TestTelemetrySuspensionSpansAndMetrics(t *testing.T) {
	needZK(t)
	restore(t)
	rig := newOtelRig(t)
	srv := ens.Server(0)
	s := connect(t, []string{srv.Addr()}, append(rig.options(), WithSessionTimeout(1500*time.Millisecond), WithPresumedExpiry(0))...)
	rec := record(s)
	first := s.SessionID()

	// Outage 1: a dropped connection, back with the same session.
	srv.Proxy().DropConnections()
	rec.waitFor(t, 10*time.Second, "Reconnected", to(Reconnected))
	// Outage 2: the session expires during a silence; usable again only on
	// the new session.
	srv.Proxy().Blackhole()
	rec.waitFor(t, 10*time.Second, "Suspended again", func(tr Transition) bool { return tr.To == Suspended && tr.From == Reconnected })
	if err := ens.ExpireSession(ctxT(t, 10*time.Second), first); err != nil {
		t.Fatal(err)
	}
	srv.Proxy().Heal()
	rec.waitFor(t, 30*time.Second, "new session", func(tr Transition) bool { return tr.To == Connected && tr.SessionID != first })
	// Outage 3: closed while suspended.
	srv.Proxy().Blackhole()
	rec.waitFor(t, 10*time.Second, "Suspended a third time", func(tr Transition) bool {
		return tr.To == Suspended && tr.SessionID != first
	})
	s.Close()
	srv.Proxy().Heal()

	trs := rec.all()
	// Each outage: its first Suspended, its Lost if any, and the transition
	// that ended it.
	type outage struct{ start, lost, end Transition }
	var outages []outage
	var cur *outage
	for _, tr := range trs {
		switch {
		case tr.To == Suspended && cur == nil:
			cur = &outage{start: tr}
		case cur != nil && tr.To == Lost:
			cur.lost = tr
		case cur != nil && (tr.To == Reconnected || tr.To == Connected || tr.To == Closed):
			cur.end = tr
			outages = append(outages, *cur)
			cur = nil
		}
	}
	if len(outages) != 3 || outages[1].lost.To != Lost {
		t.Fatalf("outages %+v from transitions %v; want three, the second with Lost", outages, trs)
	}
	spans := rig.spans("zkrecipes.session.suspension")
	if len(spans) != 3 {
		t.Fatalf("%d suspension spans, want one per outage (3)", len(spans))
	}
	wantResult := []string{
		"zkrecipes.outcome=ok",
		"error.type=session_lost zkrecipes.outcome=error",
		"zkrecipes.outcome=canceled",
	}
	hist := histogram(t, rig.metrics(t)["zkrecipes.session.suspension.duration"])
	for i, sp := range spans {
		o := outages[i]
		if !sameTime(sp.StartTime(), o.start.Time) || !sameTime(sp.EndTime(), o.end.Time) {
			t.Errorf("span %d runs %v to %v; the outage ran from %v (%v) to %v (%v)",
				i, sp.StartTime(), sp.EndTime(), o.start.Time, o.start, o.end.Time, o.end)
		}
		d := sp.EndTime().Sub(sp.StartTime())
		t.Logf("outage %d: %v, %v -> %v", i, d, o.start.From, o.end.To)
		host, port, _ := strings.Cut(o.start.Server, ":")
		want := fmt.Sprintf("server.address=%s server.port=%s %s zkrecipes.cause=%s zkrecipes.session.id=%s zkrecipes.session.timeout=%v",
			host, port, wantResult[i], o.start.Cause, sessionHex(o.start.SessionID), o.start.Timeout.Seconds())
		want = attrString(parseAttrs(want))
		if got := attrString(sp.Attributes()); got != want {
			t.Errorf("span %d attributes\n got %s\nwant %s", i, got, want)
		}
		noUnits(t, "suspension span", sp.Attributes())
		wantStatus := codes.Unset
		if i == 1 {
			wantStatus = codes.Error
		}
		if sp.Status().Code != wantStatus {
			t.Errorf("span %d status %v, want %v", i, sp.Status(), wantStatus)
		}
		var lostEvents int
		for _, ev := range sp.Events() {
			if ev.Name == "zkrecipes.session.lost" {
				lostEvents++
				if !sameTime(ev.Time, o.lost.Time) || attrString(ev.Attributes) != "zkrecipes.cause="+o.lost.Cause.String() {
					t.Errorf("span %d lost event at %v %v, want at %v cause %s", i, ev.Time, ev.Attributes, o.lost.Time, o.lost.Cause)
				}
			}
		}
		if want := map[bool]int{true: 1, false: 0}[i == 1]; lostEvents != want {
			t.Errorf("span %d has %d lost events, want %d", i, lostEvents, want)
		}
		dp, ok := hist[wantResult[i]]
		if !ok || dp.Count != 1 || math.Abs(dp.Sum-d.Seconds()) > 1e-6 {
			t.Errorf("suspension.duration{%s} = %+v, want one value of %v s (the span's)", wantResult[i], dp, d.Seconds())
		}
	}
	if len(hist) != 3 {
		t.Errorf("suspension.duration has %d attribute sets, want 3: %v", len(hist), hist)
	}

	m := rig.metrics(t)
	if u := m["zkrecipes.session.suspension.duration"].Unit; u != "s" {
		t.Errorf("suspension.duration unit %q, want s", u)
	}
	counts := counter(t, m["zkrecipes.session.transitions"])
	var total int64
	for set, n := range counts {
		total += n
		noUnits(t, "transitions", parseAttrs(set))
	}
	// The first Connected came before the recorder.
	if total != int64(len(trs)+1) {
		t.Errorf("transition counter %d, want %d: %v", total, len(trs)+1, counts)
	}
	for set, n := range map[string]int64{
		"zkrecipes.cause=session_established zkrecipes.state.from=connecting zkrecipes.state.to=connected": 1,
		"zkrecipes.cause=expired zkrecipes.state.from=suspended zkrecipes.state.to=lost":                   1,
		"zkrecipes.cause=session_established zkrecipes.state.from=lost zkrecipes.state.to=connected":       1,
		"zkrecipes.cause=closed zkrecipes.state.from=suspended zkrecipes.state.to=closed":                  1,
	} {
		if counts[set] != n {
			t.Errorf("transitions{%s} = %d, want %d (all: %v)", set, counts[set], n, counts)
		}
	}
}

// parseAttrs turns "k=v k=v" back into string attributes, for comparing
// sets through attrString.
func parseAttrs(s string) []attribute.KeyValue {
	var out []attribute.KeyValue
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		out = append(out, attribute.String(k, v))
	}
	return out
}

// A rebuild is one span with a child per step per round, attributes under
// zkrecipes.session.rebuild, outcome and error.type on each; its metrics
// carry the same outcome.
func TestTelemetryRebuildSpansAndMetrics(t *testing.T) {
	needZK(t)
	restore(t)
	rig := newOtelRig(t)
	reports := make(chan RebuildReport, 16)
	s := connect(t, ens.Addrs(), append(rig.options(), WithSessionTimeout(2*time.Second),
		WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		WithRebuildReport(func(r RebuildReport) { reports <- r }))...)
	errFlaky := fmt.Errorf("%w: flaky", ErrOutcomeUnknown)
	var runs int
	s.OnNewSession("flaky", func(context.Context) error {
		runs++ // one step: its runs do not overlap
		if runs == 1 {
			return errFlaky
		}
		return nil
	})
	if err := ens.ExpireSession(ctxT(t, 10*time.Second), s.SessionID()); err != nil {
		t.Fatal(err)
	}
	var last RebuildReport
	for last.Round < 2 {
		select {
		case last = <-reports:
		case <-time.After(30 * time.Second):
			t.Fatalf("no second rebuild round (last %+v)", last)
		}
	}
	if last.Err != nil {
		t.Fatalf("second round: %v", last.Err)
	}

	rebuilds := rig.spans("zkrecipes.session.rebuild")
	if len(rebuilds) != 1 {
		t.Fatalf("%d rebuild spans, want 1", len(rebuilds))
	}
	rb := rebuilds[0]
	want := fmt.Sprintf("zkrecipes.outcome=ok zkrecipes.session.id=%s zkrecipes.session.rebuild.rounds=2 zkrecipes.session.rebuild.steps=1", sessionHex(last.SessionID))
	if got := attrString(rb.Attributes()); got != attrString(parseAttrs(want)) {
		t.Errorf("rebuild span attributes\n got %s\nwant %s", got, attrString(parseAttrs(want)))
	}
	if rb.Status().Code == codes.Error {
		t.Errorf("rebuild span status %v after a successful retry", rb.Status())
	}
	steps := rig.spans("zkrecipes.session.rebuild.step")
	if len(steps) != 2 {
		t.Fatalf("%d step spans, want 2 (one per round)", len(steps))
	}
	for i, wantRes := range []string{"error.type=outcome_unknown zkrecipes.outcome=error", "zkrecipes.outcome=ok"} {
		sp := steps[i]
		if sp.Parent().SpanID() != rb.SpanContext().SpanID() {
			t.Errorf("step span %d is not a child of the rebuild span", i)
		}
		if got, want := attrString(sp.Attributes()), attrString(parseAttrs(wantRes+" zkrecipes.session.rebuild.step.name=flaky")); got != want {
			t.Errorf("step span %d attributes\n got %s\nwant %s", i, got, want)
		}
		if (sp.Status().Code == codes.Error) != (i == 0) {
			t.Errorf("step span %d status %v", i, sp.Status())
		}
	}
	for _, sp := range append(steps, rb) {
		if !strings.HasPrefix(sp.Name(), "zkrecipes.session.rebuild") {
			t.Errorf("span %s", sp.Name())
		}
		for _, kv := range sp.Attributes() {
			k := string(kv.Key)
			if !strings.HasPrefix(k, "zkrecipes.session.") && k != "zkrecipes.outcome" && k != "error.type" {
				t.Errorf("span %s: attribute %s outside its namespace", sp.Name(), k)
			}
		}
		noUnits(t, sp.Name(), sp.Attributes())
	}

	m := rig.metrics(t)
	dur := histogram(t, m["zkrecipes.session.rebuild.duration"])
	if len(dur) != 2 || dur["error.type=outcome_unknown zkrecipes.outcome=error"].Count != 1 || dur["zkrecipes.outcome=ok"].Count != 1 {
		t.Errorf("rebuild.duration points %v, want one failed round (outcome_unknown) and one ok", dur)
	}
	if u := m["zkrecipes.session.rebuild.duration"].Unit; u != "s" {
		t.Errorf("rebuild.duration unit %q, want s", u)
	}
	if fails := counter(t, m["zkrecipes.session.rebuild.failures"]); len(fails) != 1 || fails["error.type=outcome_unknown"] != 1 {
		t.Errorf("rebuild.failures %v, want one outcome_unknown", fails)
	}
	if !errors.Is(errFlaky, ErrOutcomeUnknown) {
		t.Fatal("test error does not wrap ErrOutcomeUnknown")
	}
}

// A rebuild cut short by the session's loss fails (error.type
// session_lost); one cut short by Close is canceled, not an error.
func TestTelemetryRebuildCutShort(t *testing.T) {
	needZK(t)
	restore(t)
	rig := newOtelRig(t)
	s := connect(t, ens.Addrs(), append(rig.options(), WithSessionTimeout(2*time.Second))...)
	started := make(chan int64, 4)
	var lingering atomic.Int64 // a session whose step outlives its session until Close
	s.OnNewSession("blocks", func(ctx context.Context) error {
		sid := s.SessionID()
		started <- sid
		<-ctx.Done()
		if sid == lingering.Load() {
			// The rebuild cut short by the session's loss ends only
			// after Close has begun: its span must still say the session
			// was lost, not that the Session closed.
			<-s.closing
		}
		return ctx.Err()
	})
	waitStarted := func(not int64) int64 {
		t.Helper()
		for {
			select {
			case sid := <-started:
				if sid != not {
					return sid
				}
			case <-time.After(30 * time.Second):
				t.Fatal("rebuild step did not start on a new session")
			}
		}
	}
	first := s.SessionID()
	if err := ens.ExpireSession(ctxT(t, 10*time.Second), first); err != nil {
		t.Fatal(err)
	}
	second := waitStarted(first)
	lingering.Store(second)
	if err := ens.ExpireSession(ctxT(t, 10*time.Second), second); err != nil {
		t.Fatal(err)
	}
	third := waitStarted(second)
	s.Close()

	// The spans end in either order (the second session's is held until
	// Close begins): find each by its session.
	rebuilds := rig.spans("zkrecipes.session.rebuild")
	if len(rebuilds) != 2 {
		t.Fatalf("%d rebuild spans, want 2", len(rebuilds))
	}
	bySession := map[string]sdktrace.ReadOnlySpan{}
	for _, sp := range rebuilds {
		for _, kv := range sp.Attributes() {
			if kv.Key == keySessionID {
				bySession[kv.Value.AsString()] = sp
			}
		}
	}
	for i, sid := range []int64{second, third} {
		want := []string{"error.type=session_lost zkrecipes.outcome=error", "zkrecipes.outcome=canceled"}[i]
		sp, ok := bySession[sessionHex(sid)]
		if !ok {
			t.Fatalf("no rebuild span for session %s; spans for %v", sessionHex(sid), bySession)
		}
		var got []attribute.KeyValue
		for _, kv := range sp.Attributes() {
			if kv.Key == "zkrecipes.outcome" || kv.Key == "error.type" {
				got = append(got, kv)
			}
		}
		if attrString(got) != want {
			t.Errorf("rebuild span of session %s: result %s, want %s", sessionHex(sid), attrString(got), want)
		}
		if (sp.Status().Code == codes.Error) != (i == 0) {
			t.Errorf("rebuild span of session %s: status %v", sessionHex(sid), sp.Status())
		}
	}
	for i, sp := range rig.spans("zkrecipes.session.rebuild.step") {
		if got := attrString(sp.Attributes()); got != "zkrecipes.outcome=canceled zkrecipes.session.rebuild.step.name=blocks" {
			t.Errorf("step span %d attributes %s, want the step canceled", i, got)
		}
	}
}
