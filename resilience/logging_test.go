package resilience

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// captured is a slog.Handler that keeps every record.
type captured struct {
	mu   *sync.Mutex
	recs *[]slog.Record
}

func newCaptured() captured { return captured{mu: new(sync.Mutex), recs: new([]slog.Record)} }

func (h captured) Enabled(context.Context, slog.Level) bool { return true }
func (h captured) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	*h.recs = append(*h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h captured) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h captured) WithGroup(string) slog.Handler      { return h }

func (h captured) records(msg string) []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Record
	for _, r := range *h.recs {
		if r.Message == msg {
			out = append(out, r)
		}
	}
	return out
}

func recordAttrs(r slog.Record) map[string]string {
	m := map[string]string{}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	return m
}

// Every transition is logged exactly once, at Info (Warn for Suspended and
// Lost), under one message, with the transition in attributes.
func TestEachTransitionLoggedOnceWithAttributes(t *testing.T) {
	needZK(t)
	restore(t)
	h := newCaptured()
	srv := ens.Server(0)
	s, err := Connect(ctxT(t, 30*time.Second), []string{srv.Addr()}, WithSessionTimeout(2*time.Second), WithLogger(slog.New(h)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := record(s)
	first := s.SessionID()

	srv.Proxy().DropConnections()
	rec.waitFor(t, 20*time.Second, "Reconnected", to(Reconnected))
	if err := ens.ExpireSession(ctxT(t, 10*time.Second), first); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 30*time.Second, "a new session", func(tr Transition) bool { return tr.To == Connected && tr.SessionID != first })
	s.Close()

	// The first Connected happened before the listener; then everything
	// the listener saw, Closed included.
	want := append([]Transition{{From: Connecting, To: Connected, Cause: CauseSessionEstablished, SessionID: first, Server: srv.Addr()}}, rec.all()...)
	if last := want[len(want)-1]; last.To != Closed {
		t.Fatalf("listener's last transition %v, want Closed", last)
	}
	got := h.records(transitionMessage)
	if len(got) != len(want) {
		t.Fatalf("%d transition records, want one per transition (%d): %v", len(got), len(want), want)
	}
	for i, r := range got {
		tr := want[i]
		wantLevel := slog.LevelInfo
		if tr.To == Suspended || tr.To == Lost {
			wantLevel = slog.LevelWarn
		}
		if r.Level != wantLevel {
			t.Errorf("record %d (%v) at %v, want %v", i, tr, r.Level, wantLevel)
		}
		a := recordAttrs(r)
		exp := map[string]string{
			"state.from": tr.From.String(), "state.to": tr.To.String(), "cause": tr.Cause.String(),
			"session.id": sessionHex(tr.subject()), "server": tr.Server,
		}
		for k, v := range exp {
			if a[k] != v {
				t.Errorf("record %d (%v): %s = %q, want %q (attrs %v)", i, tr, k, a[k], v, a)
			}
		}
		if _, ok := a["session.timeout"]; !ok {
			t.Errorf("record %d has no session.timeout: %v", i, a)
		}
		if prev, ok := a["session.previous_id"]; ok != (tr.To == Connected && tr.OldSessionID != 0) || ok && prev != sessionHex(tr.OldSessionID) {
			t.Errorf("record %d (%v): session.previous_id %q (present %v)", i, tr, prev, ok)
		}
	}
	sawLost := false
	for _, tr := range want {
		sawLost = sawLost || tr.To == Lost
	}
	if !sawLost {
		t.Errorf("no Lost among %v", want)
	}
	// No record of the session's puts a state into its message text.
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range *h.recs {
		for _, st := range stateNames {
			if strings.Contains(r.Message, st) {
				t.Errorf("message %q embeds the state %s", r.Message, st)
			}
		}
	}
}
