package zktest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/resilience"
)

// A Link cuts one client off while another, on the ensemble's shared
// proxies, carries on; sessions made through a Link can be expired.
func TestLinkFaultsOneClient(t *testing.T) {
	if testing.Short() {
		t.Skip("needs ZooKeeper")
	}
	e := StartEnsemble(t)
	l, err := e.NewLink()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if len(l.Addrs()) != 1 || l.Addrs()[0] == e.Addrs()[0] || l.ProxyFor(l.Addrs()[0]) != l.Proxy(0) || l.ProxyFor("nowhere") != nil {
		t.Fatalf("link addrs %v, ensemble %v", l.Addrs(), e.Addrs())
	}
	a := connect(t, l.Addrs(), 6*time.Second)
	b := connect(t, e.Addrs(), 6*time.Second)
	id := a.SessionID()

	// While the link is black-holed, a's requests go unanswered and b's
	// are served.
	l.Blackhole()
	blocked := make(chan error, 1)
	go func() {
		_, _, err := a.Exists("/")
		blocked <- err
	}()
	if _, err := b.Create("/link", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("the other client was cut off too: %v", err)
	}
	select {
	case err := <-blocked:
		t.Fatalf("the linked client was answered (%v) through a black-holed link", err)
	case <-time.After(300 * time.Millisecond):
	}
	if b.count(zk.StateDisconnected) != 0 {
		t.Fatal("the other client was disconnected")
	}
	l.Heal()
	<-blocked // Heal closes the black-holed connection: the call ends
	waitFor(t, 10*time.Second, "the linked client to reconnect", a.hasSession)
	if a.SessionID() != id {
		t.Fatalf("session changed from 0x%x to 0x%x after a short partition", id, a.SessionID())
	}

	if err := e.ExpireSession(testContext(t, 30*time.Second), id); err != nil {
		t.Fatalf("expiring a session made through a link: %v", err)
	}
	waitFor(t, 10*time.Second, "the linked client to hear of the expiry", func() bool {
		return a.count(zk.StateExpired) > 0
	})

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.NewLink(); !errors.Is(err, ErrClosed) {
		t.Fatalf("NewLink after Close: %v, want ErrClosed", err)
	}
}

// transitions records a session's transitions.
type transitions struct {
	mu  sync.Mutex
	all []resilience.Transition
}

func (r *transitions) add(tr resilience.Transition) {
	r.mu.Lock()
	r.all = append(r.all, tr)
	r.mu.Unlock()
}

// to returns the recorded transitions into one of states.
func (r *transitions) to(states ...resilience.State) []resilience.Transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []resilience.Transition
	for _, tr := range r.all {
		if slices.Contains(states, tr.To) {
			out = append(out, tr)
		}
	}
	return out
}

// linkedSession opens a resilience.Session through a new Link of e; both
// close at cleanup.
func linkedSession(t *testing.T, e *Ensemble, timeout time.Duration) (*resilience.Session, *Link, *transitions) {
	t.Helper()
	l, err := e.NewLink()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s, err := resilience.Connect(testContext(t, 30*time.Second), l.Addrs(), resilience.WithSessionTimeout(timeout),
		resilience.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatalf("connect through a link: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	rec := &transitions{}
	t.Cleanup(s.AddListener(rec.add))
	return s, l, rec
}

// On a three-server ensemble, client a's Link cut off from every server
// (Link.Blackhole) suspends a's session, while client b, on a Link of its
// own, keeps its session and is served throughout. Expiring a's session
// (Ensemble.ExpireSession) then gives a a new session, and b keeps its own.
func TestLinkCutsOffOneClientOfAnEnsemble(t *testing.T) {
	if testing.Short() {
		t.Skip("needs ZooKeeper")
	}
	e := StartEnsemble(t, WithServers(3))
	ctx := testContext(t, 2*time.Minute)
	const timeout = 4 * time.Second
	a, la, aRec := linkedSession(t, e, timeout)
	b, _, bRec := linkedSession(t, e, timeout)
	aID, bID := a.SessionID(), b.SessionID()
	if p := la.ProxyFor(a.Server()); p == nil {
		t.Fatalf("a is connected to %s, none of its link's addresses %v", a.Server(), la.Addrs())
	}
	if la.Proxy(3) != nil || la.Proxy(-1) != nil {
		t.Fatal("Link.Proxy out of range is not nil")
	}
	const base = "/link" // the ensemble is this test's own
	if _, err := b.Create(ctx, base, nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}

	cut := time.Now()
	la.Blackhole()
	if err := a.WaitState(testContext(t, 3*timeout), resilience.Suspended); err != nil {
		t.Fatalf("a's session did not suspend with its link cut off from every server: %v (state %v)", err, a.State())
	}
	suspended := time.Since(cut)
	// b is served while a is cut off: writes, and a read of them, each
	// bounded by the session timeout.
	bctx := func() context.Context { return testContext(t, timeout) }
	for i := range 5 {
		if _, err := b.Create(bctx(), fmt.Sprintf("%s/b-%d", base, i), nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatalf("b's write %d while a was cut off: %v", i, err)
		}
	}
	if names, _, err := b.Children(bctx(), base); err != nil || len(names) != 5 {
		t.Fatalf("b's read while a was cut off: %v, %v", names, err)
	}
	// a stays cut off: it tries every server of its link and reaches none.
	// (Reaching one within this window is the failure; the window itself
	// decides nothing.)
	window := time.Now().Add(timeout / 4)
	for time.Now().Before(window) {
		if st := a.State(); st.HasSession() {
			t.Fatalf("a's session is %v %v after its link was cut off from every server", st, time.Since(cut))
		}
		time.Sleep(20 * time.Millisecond)
	}
	rctx, cancel := context.WithTimeout(ctx, timeout/4)
	_, _, err := a.Exists(rctx, base)
	cancel()
	if err == nil {
		t.Fatal("a was answered through its cut-off link")
	}
	if got := bRec.to(resilience.Suspended, resilience.Lost); len(got) != 0 || b.SessionID() != bID || b.State() != resilience.Connected {
		t.Fatalf("b was disturbed by a's partition: %v, session 0x%x (was 0x%x), state %v", got, b.SessionID(), bID, b.State())
	}
	t.Logf("a suspended %v after its link was cut off (session timeout %v); b wrote and read meanwhile", suspended.Round(time.Millisecond), timeout)

	la.Heal()
	if err := a.WaitState(testContext(t, 3*timeout), resilience.Connected, resilience.Reconnected); err != nil {
		t.Fatalf("a did not get a session back after Heal: %v (state %v)", err, a.State())
	}
	t.Logf("after Heal: a is %v, session 0x%x (was 0x%x)", a.State(), a.SessionID(), aID)

	// Forced expiry: a gets a new session, b keeps its own.
	aID = a.SessionID()
	if err := e.ExpireSession(ctx, aID); err != nil {
		t.Fatalf("ExpireSession: %v", err)
	}
	waitFor(t, 3*timeout, "a to get a new session after ExpireSession", func() bool {
		return a.State() == resilience.Connected && a.SessionID() != aID && a.SessionID() != 0
	})
	lost := aRec.to(resilience.Lost)
	if len(lost) == 0 || lost[len(lost)-1].OldSessionID != aID {
		t.Fatalf("a's transitions to Lost: %v, want one from session 0x%x", lost, aID)
	}
	if got := bRec.to(resilience.Suspended, resilience.Lost); len(got) != 0 || b.SessionID() != bID {
		t.Fatalf("b was disturbed by a's expiry: %v, session 0x%x (was 0x%x)", got, b.SessionID(), bID)
	}
	t.Logf("after ExpireSession: a has session 0x%x (expired 0x%x); b kept 0x%x", a.SessionID(), aID, bID)
}

// Link.SetLatency slows every one of the link's paths, Heal removes it.
func TestLinkSetLatency(t *testing.T) {
	const d = 100 * time.Millisecond
	var l Link
	var conns []net.Conn
	for range 2 {
		b := startBackend(t, echo)
		p := newTestProxy(t, b.ln.Addr().String())
		l.proxies = append(l.proxies, p)
		conns = append(conns, dial(t, p.Addr()))
	}
	l.SetLatency(d)
	for i, c := range conns {
		start := time.Now()
		if _, err := roundTrip(c, "slow", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if rtt := time.Since(start); rtt < 2*d {
			t.Errorf("path %d: round trip took %v with %v latency each way, want >= %v", i, rtt, d, 2*d)
		}
	}
	l.Heal()
	for i, c := range conns {
		fastest := time.Duration(1<<63 - 1)
		for range 5 {
			start := time.Now()
			if _, err := roundTrip(c, "fast", 5*time.Second); err != nil {
				t.Fatal(err)
			}
			fastest = min(fastest, time.Since(start))
		}
		if fastest >= 2*d {
			t.Errorf("path %d: fastest of 5 round trips after Heal took %v, want < %v", i, fastest, 2*d)
		}
	}
}

// ExpireSession expires a session even while its client is busy taking it
// back: a resilience.Session probes its session at once after getting one
// and reconnects as soon as a probe answers "session moved", which without
// ExpireSession holding its reconnects made the expiring connection lose
// the session to the client (seen as "reading closeSession reply: EOF"
// within the first two rounds of every run that tried). Each round expires the session the client has
// just been given, through a Link and through the shared proxies.
func TestExpireSessionRightAfterANewSession(t *testing.T) {
	if testing.Short() {
		t.Skip("needs ZooKeeper")
	}
	e := StartEnsemble(t)
	ctx := testContext(t, 2*time.Minute)
	linked, _, _ := linkedSession(t, e, 4*time.Second)
	shared, err := resilience.Connect(testContext(t, 30*time.Second), e.Addrs(), resilience.WithSessionTimeout(4*time.Second),
		resilience.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shared.Close() })
	const rounds = 10
	for name, s := range map[string]*resilience.Session{"link": linked, "shared proxies": shared} {
		for i := range rounds {
			id := s.SessionID()
			if err := e.ExpireSession(ctx, id); err != nil {
				t.Fatalf("%s, round %d: ExpireSession(0x%x): %v", name, i, id, err)
			}
			waitFor(t, 20*time.Second, fmt.Sprintf("%s, round %d: a new session after the expiry of 0x%x", name, i, id), func() bool {
				return s.State() == resilience.Connected && s.SessionID() != id && s.SessionID() != 0
			})
		}
	}
	t.Logf("%d sessions expired right after they were established, through a link and through the shared proxies", 2*rounds)
}
