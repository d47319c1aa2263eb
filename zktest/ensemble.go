package zktest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Ensemble is a set of running ZooKeeper servers started by Start, each
// behind its own Proxy. Its methods are safe for concurrent use. Close it
// when done (StartEnsemble does so automatically).
type Ensemble struct {
	cfg     config
	inst    *installation
	dir     string
	ownsDir bool
	servers []*Server
	sink    *lockedWriter // the WithLogWriter destination, if any
	linkSet

	routes map[[2]int]*peerRoute // by (from, to) server id; nil when standalone
	peerMu sync.Mutex            // guards the servers' isolated flags

	closed    atomic.Bool
	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// startAttempts bounds how often Start retries with fresh ports when a port
// it picked was taken before the server could bind it.
const startAttempts = 3

// Start starts a ZooKeeper ensemble (by default a single standalone server)
// on 127.0.0.1, each server behind a fault-injecting Proxy, and returns once
// every server serves requests, that is once the quorum has formed. It
// returns an error if ctx ends first; everything started is then cleaned up.
//
// ZooKeeper is looked for in $ZOOKEEPER_HOME (its lib/*.jar and *.jar), then
// at /usr/share/java/zookeeper.jar (Debian's zookeeper package), then via a
// zkServer.sh on PATH; java in $JAVA_HOME/bin, then on PATH. When either is
// missing the error wraps ErrZooKeeperNotFound or ErrJavaNotFound and says
// how to install it.
func Start(ctx context.Context, opts ...Option) (*Ensemble, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	inst, err := findInstallation(osLookupEnv())
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("zktest: not starting ZooKeeper: %w", err)
	}

	e := &Ensemble{cfg: cfg, inst: inst, closing: make(chan struct{})}
	if cfg.logWriter != nil {
		e.sink = &lockedWriter{w: cfg.logWriter}
	}
	if err := e.setup(); err != nil {
		_ = e.Close()
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		err = e.startAll(ctx)
		if err == nil {
			return e, nil
		}
		e.killAll()
		if !errors.Is(err, errAddrInUse) || attempt >= startAttempts || ctx.Err() != nil {
			break
		}
	}
	_ = e.Close()
	return nil, err
}

// StartEnsemble is Start for tests: it allows two minutes for the ensemble
// to come up, fails the test with t.Fatal (from the calling goroutine) if it
// does not, and registers Close with t.Cleanup. The servers' logs are not
// shown while the test runs (unless WithLogWriter or ZKTEST_LOGS=1 says
// so); when the test has failed, the cleanup first logs the last lines of
// each server's log (see WithFailureLogLines and Ensemble.LogOnFailure).
func StartEnsemble(t testing.TB, opts ...Option) *Ensemble {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e, err := Start(ctx, opts...)
	if err != nil {
		t.Fatalf("zktest: could not start ZooKeeper: %v", err)
		return nil
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("zktest: closing ensemble: %v", err)
		}
	})
	e.logOnFailure(t, make([]int64, len(e.servers))) // runs before Close
	return e
}

// setup creates the work directory, the logging configuration and the
// servers with their proxies.
func (e *Ensemble) setup() error {
	if e.cfg.dir != "" {
		dir, err := filepath.Abs(e.cfg.dir)
		if err != nil {
			return fmt.Errorf("zktest: %w", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("zktest: creating work directory: %w", err)
		}
		e.dir = dir
	} else {
		dir, err := os.MkdirTemp("", "zktest-")
		if err != nil {
			return fmt.Errorf("zktest: creating work directory: %w", err)
		}
		e.dir, e.ownsDir = dir, true
	}
	if err := e.writeLogConfigs(); err != nil {
		return err
	}
	for id := 1; id <= e.cfg.servers; id++ {
		dir := filepath.Join(e.dir, fmt.Sprintf("zk%d", id))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("zktest: %w", err)
		}
		p, err := newGatedProxy("127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("zktest: starting the proxy of server %d: %w", id, err)
		}
		e.servers = append(e.servers, &Server{
			ens:     e,
			id:      id,
			dir:     dir,
			dataDir: filepath.Join(dir, "data"),
			cfgPath: filepath.Join(dir, "zoo.cfg"),
			logPath: filepath.Join(dir, "zookeeper.log"),
			proxy:   p,
			tail:    newTailBuffer(64 << 10),
		})
	}
	return e.setupRoutes()
}

// writeLogConfigs writes configuration files for the logging backends a
// ZooKeeper installation may use, so that the log level applies whichever
// it is (slf4j-simple is configured with system properties instead).
func (e *Ensemble) writeLogConfigs() error {
	level := strings.ToUpper(e.cfg.logLevel)
	logback := `<configuration>
  <appender name="STDERR" class="ch.qos.logback.core.ConsoleAppender">
    <target>System.err</target>
    <encoder><pattern>%d{HH:mm:ss.SSS} [%thread] %-5level %logger{1} - %msg%n</pattern></encoder>
  </appender>
  <root level="` + level + `"><appender-ref ref="STDERR"/></root>
</configuration>
`
	log4j := "log4j.rootLogger=" + level + ", STDERR\n" +
		"log4j.appender.STDERR=org.apache.log4j.ConsoleAppender\n" +
		"log4j.appender.STDERR.Target=System.err\n" +
		"log4j.appender.STDERR.layout=org.apache.log4j.PatternLayout\n" +
		"log4j.appender.STDERR.layout.ConversionPattern=%d{HH:mm:ss,SSS} [%t] %-5p %c{1} - %m%n\n"
	if err := os.WriteFile(filepath.Join(e.dir, "logback.xml"), []byte(logback), 0o644); err != nil {
		return fmt.Errorf("zktest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "log4j.properties"), []byte(log4j), 0o644); err != nil {
		return fmt.Errorf("zktest: %w", err)
	}
	return nil
}

// startAll picks ports, writes configurations, launches every server and
// waits until all serve.
func (e *Ensemble) startAll(ctx context.Context) error {
	ports, err := pickPorts(3 * len(e.servers))
	if err != nil {
		return fmt.Errorf("zktest: choosing ports: %w", err)
	}
	for i, s := range e.servers {
		if err := s.prepare(ports[3*i], ports[3*i+1], ports[3*i+2]); err != nil {
			return err
		}
		s.proxy.setTarget(s.DirectAddr())
	}
	e.retargetRoutes()
	for _, s := range e.servers {
		if err := s.writeConfig(); err != nil {
			return err
		}
	}
	for _, s := range e.servers {
		s.mu.Lock()
		var err error
		if e.isClosed() {
			err = ErrClosed
		} else {
			_, err = s.launchLocked()
		}
		s.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return e.waitStartup(ctx)
}

// waitStartup waits until every server serves, failing early when one
// exits or reports a port conflict.
func (e *Ensemble) waitStartup(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		serving := 0
		var status []string
		for _, s := range e.servers {
			p := s.current()
			if p.exited() {
				return s.exitError(p, "exited during startup")
			}
			if s.tail.contains(addrInUseText) {
				return fmt.Errorf("zktest: server %d could not bind a port (%w)\n%s", s.id, errAddrInUse, s.logExcerpt(20))
			}
			if _, err := s.modeWhileAlive(ctx, p); err != nil {
				status = append(status, err.Error())
			} else {
				serving++
			}
		}
		if serving == len(e.servers) {
			return nil
		}
		select {
		case <-ctx.Done():
			var b strings.Builder
			fmt.Fprintf(&b, "zktest: ZooKeeper (%d server(s), from %s) did not start serving: %v", len(e.servers), e.inst.source, ctx.Err())
			for _, st := range status {
				b.WriteString("\n" + st)
			}
			for _, s := range e.servers {
				b.WriteString("\n" + s.logExcerpt(20))
			}
			return fmt.Errorf("%s%w", b.String(), noText{ctx.Err()})
		case <-e.closing:
			return ErrClosed
		case <-tick.C:
		}
	}
}

// noText wraps an error for errors.Is/As without adding to the message.
type noText struct{ err error }

func (n noText) Error() string { return "" }
func (n noText) Unwrap() error { return n.err }

// pickPorts chooses ports for the servers; tests replace it.
var pickPorts = freePorts

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (e *Ensemble) isClosed() bool { return e.closed.Load() }

// killAll kills every server process.
func (e *Ensemble) killAll() []error {
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range e.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Kill(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}

// Servers returns the servers in id order.
func (e *Ensemble) Servers() []*Server { return append([]*Server(nil), e.servers...) }

// Server returns the i-th server, 0-based (its ID is i+1), or nil when i is
// out of range.
func (e *Ensemble) Server(i int) *Server {
	if i < 0 || i >= len(e.servers) {
		return nil
	}
	return e.servers[i]
}

// Addrs returns the proxy addresses ("127.0.0.1:port") of the servers in
// server order. Clients should connect to these.
func (e *Ensemble) Addrs() []string {
	addrs := make([]string, len(e.servers))
	for i, s := range e.servers {
		addrs[i] = s.Addr()
	}
	return addrs
}

// ConnectString returns the proxy addresses joined by commas, the form
// ZooKeeper clients take.
func (e *Ensemble) ConnectString() string { return strings.Join(e.Addrs(), ",") }

// TickTime returns the servers' tickTime.
func (e *Ensemble) TickTime() time.Duration { return e.cfg.tick }

// SyncLimit returns the servers' syncLimit, in ticks (see WithSyncLimit).
func (e *Ensemble) SyncLimit() int { return e.cfg.syncLimit }

// Dir returns the work directory.
func (e *Ensemble) Dir() string { return e.dir }

// Leader returns the server that currently leads the ensemble: the one whose
// "srvr" answer says "Mode: leader" (for a single standalone server, that
// server). While there is no leader, for instance during an election, it
// keeps asking until ctx ends.
func (e *Ensemble) Leader(ctx context.Context) (*Server, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if e.isClosed() {
			return nil, ErrClosed
		}
		var status []string
		for _, s := range e.servers {
			mode, err := s.Mode(ctx)
			switch {
			case err != nil:
				status = append(status, err.Error())
			case mode == "leader" || mode == "standalone":
				return s, nil
			default:
				status = append(status, fmt.Sprintf("server %d: %s", s.id, mode))
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("zktest: no leader: %w (%s)", ctx.Err(), strings.Join(status, "; "))
		case <-e.closing:
			return nil, ErrClosed
		case <-tick.C:
		}
	}
}

// WaitServing waits until every running server serves requests (answers
// "srvr" with a Mode line), which for an ensemble means a quorum has formed
// and every running server has joined it. Stopped and paused servers are
// ignored (a server isolated from its peers is not: it is waited for until
// it rejoins); it fails if none is running unpaused.
func (e *Ensemble) WaitServing(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if e.isClosed() {
			return ErrClosed
		}
		running, serving := 0, 0
		var status []string
		for _, s := range e.servers {
			if !s.Running() || s.Paused() {
				continue
			}
			running++
			if _, err := s.Mode(ctx); err != nil {
				status = append(status, err.Error())
			} else {
				serving++
			}
		}
		if running == 0 {
			return fmt.Errorf("%w: no server is running", ErrNotServing)
		}
		if serving == running {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("zktest: waiting for servers to serve: %w (%s)", ctx.Err(), strings.Join(status, "; "))
		case <-e.closing:
			return ErrClosed
		case <-tick.C:
		}
	}
}

// ExpireSession makes the ensemble expire a client session now, without
// waiting for its timeout. The session must have been established through
// one of the ensemble's proxies or Links, which recorded its password.
// The proxied connections that carry the session are closed and the
// client's reconnects held, so that it cannot take the session back; the
// session is then resumed on a direct connection to a running server and
// closed there, which deletes its ephemeral nodes; then the client's held
// reconnects go through and are told that its session has expired.
// Expiring a session that is already gone is not an error.
func (e *Ensemble) ExpireSession(ctx context.Context, sessionID int64) error {
	if e.isClosed() {
		return ErrClosed
	}
	var passwd []byte
	found := false
	proxies := make([]*Proxy, 0, len(e.servers))
	for _, s := range e.servers {
		proxies = append(proxies, s.proxy)
	}
	for _, l := range e.linkList() {
		proxies = append(proxies, l.proxies...)
	}
	for _, p := range proxies {
		if passwd, found = p.sessionPassword(sessionID); found {
			break
		}
	}
	if !found {
		return fmt.Errorf("zktest: cannot expire session 0x%x: no proxy saw it established (connect clients to a Link, Ensemble.ConnectString or Server.Addr)", sessionID)
	}
	for _, p := range proxies {
		defer p.holdSession(sessionID)()
	}
	for _, p := range proxies {
		p.dropSession(sessionID)
	}
	var errs []error
	for _, s := range e.servers {
		if !s.Running() || s.Paused() {
			continue
		}
		_, err := closeSession(ctx, s.DirectAddr(), sessionID, passwd)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("server %d: %w", s.id, err))
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return fmt.Errorf("zktest: cannot expire session 0x%x: no server is running", sessionID)
	}
	return fmt.Errorf("zktest: cannot expire session 0x%x: %w", sessionID, errors.Join(errs...))
}

// Close kills every server, closes the proxies (and with them all proxied
// connections), waits for all of the package's goroutines and processes to
// end, and removes the work directory if Start created it. It is idempotent
// and safe to call concurrently; later calls return the first call's result.
func (e *Ensemble) Close() error {
	e.closeOnce.Do(func() {
		e.closed.Store(true)
		close(e.closing)
		errs := e.killAll()
		for _, l := range e.linkList() {
			if err := l.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		for _, s := range e.servers {
			if err := s.proxy.close(); err != nil {
				errs = append(errs, fmt.Errorf("zktest: closing the proxy of server %d: %w", s.id, err))
			}
		}
		errs = append(errs, e.closeRoutes()...)
		if e.ownsDir && e.dir != "" {
			if err := os.RemoveAll(e.dir); err != nil {
				errs = append(errs, fmt.Errorf("zktest: removing work directory: %w", err))
			}
		}
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}
