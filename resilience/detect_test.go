package resilience

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/zktest"
)

// Loss detection with the defaults (presumed expiry at 1.0) and every server
// named: a silent fault of the client's own server, while the other two
// keep quorum, must cost a reconnect at most, never the session. The
// faults: its link blackholed (both ways, or one way either way), its server paused (SIGSTOP: a hung server or
// a long GC pause; a follower, or the leader), a follower killed, the
// leader killed (with the client on the leader, and on a follower), each
// at several phases of
// the liveness cycle (the fault strikes phase x T/3 after an answered
// probe; T/3 spans two probe periods and go-zookeeper/zk's ping interval).
func TestSilentServerFaultKeepsSession(t *testing.T) {
	needZK(t)
	type fault struct {
		name     string
		onLeader bool // put the client on the leader (else on a follower)
		silent   bool // the client's server answers nothing (else it is gone)
		strike   func(t *testing.T, srv *zktest.Server, p *zktest.Proxy)
	}
	blackhole := fault{"blackhole", false, true, func(t *testing.T, _ *zktest.Server, p *zktest.Proxy) { p.Blackhole() }}
	kill := func(t *testing.T, srv *zktest.Server, _ *zktest.Proxy) {
		if err := srv.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	followerKill := fault{"follower-kill", false, false, kill}
	requestsLost := fault{"one-way-requests-lost", false, true, func(t *testing.T, _ *zktest.Server, p *zktest.Proxy) { p.BlackholeRequests() }}
	repliesLost := fault{"one-way-replies-lost", false, true, func(t *testing.T, _ *zktest.Server, p *zktest.Proxy) { p.BlackholeReplies() }}
	pause := func(t *testing.T, srv *zktest.Server, _ *zktest.Proxy) {
		t.Cleanup(func() {
			if err := srv.Resume(); err != nil {
				t.Error(err)
			}
		})
		if err := srv.Pause(); err != nil {
			t.Fatal(err)
		}
	}
	followerPause := fault{"follower-pause", false, true, pause}
	leaderPause := fault{"leader-pause", true, true, pause}
	leaderKill := fault{"leader-kill", true, false, kill}
	leaderKillFromFollower := fault{"leader-kill-client-on-follower", false, false, func(t *testing.T, _ *zktest.Server, _ *zktest.Proxy) {
		l, err := ens.Leader(ctxT(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Kill(); err != nil {
			t.Fatal(err)
		}
	}}
	type tcase struct {
		T      time.Duration
		f      fault
		phases []float64
	}
	cases := []tcase{
		{2 * time.Second, blackhole, []float64{0.1, 0.5, 0.9}},
		{2 * time.Second, followerKill, []float64{0.1, 0.9}},
		{2 * time.Second, followerPause, []float64{0.1, 0.9}},
		{2 * time.Second, requestsLost, []float64{0.5}},
		{2 * time.Second, repliesLost, []float64{0.5}},
		{2 * time.Second, leaderPause, []float64{0.1, 0.5, 0.9}},
		{2 * time.Second, leaderKill, []float64{0.1, 0.3, 0.5, 0.7, 0.9}},
		{2 * time.Second, leaderKillFromFollower, []float64{0.1, 0.9}},
		{4 * time.Second, blackhole, []float64{0.9}},
		{4 * time.Second, followerKill, []float64{0.9}},
		{4 * time.Second, followerPause, []float64{0.5}},
		{4 * time.Second, leaderKill, []float64{0.1, 0.5, 0.9}},
		{10 * time.Second, blackhole, []float64{0.9}},
		{10 * time.Second, leaderKill, []float64{0.9}},
	}
	if testing.Short() {
		cases = nil
	}
	for _, c := range cases {
		for _, phase := range c.phases {
			t.Run(fmt.Sprintf("T=%v/%s/phase=%.1f", c.T, c.f.name, phase), func(t *testing.T) {
				restore(t)
				silentFaultKeepsSession(t, c.T, phase, c.f.onLeader, c.f.silent, c.f.strike)
			})
		}
	}
}

// dialAt is one dial of a test's dialer: to where, when, and when its
// connection closed (zero while open).
type dialAt struct {
	addr   string
	at     time.Time
	closed time.Time
}

func (d *dialAt) closedAt(mu *sync.Mutex) {
	mu.Lock()
	if d.closed.IsZero() {
		d.closed = time.Now()
	}
	mu.Unlock()
}

// notifyConn calls closed once it is closed.
type notifyConn struct {
	net.Conn
	closed func()
}

func (c *notifyConn) Close() error {
	c.closed()
	return c.Conn.Close()
}

func silentFaultKeepsSession(t *testing.T, T time.Duration, phase float64, onLeader, silent bool,
	strike func(*testing.T, *zktest.Server, *zktest.Proxy)) {
	if err := ens.WaitServing(ctxT(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	leader, err := ens.Leader(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// The client's server: the leader, or a follower.
	target := leader
	if !onLeader {
		for _, srv := range ens.Servers() {
			if srv != leader {
				target = srv
				break
			}
		}
	}
	link, err := ens.NewLink()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { link.Close() })
	idx := -1
	for i, srv := range ens.Servers() {
		if srv == target {
			idx = i
		} else {
			link.Proxy(i).Reject() // so that the session starts on target
		}
	}
	// Dials, by address, with when each connection closed, to see whether
	// the client keeps trying a server that went silent.
	var dialMu sync.Mutex
	var dials []*dialAt
	dialer := func(network, addr string, timeout time.Duration) (net.Conn, error) {
		d := &dialAt{addr: addr, at: time.Now()}
		dialMu.Lock()
		dials = append(dials, d)
		dialMu.Unlock()
		c, err := net.DialTimeout(network, addr, timeout)
		if err != nil {
			d.closedAt(&dialMu)
			return nil, err
		}
		return &notifyConn{Conn: c, closed: func() { d.closedAt(&dialMu) }}, nil
	}
	s := connect(t, link.Addrs(), WithSessionTimeout(T), WithDialer(dialer))
	link.Heal()
	if s.Server() != link.Proxy(idx).Addr() {
		t.Fatalf("session on %s, want %s", s.Server(), link.Proxy(idx).Addr())
	}
	rec := record(s)
	id := s.SessionID()

	// Strike phase x T/3 after a probe's answer.
	info := &s.snap.Load().gen.info
	acked := info.ackedAt.Load()
	deadline := time.Now().Add(T)
	for info.ackedAt.Load() == acked {
		if time.Now().After(deadline) {
			t.Fatal("no probe answered within the session timeout")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(time.Until(time.Unix(0, info.ackedAt.Load()).Add(time.Duration(phase * float64(T/3)))))
	at := time.Now()
	strike(t, target, link.Proxy(idx))

	back := rec.waitFor(t, 3*T+10*time.Second, "the session back, or lost", func(tr Transition) bool {
		return tr.To == Reconnected || tr.To == Lost
	})
	if back.To != Reconnected || back.SessionID != id {
		t.Fatalf("after the fault: %v; transitions %v; want Reconnected with session %#x", back, rec.all(), id)
	}
	var suspended time.Time
	for _, tr := range rec.all() {
		if tr.To == Suspended && suspended.IsZero() {
			suspended = tr.Time
		}
		if tr.To == Lost {
			t.Fatalf("session lost: %v", rec.all())
		}
	}
	t.Logf("T=%v: suspended %v and reconnected (same session) %v after the fault, via %s",
		T, suspended.Sub(at).Round(time.Millisecond), back.Time.Sub(at).Round(time.Millisecond), back.Server)
	// A server that stopped answering is not tried again for a session
	// timeout while another may answer: each try of a silent server costs
	// a whole handshake watch (T/3), and a client stuck in one while the
	// others elect a new leader can miss the timeout that leader gives it.
	if silent && !suspended.IsZero() && back.Server != link.Proxy(idx).Addr() {
		dialMu.Lock()
		target := link.Proxy(idx).Addr()
		// wentSilent: since the suspension, a connection to addr closed
		// by before, having lasted a handshake watch: that server too left
		// a handshake unanswered.
		wentSilent := func(addr string, before time.Time) bool {
			for _, d := range dials {
				if d.addr == addr && d.at.After(suspended) && !d.closed.IsZero() &&
					d.closed.Before(before) && d.closed.Sub(d.at) >= T/3*9/10 {
					return true
				}
			}
			return false
		}
		for _, d := range dials {
			if d.addr != target || !d.at.After(suspended) || !d.at.Before(suspended.Add(T*9/10)) || !d.at.Before(back.Time) {
				continue
			}
			for _, other := range link.Addrs() {
				if other != target && !wentSilent(other, d.at) {
					t.Errorf("dialled the silent server %s again %v after suspending, before %s had been found silent too",
						d.addr, d.at.Sub(suspended).Round(time.Millisecond), other)
				}
			}
		}
		dialMu.Unlock()
	}
	// Still usable, and still the same session.
	if _, _, err := s.Exists(ctxT(t, T), "/"); err != nil {
		t.Fatal(err)
	}
	if got := s.SessionID(); got != id {
		t.Fatalf("session %#x, want %#x", got, id)
	}
}
