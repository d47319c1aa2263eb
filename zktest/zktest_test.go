package zktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// testClient is a go-zookeeper client that counts its session events.
type testClient struct {
	*zk.Conn
	mu     sync.Mutex
	counts map[zk.State]int
}

func (c *testClient) count(s zk.State) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[s]
}

func (c *testClient) hasSession() bool { return c.State() == zk.StateHasSession }

// testLogger sends go-zookeeper's log to the test log until the test ends.
type testLogger struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (l *testLogger) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Logf("zk client: "+format, args...)
	}
}

// connect opens a client on addrs and waits until it has a session.
func connect(t *testing.T, addrs []string, sessionTimeout time.Duration) *testClient {
	t.Helper()
	logger := &testLogger{t: t}
	conn, events, err := zk.Connect(addrs, sessionTimeout, zk.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	c := &testClient{Conn: conn, counts: map[zk.State]int{}}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for ev := range events {
			if ev.Type == zk.EventSession {
				c.mu.Lock()
				c.counts[ev.State]++
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		select {
		case <-drained:
		case <-time.After(10 * time.Second):
			t.Error("zk client did not shut down")
		}
		logger.mu.Lock()
		logger.done = true
		logger.mu.Unlock()
	})
	waitFor(t, 10*time.Second, "the client to get a session", c.hasSession)
	return c
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestStandaloneFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("needs ZooKeeper")
	}
	ctx := testContext(t, time.Minute)
	e := StartEnsemble(t)
	s := e.Server(0)
	if n := len(e.Servers()); n != 1 || e.Server(1) != nil || e.Server(-1) != nil {
		t.Fatalf("%d servers", n)
	}
	if s.ID() != 1 || e.ConnectString() != s.Addr() || s.Addr() == s.DirectAddr() || e.TickTime() != 100*time.Millisecond {
		t.Fatalf("id %d, connect string %q, addr %s, direct %s, tick %v", s.ID(), e.ConnectString(), s.Addr(), s.DirectAddr(), e.TickTime())
	}
	if mode, err := s.Mode(ctx); err != nil || mode != "standalone" {
		t.Fatalf("Mode() = %q, %v", mode, err)
	}
	if l, err := e.Leader(ctx); err != nil || l != s {
		t.Fatalf("Leader() = %v, %v", l, err)
	}
	if err := s.IsolateFromPeers(); !errors.Is(err, ErrNoPeers) {
		t.Fatalf("IsolateFromPeers on a standalone server: %v, want ErrNoPeers", err)
	}
	if err := s.RejoinPeers(); !errors.Is(err, ErrNoPeers) {
		t.Fatalf("RejoinPeers on a standalone server: %v, want ErrNoPeers", err)
	}

	c := connect(t, e.Addrs(), 6*time.Second)
	id := c.SessionID()
	if _, err := c.Create("/zktest", []byte("data"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	p := s.Proxy()
	if pw := p.Sessions()[id]; len(pw) != 16 {
		t.Fatalf("proxy recorded password %x for session 0x%x, want 16 bytes (sessions: %x)", pw, id, p.Sessions())
	}

	t.Run("DropConnections", func(t *testing.T) {
		before := c.count(zk.StateDisconnected)
		p.DropConnections()
		waitFor(t, 10*time.Second, "the client to reconnect", func() bool {
			return c.count(zk.StateDisconnected) > before && c.hasSession()
		})
		if got := c.SessionID(); got != id {
			t.Fatalf("session changed from 0x%x to 0x%x", id, got)
		}
		if data, _, err := c.Get("/zktest"); err != nil || string(data) != "data" {
			t.Fatalf("Get = %q, %v", data, err)
		}
	})

	t.Run("BlackholeHeal", func(t *testing.T) {
		p.Blackhole()
		result := make(chan error, 1)
		go func() {
			_, _, err := c.Get("/zktest")
			result <- err
		}()
		// A fresh connection is accepted but nothing comes back.
		raw := dial(t, p.Addr())
		if _, err := raw.Write([]byte("srvr")); err != nil {
			t.Fatal(err)
		}
		expectSilence(t, raw, 300*time.Millisecond)
		select {
		case err := <-result:
			t.Fatalf("request completed during the blackhole: %v", err)
		default:
		}
		p.Heal()
		expectClosed(t, raw, 5*time.Second)
		select {
		case <-result: // typically ErrConnectionClosed: Heal closed the connection
		case <-time.After(10 * time.Second):
			t.Fatal("request still pending 10s after Heal")
		}
		waitFor(t, 10*time.Second, "the client to reconnect", c.hasSession)
		if got := c.SessionID(); got != id {
			t.Fatalf("session changed from 0x%x to 0x%x", id, got)
		}
		if _, _, err := c.Get("/zktest"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Latency", func(t *testing.T) {
		const d = 150 * time.Millisecond
		p.SetLatency(d)
		start := time.Now()
		if _, _, err := c.Get("/zktest"); err != nil {
			t.Fatal(err)
		}
		if rtt := time.Since(start); rtt < 2*d {
			t.Errorf("Get took %v with %v of latency each way, want >= %v", rtt, d, 2*d)
		}
		// After Heal no delay is added: a delayed Get can never take less
		// than 2d, an undelayed one may be slowed by a busy machine, so the
		// fastest of several Gets must beat 2d.
		p.Heal()
		fastest := time.Duration(1<<63 - 1)
		for range 5 {
			start := time.Now()
			if _, _, err := c.Get("/zktest"); err != nil {
				t.Fatal(err)
			}
			fastest = min(fastest, time.Since(start))
		}
		if fastest >= 2*d {
			t.Errorf("fastest of 5 Gets after Heal took %v, want < %v: latency still applied", fastest, 2*d)
		}
		t.Logf("fastest Get after Heal: %v (latency was %v each way)", fastest, d)
		if got := c.SessionID(); got != id {
			t.Fatalf("session changed from 0x%x to 0x%x", id, got)
		}
	})

	t.Run("Reject", func(t *testing.T) {
		p.Reject()
		waitFor(t, 5*time.Second, "the client to lose its connection", func() bool { return !c.hasSession() })
		raw := dial(t, p.Addr())
		expectClosed(t, raw, 5*time.Second)
		p.Heal()
		waitFor(t, 10*time.Second, "the client to reconnect", c.hasSession)
		if got := c.SessionID(); got != id {
			t.Fatalf("session changed from 0x%x to 0x%x", id, got)
		}
	})

	t.Run("ExpireSession", func(t *testing.T) {
		if _, err := c.Create("/zktest-ephemeral", nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
		if err := e.ExpireSession(ctx, id); err != nil {
			t.Fatalf("ExpireSession: %v", err)
		}
		waitFor(t, 15*time.Second, "the client to get a new session", func() bool {
			sid := c.SessionID()
			return sid != id && sid != 0 && c.hasSession()
		})
		// The event goes through the client's event channel, which the
		// test reads on another goroutine: wait for it too.
		waitFor(t, 5*time.Second, "the client to see StateExpired", func() bool { return c.count(zk.StateExpired) > 0 })
		if ok, _, err := c.Exists("/zktest-ephemeral"); err != nil || ok {
			t.Errorf("ephemeral node of the expired session: exists=%v, err=%v", ok, err)
		}
		// Expiring it again is a no-op; an unknown session is an error.
		if err := e.ExpireSession(ctx, id); err != nil {
			t.Errorf("second ExpireSession: %v", err)
		}
		if err := e.ExpireSession(ctx, 0x7e57); err == nil || !strings.Contains(err.Error(), "0x7e57") {
			t.Errorf("ExpireSession of an unknown session: %v", err)
		}
	})
}

func TestEnsembleFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("needs ZooKeeper")
	}
	ctx := testContext(t, 2*time.Minute)
	e := StartEnsemble(t, WithServers(3))
	servers := e.Servers()
	if len(servers) != 3 {
		t.Fatalf("%d servers", len(servers))
	}
	seen := map[string]bool{}
	for i, s := range servers {
		if s.ID() != i+1 || e.Server(i) != s || e.Addrs()[i] != s.Addr() {
			t.Fatalf("server %d: id %d, addr %s", i, s.ID(), s.Addr())
		}
		for _, a := range []string{s.Addr(), s.DirectAddr()} {
			if seen[a] {
				t.Fatalf("address %s used twice", a)
			}
			seen[a] = true
		}
	}
	leader, err := e.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var followers []*Server
	for _, s := range servers {
		mode, err := s.Mode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if (s == leader) != (mode == "leader") || (s != leader && mode != "follower") {
			t.Fatalf("server %d: mode %q, leader is %d", s.ID(), mode, leader.ID())
		}
		if s != leader {
			followers = append(followers, s)
		}
	}

	c := connect(t, e.Addrs(), 6*time.Second)
	if _, err := c.Create("/ens", []byte("v1"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}

	// A follower goes away and comes back; the other two keep a quorum.
	f := followers[0]
	pid := f.PID()
	if err := f.Stop(); err != nil {
		t.Fatal(err)
	}
	if f.Running() || f.PID() != 0 || processAlive(pid) {
		t.Fatalf("server %d still running after Stop (pid %d)", f.ID(), pid)
	}
	if err := f.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := f.Mode(ctx); !errors.Is(err, ErrNotServing) {
		t.Fatalf("Mode of a stopped server: %v", err)
	}
	if err := e.WaitServing(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Set("/ens", []byte("v2"), -1); err != nil {
		t.Fatal(err)
	}
	if err := f.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.WaitServing(ctx); err != nil {
		t.Fatal(err)
	}
	if mode, err := f.Mode(ctx); err != nil || mode != "follower" {
		t.Fatalf("restarted server: Mode() = %q, %v", mode, err)
	}
	direct := connect(t, []string{f.Addr()}, 6*time.Second)
	if _, err := direct.Sync("/ens"); err != nil {
		t.Fatal(err)
	}
	if data, _, err := direct.Get("/ens"); err != nil || string(data) != "v2" {
		t.Fatalf("restarted follower serves %q, %v", data, err)
	}

	// Both followers go away: the leader loses its quorum and stops
	// serving. Its client port still accepts connections but closes each
	// one after the connect request.
	for _, s := range followers {
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "the leader to lose its quorum", func() bool {
		_, err := leader.Mode(ctx)
		return errors.Is(err, ErrNotServing)
	})
	raw := dial(t, leader.DirectAddr())
	if _, err := raw.Write(connectRequest{TimeOut: 6000, Passwd: make([]byte, 16)}.encode()); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, raw, 5*time.Second)
	if err := followers[0].Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitServing(ctx); err != nil {
		t.Fatal(err)
	}

	// The leader crashes: the remaining two elect a new one. The client
	// fails over to it.
	if err := followers[1].Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitServing(ctx); err != nil {
		t.Fatal(err)
	}
	pid = leader.PID()
	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	if processAlive(pid) {
		t.Fatalf("killed leader (pid %d) still alive", pid)
	}
	newLeader, err := e.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if newLeader == leader {
		t.Fatal("Leader() returned the killed server")
	}
	waitFor(t, 20*time.Second, "a write to succeed after failover", func() bool {
		_, err := c.Set("/ens", []byte("v3"), -1)
		return err == nil
	})
	if err := leader.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitServing(ctx); err != nil {
		t.Fatal(err)
	}
	if mode, err := leader.Mode(ctx); err != nil || mode != "follower" {
		t.Fatalf("old leader after restart: Mode() = %q, %v", mode, err)
	}
}

func TestCloseCleansUp(t *testing.T) {
	if testing.Short() {
		t.Skip("needs ZooKeeper")
	}
	ctx := testContext(t, time.Minute)
	e, err := Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := e.Server(0)
	pid, dir, proxyAddr := s.PID(), e.Dir(), s.Addr()
	if pid == 0 || !processAlive(pid) {
		t.Fatalf("pid %d not running", pid)
	}
	c := connect(t, e.Addrs(), 6*time.Second)
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitFor(t, 5*time.Second, "the client to lose its connection", func() bool { return !c.hasSession() })
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if processAlive(pid) || s.Running() {
		t.Errorf("server process %d survived Close", pid)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work directory %s not removed: %v", dir, err)
	}
	if conn, err := net.DialTimeout("tcp", proxyAddr, time.Second); err == nil {
		conn.Close()
		t.Error("proxy still listening after Close")
	}
	if err := s.Start(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v, want ErrClosed", err)
	}
	if err := e.WaitServing(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("WaitServing after Close: %v, want ErrClosed", err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("Stop after Close: %v", err)
	}
	if _, err := s.Mode(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Mode after Close: %v, want ErrClosed", err)
	}
	if err := s.WaitServing(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Server.WaitServing after Close: %v, want ErrClosed", err)
	}
	if _, err := e.Leader(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Leader after Close: %v, want ErrClosed", err)
	}
	if err := e.ExpireSession(ctx, c.SessionID()); !errors.Is(err, ErrClosed) {
		t.Errorf("ExpireSession after Close: %v, want ErrClosed", err)
	}
	if err := s.Pause(); !errors.Is(err, ErrClosed) {
		t.Errorf("Pause after Close: %v, want ErrClosed", err)
	}
	if _, err := e.NewLink(); !errors.Is(err, ErrClosed) {
		t.Errorf("NewLink after Close: %v, want ErrClosed", err)
	}
}

func TestStartOptions(t *testing.T) {
	if testing.Short() {
		t.Skip("needs ZooKeeper")
	}
	ctx := testContext(t, time.Minute)
	dir := filepath.Join(t.TempDir(), "work")
	var logs syncBuffer
	e, err := Start(ctx, WithDir(dir), WithTickTime(50*time.Millisecond), WithLogWriter(&logs), WithLogLevel("INFO"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if e.TickTime() != 50*time.Millisecond || e.Dir() != dir {
		t.Errorf("TickTime %v, Dir %s", e.TickTime(), e.Dir())
	}
	cfg, err := os.ReadFile(filepath.Join(dir, "zk1", "zoo.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tickTime=50\n", "minSessionTimeout=100\n", "maxSessionTimeout=60000\n", "clientPortAddress=127.0.0.1\n"} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("zoo.cfg lacks %q:\n%s", want, cfg)
		}
	}
	c := connect(t, e.Addrs(), 2*time.Second)
	if _, _, err := c.Exists("/"); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "zk1| ") {
		t.Errorf("log writer got no prefixed server output:\n%s", truncate(logs.String(), 500))
	}
	if _, err := os.Stat(filepath.Join(dir, "zk1", "zookeeper.log")); err != nil {
		t.Errorf("WithDir: log file not kept: %v", err)
	}
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestStartRetriesOnPortConflict(t *testing.T) {
	if testing.Short() {
		t.Skip("needs ZooKeeper")
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port

	calls := 0
	pickPorts = func(n int) ([]int, error) {
		calls++
		ports, err := freePorts(n)
		if calls == 1 && err == nil {
			ports[0] = takenPort // the client port of the first attempt is in use
		}
		return ports, err
	}
	defer func() { pickPorts = freePorts }()

	e := StartEnsemble(t)
	if calls != 2 {
		t.Errorf("ports were picked %d times, want 2 (one retry)", calls)
	}
	if strings.HasSuffix(e.Server(0).DirectAddr(), fmt.Sprintf(":%d", takenPort)) {
		t.Errorf("server uses the taken port %d", takenPort)
	}
}
