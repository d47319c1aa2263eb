package zktest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// rawConnect sends a ConnectRequest for a new session on a fresh TCP
// connection to addr and returns the connection.
func rawConnect(t *testing.T, addr string) net.Conn {
	t.Helper()
	c := dial(t, addr)
	if _, err := c.Write(connectRequest{TimeOut: 6000, Passwd: make([]byte, 16)}.encode()); err != nil {
		t.Fatal(err)
	}
	return c
}

// answersConnect reports whether the server at addr answers a
// ConnectRequest with a new session within 5 seconds.
func answersConnect(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(connectRequest{TimeOut: 6000, Passwd: make([]byte, 16)}.encode()); err != nil {
		return false
	}
	frame, err := readFrame(c, maxConnectResponseSize)
	if err != nil {
		return false
	}
	r, err := parseConnectResponse(frame)
	return err == nil && r.SessionID != 0
}

// roles returns the ensemble's leader and followers, waiting until every
// running server serves.
func roles(ctx context.Context, t *testing.T, e *Ensemble) (*Server, []*Server) {
	t.Helper()
	if err := e.WaitServing(ctx); err != nil {
		t.Fatal(err)
	}
	leader, err := e.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var followers []*Server
	for _, s := range e.Servers() {
		if s != leader {
			followers = append(followers, s)
		}
	}
	return leader, followers
}

// notServing reports whether s says it is not serving.
func notServing(ctx context.Context, s *Server) bool {
	_, err := s.Mode(ctx)
	return errors.Is(err, ErrNotServing)
}

// A server isolated from its peers keeps its clients' TCP connections;
// a follower keeps answering them for up to syncLimit ticks, after the
// leader has expired their sessions, then stops serving; the others keep
// their quorum; after RejoinPeers it serves again. An isolated leader is
// replaced.
func TestIsolateFromPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("needs ZooKeeper")
	}
	ctx := testContext(t, 4*time.Minute)
	const syncLimit = 40
	e := StartEnsemble(t, WithServers(3), WithSyncLimit(syncLimit))
	tick := e.TickTime()
	syncTimeout := time.Duration(e.SyncLimit()) * tick
	if e.SyncLimit() != syncLimit {
		t.Fatalf("SyncLimit() = %d, want %d", e.SyncLimit(), syncLimit)
	}
	leader, followers := roles(ctx, t, e)
	f, other := followers[0], followers[1]

	// Every server names itself at its real ports and the others at the
	// routes to them.
	for _, s := range e.Servers() {
		cfg, err := os.ReadFile(s.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{fmt.Sprintf("syncLimit=%d\n", syncLimit)}
		for _, o := range e.Servers() {
			q, el := s.peerAddrs(o)
			want = append(want, fmt.Sprintf("server.%d=%s:%s\n", o.ID(), q, el[strings.LastIndexByte(el, ':')+1:]))
		}
		s.mu.Lock()
		want = append(want, fmt.Sprintf("server.%d=127.0.0.1:%d:%d\n", s.id, s.peerPort, s.electionPort))
		s.mu.Unlock()
		for _, w := range want {
			if !strings.Contains(string(cfg), w) {
				t.Errorf("server %d's zoo.cfg lacks %q:\n%s", s.ID(), w, cfg)
			}
		}
	}
	// All peer traffic passes through the routes: each follower's quorum
	// connection to the leader, and for each pair the election connection,
	// which the server with the larger id keeps (the election proxies make
	// the smaller one's connections come back through them).
	for _, s := range followers {
		r := e.route(s.ID(), leader.ID())
		waitFor(t, 10*time.Second, fmt.Sprintf("server %d's quorum connection to the leader through its route", s.ID()),
			func() bool { return r.quorum.connCount() == 1 })
	}
	for _, a := range e.Servers() {
		for _, b := range e.Servers() {
			if a.ID() > b.ID() {
				r := e.route(a.ID(), b.ID())
				waitFor(t, 10*time.Second, fmt.Sprintf("the election connection from server %d to %d through its route", a.ID(), b.ID()),
					func() bool { return r.election.connCount() >= 1 })
			}
		}
	}

	// fc reaches only f; majority reaches only the other two.
	const sessionTimeout = time.Second // well below syncTimeout
	fc := connect(t, []string{f.Addr()}, sessionTimeout)
	majority := connect(t, []string{leader.Addr(), other.Addr()}, 10*time.Second)
	root := "/isolate"
	if _, err := majority.Create(root, nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	eph := root + "/fc"
	if _, err := fc.Create(eph, nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	fcSession := fc.SessionID()

	t.Run("Follower", func(t *testing.T) {
		if err := f.IsolateFromPeers(); err != nil {
			t.Fatal(err)
		}
		isolated := time.Now()
		if !f.IsolatedFromPeers() || other.IsolatedFromPeers() {
			t.Fatalf("IsolatedFromPeers: f %v, other %v", f.IsolatedFromPeers(), other.IsolatedFromPeers())
		}
		if err := f.IsolateFromPeers(); err != nil {
			t.Fatalf("second IsolateFromPeers: %v", err)
		}
		// fc reads from f until f stops serving it.
		var mu sync.Mutex
		var lastAnswer time.Time
		answered := 0
		readerDone := make(chan struct{})
		go func() {
			defer close(readerDone)
			for ctx.Err() == nil {
				if _, _, err := fc.Exists(eph); err != nil {
					return
				}
				mu.Lock()
				lastAnswer, answered = time.Now(), answered+1
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
		// The leader expires fc's session: the majority sees its ephemeral
		// node go...
		var expired time.Duration
		waitFor(t, syncTimeout+20*time.Second, "the leader to expire the session of the isolated follower's client", func() bool {
			ok, _, err := majority.Exists(eph)
			if err == nil && !ok {
				expired = time.Since(isolated)
				return true
			}
			return false
		})
		answeredAtExpiry := time.Now()
		// ...while f still answers fc, which is the fault.
		waitFor(t, syncTimeout+20*time.Second, "the isolated follower to answer its client after the session expired", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return lastAnswer.After(answeredAtExpiry)
		})
		var stopped time.Duration
		waitFor(t, syncTimeout+20*time.Second, "the isolated follower to stop serving", func() bool {
			if notServing(ctx, f) {
				stopped = time.Since(isolated)
				return true
			}
			return false
		})
		<-readerDone
		mu.Lock()
		window := lastAnswer.Sub(isolated)
		mu.Unlock()
		t.Logf("tick %v, syncLimit %d (%v), session timeout %v: leader expired the session %v after isolation; the follower answered %d reads, the last %v after isolation, and reported not serving after %v",
			tick, syncLimit, syncTimeout, sessionTimeout, expired.Round(time.Millisecond), answered, window.Round(time.Millisecond), stopped.Round(time.Millisecond))
		// A follower gives up on a leader it has heard nothing from for
		// syncLimit ticks; it last heard from it at most a ping interval
		// (half a tick) before the isolation.
		if window < syncTimeout-tick {
			t.Errorf("the isolated follower stopped answering %v after isolation, before syncLimit x tickTime (%v) less a tick", window, syncTimeout)
		}

		// The other two keep their quorum.
		if mode, err := leader.Mode(ctx); err != nil || mode != "leader" {
			t.Fatalf("leader: Mode() = %q, %v", mode, err)
		}
		if mode, err := other.Mode(ctx); err != nil || mode != "follower" {
			t.Fatalf("other follower: Mode() = %q, %v", mode, err)
		}
		if _, err := majority.Create(root+"/during", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatalf("the majority could not write: %v", err)
		}
		// f's clients still reach its port: through its proxy and directly
		// a connection is accepted, and closed after the connect request as
		// by any server without a quorum.
		for _, addr := range []string{f.Addr(), f.DirectAddr()} {
			expectClosed(t, rawConnect(t, addr), 10*time.Second)
		}
		if fc.hasSession() {
			t.Fatal("the isolated follower's client still has a session")
		}

		if err := f.RejoinPeers(); err != nil {
			t.Fatal(err)
		}
		rejoined := time.Now()
		if f.IsolatedFromPeers() {
			t.Fatal("IsolatedFromPeers after RejoinPeers")
		}
		if err := f.WaitServing(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("the follower served again %v after RejoinPeers", time.Since(rejoined).Round(time.Millisecond))
		if mode, err := f.Mode(ctx); err != nil || mode != "follower" {
			t.Fatalf("rejoined server: Mode() = %q, %v", mode, err)
		}
		waitFor(t, 30*time.Second, "the isolated follower's client to learn its session expired and get a new one", func() bool {
			return fc.count(zk.StateExpired) > 0 && fc.hasSession() && fc.SessionID() != fcSession
		})
		if _, err := fc.Sync(root); err != nil {
			t.Fatal(err)
		}
		if ok, _, err := fc.Exists(root + "/during"); err != nil || !ok {
			t.Fatalf("the rejoined follower lacks the write made without it: %v, %v", ok, err)
		}
	})

	t.Run("Leader", func(t *testing.T) {
		old, _ := roles(ctx, t, e)
		if err := old.IsolateFromPeers(); err != nil {
			t.Fatal(err)
		}
		isolated := time.Now()
		var elected time.Duration
		var newLeader *Server
		waitFor(t, syncTimeout+60*time.Second, "a new leader among the other two", func() bool {
			for _, s := range e.Servers() {
				if s == old {
					continue
				}
				if mode, err := s.Mode(ctx); err == nil && mode == "leader" {
					elected, newLeader = time.Since(isolated), s
					return true
				}
			}
			return false
		})
		var stopped time.Duration
		waitFor(t, syncTimeout+20*time.Second, "the isolated leader to stop serving", func() bool {
			if notServing(ctx, old) {
				stopped = time.Since(isolated)
				return true
			}
			return false
		})
		t.Logf("tick %v, syncLimit %d (%v): server %d led %v after the leader (server %d) was isolated; the old leader reported not serving after %v",
			tick, syncLimit, syncTimeout, newLeader.ID(), elected.Round(time.Millisecond), old.ID(), stopped.Round(time.Millisecond))
		for _, s := range e.Servers() {
			if s != old && s != newLeader {
				waitFor(t, 30*time.Second, "the third server to follow the new leader", func() bool {
					mode, err := s.Mode(ctx)
					return err == nil && mode == "follower"
				})
			}
		}
		if _, err := majority.Create(root+"/newleader", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatalf("no write under the new leader: %v", err)
		}
		if err := old.RejoinPeers(); err != nil {
			t.Fatal(err)
		}
		rejoined := time.Now()
		if err := e.WaitServing(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("the old leader served again %v after RejoinPeers", time.Since(rejoined).Round(time.Millisecond))
		if mode, err := old.Mode(ctx); err != nil || mode != "follower" {
			t.Fatalf("old leader after rejoining: Mode() = %q, %v", mode, err)
		}
	})
}
