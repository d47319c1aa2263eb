package registry

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
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

// spans returns the ended spans named name whose zkrecipes.registry.id
// is id (any id for "").
func (k *telemetryKit) spans(name, id string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range k.sr.Ended() {
		if s.Name() == name && (id == "" || attrMap(s.Attributes())[string(keyID)] == id) {
			out = append(out, s)
		}
	}
	return out
}

// span returns the one ended span named name for id.
func (k *telemetryKit) span(t *testing.T, name, id string) sdktrace.ReadOnlySpan {
	t.Helper()
	got := k.spans(name, id)
	if len(got) != 1 {
		t.Fatalf("%d ended spans %s for id %q, want 1 (all ended: %v)", len(got), name, id, k.names())
	}
	return got[0]
}

func (k *telemetryKit) names() []string {
	var out []string
	for _, s := range k.sr.Ended() {
		out = append(out, s.Name())
	}
	return out
}

func attrMap(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

// points returns metric name's values by the points' attributes
// ("k=v k=v", sorted by key): a sum's or gauge's value, a histogram's
// count. A metric not recorded yet has no points.
func (k *telemetryKit) points(t *testing.T, name string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := k.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	key := func(s attribute.Set) string {
		var parts []string
		for _, kv := range s.ToSlice() {
			parts = append(parts, string(kv.Key)+"="+kv.Value.String())
		}
		return strings.Join(parts, " ")
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					out[key(dp.Attributes)] += dp.Value
				}
			case metricdata.Gauge[int64]:
				for _, dp := range d.DataPoints {
					out[key(dp.Attributes)] = dp.Value
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					out[key(dp.Attributes)] += int64(dp.Count)
				}
			default:
				t.Fatalf("metric %s: unexpected %T", name, m.Data)
			}
		}
	}
	return out
}

// waitPoint waits until metric name's point with attributes attrs reaches
// at least want.
func (k *telemetryKit) waitPoint(t *testing.T, name, attrs string, want int64) {
	t.Helper()
	testkit.WaitFor(t, 30*time.Second, fmt.Sprintf("%s{%s} to reach %d", name, attrs, want), func() bool {
		return k.points(t, name)[attrs] >= want
	})
}

// wantAttrs checks that span s has each of want (a value of "" means the
// attribute must be absent).
func wantAttrs(t *testing.T, s sdktrace.ReadOnlySpan, want map[string]string) {
	t.Helper()
	got := attrMap(s.Attributes())
	for k, v := range want {
		if g, ok := got[k]; v == "" && ok {
			t.Errorf("span %s: attribute %s = %q, want none", s.Name(), k, g)
		} else if v != "" && g != v {
			t.Errorf("span %s: attribute %s = %q, want %q (all: %v)", s.Name(), k, g, v, got)
		}
	}
}

// wantChildOf checks that s is a child of parent.
func wantChildOf(t *testing.T, s sdktrace.ReadOnlySpan, parent trace.Span) {
	t.Helper()
	if s.Parent().SpanID() != parent.SpanContext().SpanID() || s.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("span %s: parent %v, want the caller's span %v", s.Name(), s.Parent().SpanID(), parent.SpanContext().SpanID())
	}
}

// TestTelemetry checks every span and metric the registry makes: names,
// parents (the caller's span), and the attributes otelx defines
// (zkrecipes.outcome, error.type, zkrecipes.end) besides the package's
// own, for a registration released by Unregister, one released by Close,
// one lost to another session's node, a refused Register, an invalid one,
// a restoration, a re-registration after expiry and a cache.
func TestTelemetry(t *testing.T) {
	needZK(t)
	restore(t)
	k := newTelemetryKit(t)
	ctx := ctxT(t, 2*time.Minute)
	// Through server 0's proxy, which ExpireSession needs.
	s := connect(t, []string{ens.Server(0).Addr()})
	other := connect(t, ens.Addrs())
	base := basePath()
	r, err := New(s, base, k.opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	callerCtx, caller := k.tp.Tracer("test").Start(ctx, "caller")
	defer caller.End()
	const reg, regDur, registered = "zkrecipes.registry.register", "zkrecipes.registry.register.duration", "zkrecipes.registry.registered"
	const svc = "zkrecipes.registry.service=svc"

	// 1. Register, Update, Unregister: released.
	a, err := r.Register(callerCtx, instance("svc", "a", 1))
	if err != nil {
		t.Fatal(err)
	}
	sp := k.span(t, reg, "a")
	wantChildOf(t, sp, caller)
	wantAttrs(t, sp, map[string]string{"zkrecipes.registry.service": "svc", "zkrecipes.registry.service_type": "DYNAMIC",
		"zkrecipes.path": a.Path(), "zkrecipes.outcome": "ok", "error.type": ""})
	if got := k.points(t, registered)[svc]; got != 1 {
		t.Errorf("%s while a is registered = %d, want 1", registered, got)
	}
	if err := a.Update(callerCtx, instance("svc", "a", 2)); err != nil {
		t.Fatal(err)
	}
	sp = k.span(t, "zkrecipes.registry.update", "a")
	wantChildOf(t, sp, caller)
	wantAttrs(t, sp, map[string]string{"zkrecipes.registry.service": "svc", "zkrecipes.outcome": "ok", "error.type": ""})
	if len(k.spans("zkrecipes.registry.registration", "a")) != 0 {
		t.Fatal("the registration's span ended while it is registered")
	}
	if err := a.Unregister(callerCtx); err != nil {
		t.Fatal(err)
	}
	sp = k.span(t, "zkrecipes.registry.unregister", "a")
	wantChildOf(t, sp, caller)
	wantAttrs(t, sp, map[string]string{"zkrecipes.outcome": "ok", "error.type": ""})
	sp = k.span(t, "zkrecipes.registry.registration", "a")
	wantChildOf(t, sp, caller)
	wantAttrs(t, sp, map[string]string{"zkrecipes.registry.service": "svc", "zkrecipes.path": a.Path(), "zkrecipes.end": "released", "error.type": ""})
	if sp.Status().Code == codes.Error {
		t.Errorf("released registration's span has status %v", sp.Status())
	}
	if got := k.points(t, registered)[svc]; got != 0 {
		t.Errorf("%s after Unregister = %d, want 0", registered, got)
	}
	// Unregister again: a failure with its class.
	if err := a.Unregister(callerCtx); !errors.Is(err, ErrUnregistered) {
		t.Fatalf("second Unregister: %v", err)
	}
	if got := k.spans("zkrecipes.registry.unregister", "a"); len(got) != 2 {
		t.Fatalf("%d unregister spans, want 2", len(got))
	} else {
		wantAttrs(t, got[1], map[string]string{"zkrecipes.outcome": "error", "error.type": "unregistered"})
	}

	// 2. A refused Register (the id is held through the same session) and
	// an invalid one.
	b, err := r.Register(callerCtx, instance("svc", "b", 1))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := New(s, base, k.opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if _, err := r2.Register(callerCtx, instance("svc", "b", 1)); !errors.Is(err, ErrIDInUse) {
		t.Fatalf("second registrant of b: %v", err)
	}
	if _, err := r.Register(callerCtx, Instance{Name: "svc", ID: "bad/id"}); !errors.Is(err, ErrInvalidInstance) {
		t.Fatalf("invalid instance: %v", err)
	}
	refused := k.spans(reg, "b")
	if len(refused) != 2 {
		t.Fatalf("%d register spans for b, want 2", len(refused))
	}
	wantAttrs(t, refused[1], map[string]string{"zkrecipes.outcome": "error", "error.type": "id_in_use", "zkrecipes.path": ""})
	if refused[1].Status().Code != codes.Error {
		t.Errorf("refused Register's span status %v, want Error", refused[1].Status())
	}
	wantAttrs(t, k.span(t, reg, "bad/id"), map[string]string{"zkrecipes.outcome": "error", "error.type": "invalid_instance"})
	durs := k.points(t, regDur)
	for attrs, want := range map[string]int64{
		"zkrecipes.outcome=ok":                                2,
		"error.type=id_in_use zkrecipes.outcome=error":        1,
		"error.type=invalid_instance zkrecipes.outcome=error": 1,
	} {
		if durs[attrs] != want {
			t.Errorf("%s{%s} count = %d, want %d (all: %v)", regDur, attrs, durs[attrs], want, durs)
		}
	}

	// 3. Restored after someone else deletes it.
	if err := other.Delete(ctx, b.Path(), -1); err != nil {
		t.Fatal(err)
	}
	k.waitPoint(t, "zkrecipes.registry.restorations", svc, 1)

	// 4. Re-registered after the session expires.
	old := s.SessionID()
	if err := ens.ExpireSession(ctx, old); err != nil {
		t.Fatal(err)
	}
	k.waitPoint(t, "zkrecipes.registry.reregistrations", "zkrecipes.outcome=ok", 1)
	testkit.WaitFor(t, 30*time.Second, "b back on the new session", func() bool {
		return testkit.OwnedBy(t, other, b.Path(), s.SessionID()) && s.SessionID() != old
	})

	// 5. Lost: another session's node takes b's path (deleted and created
	// in one transaction, so that b's guard finds the new node, not a gap
	// it could fill).
	data, _, err := other.Get(ctx, b.Path())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Multi(ctx, &zk.DeleteRequest{Path: b.Path(), Version: -1},
		&zk.CreateRequest{Path: b.Path(), Data: data, Flags: zk.FlagEphemeral, Acl: zk.WorldACL(zk.PermAll)}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("b not ended after another session's node took its path")
	}
	sp = k.span(t, "zkrecipes.registry.registration", "b")
	wantChildOf(t, sp, caller)
	wantAttrs(t, sp, map[string]string{"zkrecipes.end": "lost", "error.type": "id_in_use"})
	if sp.Status().Code != codes.Error {
		t.Errorf("lost registration's span status %v, want Error", sp.Status())
	}

	// 6. Released by the Registry's Close.
	c2, err := r2.Register(callerCtx, instance("svc", "c", 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Close(); err != nil {
		t.Fatal(err)
	}
	wantAttrs(t, k.span(t, "zkrecipes.registry.registration", "c"), map[string]string{"zkrecipes.end": "released", "zkrecipes.path": c2.Path()})
	life := k.points(t, "zkrecipes.registry.registration.duration")
	for attrs, want := range map[string]int64{"zkrecipes.end=released": 2, "zkrecipes.end=lost": 1} {
		if life[attrs] != want {
			t.Errorf("zkrecipes.registry.registration.duration{%s} count = %d, want %d (all: %v)", attrs, life[attrs], want, life)
		}
	}
	if got := k.points(t, registered)[svc]; got != 0 {
		t.Errorf("%s after every registration ended = %d, want 0", registered, got)
	}

	// 7. A cache: its load span, size and malformed nodes.
	if _, err := r.Register(callerCtx, instance("svc", "d", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Create(ctx, path.Join(base, "svc", "junk"), []byte("{not an instance"), zk.FlagEphemeral, nil); err != nil {
		t.Fatal(err)
	}
	cache, err := r.NewCache(callerCtx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	// c (left by r2's Close) and d, and b's replacement; not junk.
	wantN := cache.Len()
	if wantN != 3 {
		t.Errorf("cache holds %d instances, want 3 (b, c, d)", wantN)
	}
	sp = k.span(t, "zkrecipes.registry.cache.load", "")
	wantChildOf(t, sp, caller)
	wantAttrs(t, sp, map[string]string{"zkrecipes.registry.service": "svc", "zkrecipes.registry.instances": "3", "zkrecipes.outcome": "ok", "error.type": ""})
	k.waitPoint(t, "zkrecipes.registry.cache.malformed", svc, 1)
	if got := k.points(t, "zkrecipes.registry.cache.size")[svc]; got != 3 {
		t.Errorf("zkrecipes.registry.cache.size{%s} = %d, want 3", svc, got)
	}
	if _, err := r.NewCache(callerCtx, "a/b"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("cache of a bad service: %v", err)
	}
	if got := k.spans("zkrecipes.registry.cache.load", ""); len(got) != 2 {
		t.Fatalf("%d cache load spans, want 2", len(got))
	} else {
		wantAttrs(t, got[1], map[string]string{"zkrecipes.outcome": "error", "error.type": "invalid_argument"})
	}
}
