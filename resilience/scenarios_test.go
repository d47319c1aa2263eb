package resilience

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// The three captured scenarios of the source notes (seed 000), with the
// client's connect string naming only its one server, as in the captures,
// plus the failover case with all three servers named.

// (a) The client's server is down for longer than the session timeout: the
// reconnect is answered "expired" (timeout 0, session 0) and a new session
// follows.
func TestScenarioServerDownPastTimeout(t *testing.T) {
	needZK(t)
	restore(t)
	srv := ens.Server(0)
	obs := connect(t, []string{ens.Server(1).Addr()})
	// Presumption off: the verdict is the ensemble's, as in the capture.
	s := connect(t, []string{srv.Addr()}, WithSessionTimeout(1500*time.Millisecond), WithPresumedExpiry(0))
	rec := record(s)
	base := testPath(t, obs)
	eph, err := s.Create(ctxT(t, 10*time.Second), base+"/eph", []byte("a"), zk.FlagEphemeral, nil)
	if err != nil {
		t.Fatal(err)
	}
	oldID := s.SessionID()

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 10*time.Second, "Suspended", to(Suspended))
	// The other two servers keep quorum and expire the session.
	waitGone(t, obs, eph, 20*time.Second)
	if err := srv.Start(ctxT(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	connected := rec.waitFor(t, 30*time.Second, "new session", func(tr Transition) bool { return tr.To == Connected && tr.SessionID != oldID })

	got := rec.all()
	if want := []State{Suspended, Lost, Connected}; !reflect.DeepEqual(states(got), want) {
		t.Fatalf("transitions %v, want %v", got, want)
	}
	if got[1].Cause != CauseExpired {
		t.Errorf("Lost cause %v, want %v (the server's answer)", got[1].Cause, CauseExpired)
	}
	if connected.OldSessionID != oldID || connected.SessionID == oldID || connected.SessionID == 0 {
		t.Errorf("new session %x from %x, want a new id replacing %x", connected.SessionID, connected.OldSessionID, oldID)
	}
	if s.SessionID() != connected.SessionID {
		t.Errorf("SessionID() = %x, want %x", s.SessionID(), connected.SessionID)
	}
}

// (b) The client's server restarts quickly: the same session comes back.
func TestScenarioQuickRestart(t *testing.T) {
	needZK(t)
	restore(t)
	srv := ens.Server(1)
	s := connect(t, []string{srv.Addr()}, WithSessionTimeout(10*time.Second))
	rec := record(s)
	base := testPath(t, s)
	eph, err := s.Create(ctxT(t, 10*time.Second), base+"/eph", nil, zk.FlagEphemeral, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := s.SessionID()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 10*time.Second, "Suspended", to(Suspended))
	if err := srv.Start(ctxT(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	back := rec.waitFor(t, 30*time.Second, "Reconnected", to(Reconnected))
	if want := []State{Suspended, Reconnected}; !reflect.DeepEqual(states(rec.all()), want) {
		t.Fatalf("transitions %v, want %v", rec.all(), want)
	}
	if back.SessionID != id || s.SessionID() != id {
		t.Fatalf("session %x after reconnect, want %x", back.SessionID, id)
	}
	ok, st, err := s.Exists(ctxT(t, 10*time.Second), eph)
	if err != nil || !ok || st.EphemeralOwner != id {
		t.Fatalf("ephemeral after reconnect: exists=%v err=%v", ok, err)
	}
}

// (c) The client's server loses quorum for longer than the session timeout.
// With presumption off, the session survives: exactly one Suspended however
// long the outage (go-zookeeper/zk flaps Connected/Disconnected every second
// meanwhile), then Reconnected with the same id.
func TestScenarioQuorumLossSessionSurvives(t *testing.T) {
	needZK(t)
	restore(t)
	srv := ens.Server(2)
	timeout := 2 * time.Second
	s := connect(t, []string{srv.Addr()}, WithSessionTimeout(timeout), WithPresumedExpiry(0))
	rec := record(s)
	id := s.SessionID()

	stopOthers(t, srv)
	rec.waitFor(t, 10*time.Second, "Suspended", to(Suspended))
	// The scenario is an outage longer than the timeout; waiting it out is
	// the point, and nothing may happen meanwhile.
	time.Sleep(3 * timeout)
	if got := states(rec.all()); !reflect.DeepEqual(got, []State{Suspended}) {
		t.Fatalf("during quorum loss: %v, want only Suspended", rec.all())
	}
	startOthers(t, srv)
	back := rec.waitFor(t, 60*time.Second, "Reconnected", to(Reconnected))
	if want := []State{Suspended, Reconnected}; !reflect.DeepEqual(states(rec.all()), want) {
		t.Fatalf("transitions %v, want %v", rec.all(), want)
	}
	if back.SessionID != id {
		t.Fatalf("session %x after quorum returned, want %x", back.SessionID, id)
	}
}

// (c') The same outage with presumed expiry on: Lost at the presumed
// deadline, then a new session; the old session, which the ensemble kept,
// is closed so its ephemeral goes at once rather than a timeout later.
func TestScenarioQuorumLossPresumedExpiry(t *testing.T) {
	needZK(t)
	restore(t)
	srv := ens.Server(2)
	timeout := 6 * time.Second
	s := connect(t, []string{srv.Addr()}, WithSessionTimeout(timeout), WithPresumedExpiry(0.4))
	obs := connect(t, []string{ens.Server(0).Addr(), ens.Server(1).Addr()})
	rec := record(s)
	base := testPath(t, s)
	eph, err := s.Create(ctxT(t, 10*time.Second), base+"/eph", nil, zk.FlagEphemeral, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := s.SessionID()

	stopOthers(t, srv)
	rec.waitFor(t, 10*time.Second, "Suspended", to(Suspended))
	lost := rec.waitFor(t, 10*time.Second, "Lost", to(Lost))
	if lost.Cause != CausePresumedExpired {
		t.Fatalf("Lost cause %v, want presumed", lost.Cause)
	}
	// A leader elected when quorum returns gives every session it took
	// over a full timeout from then, and it cannot be elected before the
	// others start: so the ensemble itself would expire the old session
	// no sooner than a timeout after quorumBack. The bound is the feature:
	// the ephemeral going sooner shows the client closed that session.
	quorumBack := time.Now()
	startOthers(t, srv)
	conn := rec.waitFor(t, 60*time.Second, "new session", to(Connected))
	if conn.SessionID == id {
		t.Fatal("presumed-lost session was reused")
	}
	left := time.Until(quorumBack.Add(timeout))
	if left <= 0 {
		t.Fatalf("quorum and the new session took %v, past the session timeout %v: the ephemeral's going would not tell closing from expiry", time.Since(quorumBack), timeout)
	}
	waitGone(t, obs, eph, left)
	t.Logf("old session's ephemeral gone %v after quorum began to return (session timeout %v)", time.Since(quorumBack), timeout)
	if want := []State{Suspended, Lost, Connected}; !reflect.DeepEqual(states(rec.all()), want) {
		t.Fatalf("transitions %v, want %v", rec.all(), want)
	}
}

// (d) With all three servers named, losing the client's server moves the
// session to another within the timeout: Suspended, Reconnected, same id,
// ephemerals intact.
func TestScenarioFailoverToAnotherServer(t *testing.T) {
	needZK(t)
	restore(t)
	s := connect(t, ens.Addrs(), WithSessionTimeout(4*time.Second))
	rec := record(s)
	base := testPath(t, s)
	eph, err := s.Create(ctxT(t, 10*time.Second), base+"/eph", nil, zk.FlagEphemeral, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := s.SessionID()
	first := serverOf(t, s)
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	back := rec.waitFor(t, 20*time.Second, "Reconnected", to(Reconnected))
	if want := []State{Suspended, Reconnected}; !reflect.DeepEqual(states(rec.all()), want) {
		t.Fatalf("transitions %v, want %v", rec.all(), want)
	}
	if back.SessionID != id || back.Server == first.Addr() {
		t.Fatalf("reconnected to %s with %x; want another server, session %x", back.Server, back.SessionID, id)
	}
	ok, st, err := s.Exists(ctxT(t, 10*time.Second), eph)
	if err != nil || !ok || st.EphemeralOwner != id {
		t.Fatalf("ephemeral after failover: exists=%v err=%v", ok, err)
	}
}

func stopOthers(t *testing.T, keep interface{ ID() int }) {
	t.Helper()
	for _, o := range ens.Servers() {
		if o.ID() != keep.ID() {
			if err := o.Stop(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func startOthers(t *testing.T, keep interface{ ID() int }) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, o := range ens.Servers() {
		if o.ID() != keep.ID() {
			if err := o.Start(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}
