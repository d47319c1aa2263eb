package resilience

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/zkrecipes/zkrecipes/internal/feed"
)

// Session owns one ZooKeeper session at a time (a *zk.Conn underneath) and
// is the only thing recipes talk to. It is safe for concurrent use. Create
// one with Connect; release it with Close.
type Session struct {
	cfg     config
	servers []string
	log     *slog.Logger
	tel     *telemetry

	inbox       *feed.Queue[item] // session events for the machine; never blocks zk's callback
	closeOnce   sync.Once
	closing     chan struct{}
	machineDone chan struct{}

	lifeMu  sync.RWMutex // guards shut against wg.Add racing wg.Wait
	shut    bool
	wg      sync.WaitGroup // tasks started with goTracked
	workers sync.WaitGroup // goroutines that run those tasks
	work    chan func()    // hands a task to an idle worker

	snap atomic.Pointer[snapshot]

	lastConnErr atomic.Pointer[error] // the latest dial or handshake failure

	mu        sync.Mutex // guards last, subs, listeners, nodeListeners, steps
	last      Transition // the latest published transition (To is the state now)
	subs      map[*feed.Queue[Transition]]struct{}
	listeners map[uint64]func(Transition)

	nodeListeners    map[uint64]func(zk.Event)
	hasNodeListeners atomic.Bool
	nodeInbox        *feed.Queue[item]
	nodeDone         chan struct{}
	steps            map[uint64]*rebuildStep
	nextID           uint64

	// testHookTry, set only by tests, runs before each try of an operation.
	testHookTry func(*snapshot)
	// testHookProbed, set only by tests, runs when a liveness probe has its
	// answer, before the probe is marked done.
	testHookProbed atomic.Pointer[func(error)]

	// Owned by the machine goroutine.
	gen           *generation
	genSeq        uint64
	lostSessionID int64
	rebuildCancel context.CancelCauseFunc
}

// snapshot is an immutable view of the session, replaced on every
// transition; changed is closed when it is replaced.
type snapshot struct {
	state   State
	sid     int64
	gen     *generation
	server  string
	changed chan struct{}
	// published is closed once listeners and subscribers have the
	// transition that made this snapshot.
	published chan struct{}
}

// generation is one *zk.Conn. A Session replaces its conn only to abandon
// a presumed-lost session that turned out to be alive.
type generation struct {
	id       uint64
	conn     *zk.Conn
	events   <-chan zk.Event
	info     connInfo
	retired  chan struct{}
	authDone bool  // machine-owned
	parked   *item // machine-owned: a HasSession waiting for auth
}

// Connect opens a session to the given servers ("host:port" entries, or
// comma-separated connect strings) and returns once the ensemble has granted
// the first session, or ctx ends. Without a deadline on ctx it waits as long
// as no server answers. When ctx ends first, the error names the servers,
// how long Connect waited and the latest dial or handshake failure
// ("resilience: connect to [...]: no session within 10s: last error: dial
// tcp ...: connection refused"), and wraps both ctx.Err() and that failure.
func Connect(ctx context.Context, servers []string, opts ...Option) (*Session, error) {
	start := time.Now() // the wait a connect error names counts from here
	cfg := defaultConfig()
	for i, o := range opts {
		if o == nil {
			cfg.reject("option %d is nil", i)
			continue
		}
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	srvs, err := parseServers(servers)
	if err != nil {
		return nil, err
	}
	tel, err := newTelemetry(cfg.tracerProvider, cfg.meterProvider)
	if err != nil {
		return nil, fmt.Errorf("resilience: telemetry: %w", err)
	}
	s := &Session{
		cfg:         cfg,
		servers:     srvs,
		log:         cfg.logger,
		tel:         tel,
		closing:     make(chan struct{}),
		machineDone: make(chan struct{}),
		subs:        make(map[*feed.Queue[Transition]]struct{}),
		inbox:       feed.New[item](),
		listeners:   make(map[uint64]func(Transition)),
		steps:       make(map[uint64]*rebuildStep),
		work:        make(chan func()),

		nodeListeners: make(map[uint64]func(zk.Event)),
		nodeInbox:     feed.New[item](),
		nodeDone:      make(chan struct{}),
	}
	s.last = Transition{From: Connecting, To: Connecting, Time: time.Now(), Timeout: cfg.sessionTimeout}
	first := &snapshot{state: Connecting, changed: make(chan struct{}), published: make(chan struct{})}
	close(first.published) // nothing to tell listeners about
	s.snap.Store(first)
	if err := s.dial(); err != nil {
		return nil, fmt.Errorf("resilience: connect: %w", err)
	}
	go s.run()
	go s.dispatchNodeEvents()

	for {
		sn := s.snap.Load()
		if sn.state.HasSession() {
			// Return only once the first Connected is published, so that a
			// listener or subscriber added now sees only what comes after.
			<-sn.published
			return s, nil
		}
		select {
		case <-ctx.Done():
			s.Close()
			return nil, s.connectError(ctx, srvs, start)
		case <-sn.changed:
		}
	}
}

// connectError is Connect's error when ctx ends before the first session:
// it names the servers, how long Connect waited, and the latest dial or
// handshake failure, and wraps both that failure and ctx.Err().
func (s *Session) connectError(ctx context.Context, srvs []string, start time.Time) error {
	waited := time.Since(start)
	if d, ok := ctx.Deadline(); ok {
		waited = d.Sub(start)
	}
	err := &connectError{servers: srvs, waited: waited.Round(time.Millisecond), ctxErr: ctx.Err()}
	if last := s.lastConnErr.Load(); last != nil {
		err.last = *last
	}
	return err
}

type connectError struct {
	servers      []string
	waited       time.Duration
	last, ctxErr error
}

func (e *connectError) Error() string {
	msg := fmt.Sprintf("resilience: connect to %v: no session within %v", e.servers, e.waited)
	if !errors.Is(e.ctxErr, context.DeadlineExceeded) {
		msg = fmt.Sprintf("resilience: connect to %v: %v after %v without a session", e.servers, e.ctxErr, e.waited)
	}
	if e.last != nil {
		return msg + ": last error: " + e.last.Error()
	}
	return msg
}

// Unwrap returns the context's error and the last dial or handshake error.
func (e *connectError) Unwrap() []error {
	if e.last == nil {
		return []error{e.ctxErr}
	}
	return []error{e.ctxErr, e.last}
}

// Close ends the session: the ensemble deletes its ephemeral nodes at once,
// subscribers receive a final transition to Closed, and every later call
// returns ErrClosed. Close is idempotent and waits for the session's
// goroutines to end.
func (s *Session) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	<-s.machineDone
	<-s.nodeDone
	s.lifeMu.Lock()
	s.shut = true
	s.lifeMu.Unlock()
	s.wg.Wait()
	s.workers.Wait()
	return nil
}

// State returns the current state.
func (s *Session) State() State { return s.snap.Load().state }

// SessionID returns the current session id, 0 while there is none (Lost,
// Connecting, Closed). While Suspended it is the id of the session that may
// still be alive.
func (s *Session) SessionID() int64 { return s.snap.Load().sid }

// Server returns the server the session is, or was last, connected to.
func (s *Session) Server() string { return s.snap.Load().server }

// Timeout returns the session timeout negotiated with the ensemble (the
// requested one until a server has answered).
func (s *Session) Timeout() time.Duration {
	if g := s.snap.Load().gen; g != nil {
		if t := g.info.timeout.Load(); t > 0 {
			return time.Duration(t)
		}
	}
	return s.cfg.sessionTimeout
}

// SafeUntil returns a moment before which the ensemble cannot have expired
// the session, as far as the client can prove: the latest contact that the
// ensemble's leader (which expires sessions) provably heard of, plus the
// negotiated timeout, less a twentieth of the timeout for timer and
// scheduling delays. While the session is usable it moves forward with
// every answered liveness probe (about T/3 behind the latest one, see
// docs/state-machine.md); while Suspended it stands still. A holder that
// keeps holding through a suspension must stop by then. It returns the
// zero time when there is no session (Connecting, Lost, Closed).
//
// The bound assumes the client's and the servers' clocks run at the same
// rate and that this process is not paused between reading the bound and
// acting on it; see docs/fencing.md for what no client-side rule covers.
func (s *Session) SafeUntil() time.Time {
	sn := s.snap.Load()
	if sn.gen == nil || !(sn.state.HasSession() || sn.state == Suspended) {
		return time.Time{}
	}
	return safeUntil(&sn.gen.info, 1)
}

// safeUntil is the leader-acknowledged time plus fraction x the timeout,
// less the margin; zero if the leader has acknowledged nothing yet.
func safeUntil(info *connInfo, fraction float64) time.Time {
	leader := info.leaderAt.Load()
	if leader == 0 {
		return time.Time{}
	}
	t := info.limit()
	return time.Unix(0, leader).Add(time.Duration(float64(t)*fraction) - t/20)
}

// ACL returns the default ACL used for creates given a nil ACL.
func (s *Session) ACL() []zk.ACL { return s.cfg.acl }

// Logger returns the session's logger, for recipes built on it.
func (s *Session) Logger() *slog.Logger { return s.log }

// TracerProvider returns the session's tracer provider, for recipes built on it.
func (s *Session) TracerProvider() trace.TracerProvider { return s.cfg.tracerProvider }

// MeterProvider returns the session's meter provider, for recipes built on it.
func (s *Session) MeterProvider() metric.MeterProvider { return s.cfg.meterProvider }

// WaitState blocks until the session is in one of the given states, or ctx
// ends, or the session closes (ErrClosed, unless Closed is among states).
// It returns once every listener has seen the transition to that state, so
// leases, terms and caches have already reacted to it. Do not call it from
// a listener.
func (s *Session) WaitState(ctx context.Context, states ...State) error {
	for {
		sn := s.snap.Load()
		for _, st := range states {
			if sn.state == st {
				select {
				case <-sn.published:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		if sn.state == Closed {
			return ErrClosed
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sn.changed:
		}
	}
}

// goTracked runs fn on another goroutine and Close waits for it; it
// reports false (and does not run fn) once Close has begun waiting. Idle
// goroutines are reused: a fresh goroutine per request would grow its stack
// through go-zookeeper/zk's call path every time, which costs more than the
// request's own client-side work.
func (s *Session) goTracked(fn func()) bool {
	s.lifeMu.RLock()
	defer s.lifeMu.RUnlock()
	if s.shut {
		return false
	}
	s.wg.Add(1)
	select {
	case s.work <- fn:
	default:
		s.workers.Add(1)
		go s.worker(fn)
	}
	return true
}

func (s *Session) worker(fn func()) {
	defer s.workers.Done()
	for {
		fn()
		s.wg.Done()
		select {
		case fn = <-s.work:
		case <-s.closing:
			return
		}
	}
}

// dial opens a new *zk.Conn generation. Called by Connect before the machine
// starts, and by the machine afterwards.
func (s *Session) dial() error {
	s.genSeq++
	g := &generation{id: s.genSeq, retired: make(chan struct{}), authDone: len(s.cfg.auth) == 0}
	g.info.requested = s.cfg.sessionTimeout
	g.info.note = func(err error) { s.lastConnErr.Store(&err) }
	conn, events, err := zk.Connect(s.servers, s.cfg.sessionTimeout,
		zk.WithDialer(sniffingDialer(s.cfg.dialer, &g.info)),
		zk.WithHostProvider(&hostList{info: &g.info, quit: []<-chan struct{}{g.retired, s.closing}}),
		zk.WithEventCallback(func(ev zk.Event) {
			if ev.Type != zk.EventSession {
				if s.hasNodeListeners.Load() {
					s.nodeInbox.Push(item{gen: g, ev: ev})
				}
				return
			}
			// The callback runs on the connection's goroutine right after
			// the handshake, so the sniffed session id belongs to this event.
			s.inbox.Push(item{gen: g, ev: ev, sid: g.info.sessionID.Load(), at: time.Now()})
		}),
		zk.WithLogger(zkLogger{s.log}),
		zk.WithLogInfo(false),
	)
	if err != nil {
		return err
	}
	g.conn, g.events = conn, events
	s.gen = g
	if !g.authDone && !s.goTracked(func() { s.authenticate(g) }) {
		g.authDone = true
	}
	s.goTracked(func() { s.probe(g) })
	return nil
}

// authenticate adds the configured credentials to a new connection before
// its first session is reported; go-zookeeper/zk re-sends them ahead of any
// request on every later reconnect and new session of that connection.
func (s *Session) authenticate(g *generation) {
	for _, c := range s.cfg.auth {
		b := s.newBackoff()
		for {
			err := g.conn.AddAuth(c.scheme, c.auth)
			if err == nil {
				break
			}
			select {
			case <-g.retired:
				return
			case <-s.closing:
				return
			default:
			}
			if !isConnLoss(err) {
				s.log.Error("zookeeper: adding credentials failed", "scheme", c.scheme, "error", err)
				break
			}
			if b.wait(context.Background(), s.closing) != nil {
				return
			}
		}
	}
	s.inbox.Push(item{gen: g, authDone: true, at: time.Now()})
}

// retire closes a generation's conn in the background. If that conn holds a
// live session, the ensemble deletes the session and its ephemerals now.
func (s *Session) retire(g *generation) {
	close(g.retired)
	if !s.goTracked(func() { closeConn(g) }) {
		closeConn(g)
	}
}

func closeConn(g *generation) {
	g.conn.Close()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case _, ok := <-g.events:
			if !ok {
				return
			}
		case <-t.C:
			return
		}
	}
}

type zkLogger struct{ l *slog.Logger }

func (z zkLogger) Printf(format string, args ...any) {
	if z.l.Enabled(context.Background(), slog.LevelDebug) {
		z.l.Debug(fmt.Sprintf(format, args...), "component", "go-zookeeper")
	}
}
