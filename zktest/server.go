package zktest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server is one ZooKeeper server process of an Ensemble together with the
// Proxy in front of it. Its methods are safe for concurrent use.
type Server struct {
	ens     *Ensemble
	id      int
	dir     string // <work dir>/zk<id>
	dataDir string
	cfgPath string
	logPath string
	proxy   *Proxy
	tail    *tailBuffer

	mu           sync.Mutex
	clientPort   int
	peerPort     int
	electionPort int
	proc         *process

	isolated bool // from its peers; guarded by ens.peerMu
}

// process is one run of a server's JVM.
type process struct {
	cmd  *exec.Cmd
	pid  int
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // exit status; read only after done

	sigMu  sync.Mutex // orders Pause, Resume and the ending signals
	paused bool       // stopped with SIGSTOP and not continued since
}

func (p *process) isPaused() bool {
	p.sigMu.Lock()
	defer p.sigMu.Unlock()
	return p.paused && !p.exited()
}

// resumeLocked continues a paused process. p.sigMu must be held.
func (p *process) resumeLocked() error {
	if !p.paused {
		return nil
	}
	if err := continueProcess(p.cmd.Process); err != nil && !p.exited() {
		return err
	}
	p.paused = false
	return nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to exit and waits, killing it after grace.
func (p *process) stop(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	p.sigMu.Lock()
	terminate(p.cmd.Process)
	// A stopped process acts on SIGTERM only once continued.
	_ = p.resumeLocked()
	p.sigMu.Unlock()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	return p.kill()
}

// kill kills the process and waits for it to be reaped.
func (p *process) kill() error {
	if p.exited() {
		return nil
	}
	p.sigMu.Lock()
	kill(p.cmd.Process)
	_ = p.resumeLocked() // SIGKILL ends a stopped process too; tidy up anyway
	p.sigMu.Unlock()
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
		return fmt.Errorf("zktest: process %d did not exit within 30s of SIGKILL", p.pid)
	}
}

// ID returns the server's id (its myid), starting at 1.
func (s *Server) ID() int { return s.id }

// Addr returns the address of the server's proxy, "127.0.0.1:port". Clients
// should connect here so that faults can be injected.
func (s *Server) Addr() string { return s.proxy.Addr() }

// DirectAddr returns the server's real client address, bypassing the proxy.
// It stays the same across Stop and Start.
func (s *Server) DirectAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.clientPort))
}

// Proxy returns the fault-injecting proxy in front of the server.
func (s *Server) Proxy() *Proxy { return s.proxy }

// LogPath returns the server's log file (its captured stdout and stderr).
// It lives in the work directory, so Close deletes it unless WithDir was
// used.
func (s *Server) LogPath() string { return s.logPath }

// PID returns the process id of the server's JVM, or 0 when it is not
// running.
func (s *Server) PID() int {
	if p := s.current(); p != nil && !p.exited() {
		return p.pid
	}
	return 0
}

// Running reports whether the server's process is running (which does not
// mean it is serving requests; see Mode and WaitServing).
func (s *Server) Running() bool {
	p := s.current()
	return p != nil && !p.exited()
}

func (s *Server) current() *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

// Stop shuts the server down gracefully: it sends SIGTERM and waits for the
// process to exit, sending SIGKILL after 5 seconds. Stopping a server that
// is not running does nothing.
func (s *Server) Stop() error {
	if p := s.current(); p != nil {
		return p.stop(5 * time.Second)
	}
	return nil
}

// Kill kills the server with SIGKILL, as a crash would, and waits for the
// process to exit. Killing a server that is not running does nothing.
func (s *Server) Kill() error {
	if p := s.current(); p != nil {
		return p.kill()
	}
	return nil
}

// Pause suspends the server's process with SIGSTOP, as a long garbage
// collection pause, a hung disk or an overloaded machine would: its
// connections stay open and the kernel still completes new TCP connections
// to its ports (up to the listen backlog), but nothing is read, answered or
// sent, to clients or to peers, until Resume. Its clients see silence, and
// its peers time out on it after syncLimit ticks (see WithSyncLimit): the
// others elect a new leader if it led, and keep serving if they are a
// quorum. While paused, Mode reports it as not serving (without asking it)
// and Ensemble.WaitServing does not wait for it.
//
// Pausing a paused server does nothing. Stop, Kill and the ensemble's Close
// work on a paused server (they continue it as they signal it to end). It
// returns an error wrapping ErrNotServing when the server is not running,
// ErrClosed after Close, and errors.ErrUnsupported where there are no POSIX
// signals.
func (s *Server) Pause() error {
	if s.ens.isClosed() {
		return ErrClosed
	}
	p := s.current()
	if p == nil || p.exited() {
		return &notServingError{id: s.id, reason: "process is not running"}
	}
	p.sigMu.Lock()
	defer p.sigMu.Unlock()
	if p.paused || p.exited() {
		return nil
	}
	if err := stopProcess(p.cmd.Process); err != nil {
		if p.exited() {
			return &notServingError{id: s.id, reason: "process is not running"}
		}
		return fmt.Errorf("zktest: pausing server %d: %w", s.id, err)
	}
	p.paused = true
	return nil
}

// Resume continues a server paused by Pause with SIGCONT. It picks up where
// it stopped; what it finds (connections its clients or peers gave up on,
// a new leader) it handles as after any pause. Resuming a server that is
// not paused, or not running, does nothing.
func (s *Server) Resume() error {
	p := s.current()
	if p == nil {
		return nil
	}
	p.sigMu.Lock()
	defer p.sigMu.Unlock()
	if err := p.resumeLocked(); err != nil {
		return fmt.Errorf("zktest: resuming server %d: %w", s.id, err)
	}
	return nil
}

// Paused reports whether the server's process is paused (between Pause and
// Resume, Stop or Kill).
func (s *Server) Paused() bool {
	p := s.current()
	return p != nil && p.isPaused()
}

// Start restarts a stopped server with the same configuration, ports and
// data directory. It returns once the process is up and its client port
// accepts TCP connections; the server is then not necessarily serving
// requests, since in an ensemble it may first have to find a quorum (use
// WaitServing for that). Starting a running server does nothing. If ctx ends
// first, the new process is killed and ctx's error returned.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.ens.isClosed() {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.proc != nil && !s.proc.exited() {
		s.mu.Unlock()
		return nil
	}
	p, err := s.launchLocked()
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if err := s.waitPort(ctx, p); err != nil {
		_ = p.kill()
		return err
	}
	return nil
}

// waitPort waits until the client port of process p accepts connections.
func (s *Server) waitPort(ctx context.Context, p *process) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	addr := s.DirectAddr()
	for {
		select {
		case <-p.done:
			return s.exitError(p, "exited while starting")
		default:
		}
		d := net.Dialer{Timeout: 500 * time.Millisecond}
		if c, err := d.DialContext(ctx, "tcp", addr); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("zktest: server %d: client port %s not accepting connections: %w", s.id, addr, ctx.Err())
		case <-s.ens.closing:
			return ErrClosed
		case <-p.done:
			return s.exitError(p, "exited while starting")
		case <-tick.C:
		}
	}
}

// errAddrInUse marks startup failures caused by a port taken by someone
// else between choosing it and the server binding it.
var errAddrInUse = errors.New("address already in use")

const addrInUseText = "Address already in use"

// exitError describes an unexpected exit of p, with the end of its log.
func (s *Server) exitError(p *process, what string) error {
	<-p.done
	err := fmt.Errorf("zktest: server %d (pid %d) %s: %v\n%s", s.id, p.pid, what, p.err, s.logExcerpt(40))
	if s.tail.contains(addrInUseText) {
		err = fmt.Errorf("%w (%w)", err, errAddrInUse)
	}
	return err
}

// logExcerpt returns the last lines of the server's output for messages.
// The log file is named only when it outlives Close (see WithDir).
func (s *Server) logExcerpt(lines int) string {
	where := ""
	if !s.ens.ownsDir {
		where = " (" + s.logPath + ")"
	}
	t := cutLines(s.tail.lastLines(lines), maxLogLine)
	if strings.TrimSpace(t) == "" {
		return fmt.Sprintf("(server %d wrote no output%s)", s.id, where)
	}
	return fmt.Sprintf("--- last lines of server %d output%s ---\n%s--- end of server %d output ---", s.id, where, t, s.id)
}

// WaitServing waits until the server serves requests, that is until it
// answers the "srvr" command on its direct address with a Mode line. It
// fails at once if the server is not running (ErrNotServing) or the
// ensemble is closed (ErrClosed).
func (s *Server) WaitServing(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.ens.isClosed() {
			return ErrClosed
		}
		p := s.current()
		if p == nil || p.exited() {
			return &notServingError{id: s.id, reason: "process is not running"}
		}
		_, err := s.modeWhileAlive(ctx, p)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("zktest: server %d did not start serving: %w (last status: %v)", s.id, ctx.Err(), err)
		case <-s.ens.closing:
			return ErrClosed
		case <-tick.C:
		}
	}
}

// modeWhileAlive is Mode, abandoned as soon as process p exits (the port
// may then belong to someone else, who may never answer).
func (s *Server) modeWhileAlive(ctx context.Context, p *process) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return s.Mode(ctx)
}

// Mode asks the server (on its direct address, bypassing the proxy) for its
// role with the "srvr" command and returns "leader", "follower" or
// "standalone" (or "observer", "read-only"). When the server is not
// serving, for instance because it is stopped or has no quorum, the error
// wraps ErrNotServing. After the ensemble's Close it returns ErrClosed.
func (s *Server) Mode(ctx context.Context) (string, error) {
	if s.ens.isClosed() {
		return "", ErrClosed
	}
	if !s.Running() {
		return "", &notServingError{id: s.id, reason: "process is not running"}
	}
	if s.Paused() {
		return "", &notServingError{id: s.id, reason: "process is paused"}
	}
	out, err := fourLetterWord(ctx, s.DirectAddr(), "srvr")
	if err != nil {
		return "", &notServingError{id: s.id, reason: "srvr: " + err.Error()}
	}
	mode, err := parseMode(out)
	if err != nil {
		return "", &notServingError{id: s.id, reason: err.Error()}
	}
	return mode, nil
}

type notServingError struct {
	id     int
	reason string
}

func (e *notServingError) Error() string {
	return fmt.Sprintf("zktest: server %d is not serving requests: %s", e.id, e.reason)
}

func (e *notServingError) Is(target error) bool { return target == ErrNotServing }

// prepare (re)creates the server's configuration and an empty data
// directory for a fresh start with the given ports.
func (s *Server) prepare(clientPort, peerPort, electionPort int) error {
	s.mu.Lock()
	s.clientPort, s.peerPort, s.electionPort = clientPort, peerPort, electionPort
	s.mu.Unlock()
	if err := os.RemoveAll(s.dataDir); err != nil {
		return fmt.Errorf("zktest: clearing data directory: %w", err)
	}
	if err := os.MkdirAll(s.dataDir, 0o755); err != nil {
		return fmt.Errorf("zktest: %w", err)
	}
	if len(s.ens.servers) > 1 {
		if err := os.WriteFile(filepath.Join(s.dataDir, "myid"), []byte(strconv.Itoa(s.id)+"\n"), 0o644); err != nil {
			return fmt.Errorf("zktest: writing myid: %w", err)
		}
	}
	if err := os.WriteFile(s.logPath, nil, 0o644); err != nil {
		return fmt.Errorf("zktest: creating log file: %w", err)
	}
	s.tail.reset()
	return nil
}

// writeConfig writes zoo.cfg; it needs every server's ports to be set.
func (s *Server) writeConfig() error {
	e := s.ens
	tick := e.cfg.tick.Milliseconds()
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by zktest for server %d.\n", s.id)
	fmt.Fprintf(&b, "tickTime=%d\n", tick)
	fmt.Fprintf(&b, "initLimit=%d\nsyncLimit=%d\n", max(50, e.cfg.syncLimit), e.cfg.syncLimit)
	fmt.Fprintf(&b, "dataDir=%s\n", s.dataDir)
	s.mu.Lock()
	fmt.Fprintf(&b, "clientPort=%d\n", s.clientPort)
	s.mu.Unlock()
	b.WriteString("clientPortAddress=127.0.0.1\n")
	fmt.Fprintf(&b, "minSessionTimeout=%d\n", 2*tick)
	b.WriteString("maxSessionTimeout=60000\n")
	b.WriteString("maxClientCnxns=0\n") // all clients come from 127.0.0.1 via the proxy
	b.WriteString("admin.enableServer=false\n")
	b.WriteString("4lw.commands.whitelist=*\n")
	b.WriteString("reconfigEnabled=false\n")
	b.WriteString("preAllocSize=1024\n")
	b.WriteString("snapCount=100000\n")
	b.WriteString("autopurge.purgeInterval=0\n")
	if len(e.servers) > 1 {
		b.WriteString("standaloneEnabled=false\n")
		// Each server names itself at its real ports and every other
		// server at the route to it (see peerRoute).
		for _, o := range e.servers {
			quorum, election := s.peerAddrs(o)
			_, qport, _ := net.SplitHostPort(quorum)
			_, eport, _ := net.SplitHostPort(election)
			fmt.Fprintf(&b, "server.%d=127.0.0.1:%s:%s\n", o.id, qport, eport)
		}
	}
	if err := os.WriteFile(s.cfgPath, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("zktest: writing %s: %w", s.cfgPath, err)
	}
	return nil
}

// javaArgs returns the JVM command line of the server.
func (s *Server) javaArgs() []string {
	e := s.ens
	level := e.cfg.logLevel
	return []string{
		"-Xms16m", "-Xmx256m", "-Xss512k",
		"-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:ReservedCodeCacheSize=64m",
		"-XX:-UsePerfData", "-XX:+ExitOnOutOfMemoryError",
		"-Djava.awt.headless=true",
		"-Dzookeeper.forceSync=no",
		// A follower that synced by DIFF has a transaction log but no
		// snapshot; without this a restarted one refuses to start.
		"-Dzookeeper.snapshot.trust.empty=true",
		"-Dzookeeper.admin.enableServer=false",
		"-Dzookeeper.jmx.log4j.disable=true",
		"-Dzookeeper.log.dir=" + s.dir,
		"-Dorg.slf4j.simpleLogger.defaultLogLevel=" + level,
		"-Dorg.slf4j.simpleLogger.showDateTime=true",
		"-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
		"-Dorg.slf4j.simpleLogger.showShortLogName=true",
		"-Dlogback.configurationFile=" + filepath.Join(e.dir, "logback.xml"),
		"-Dlog4j.configuration=file:" + filepath.Join(e.dir, "log4j.properties"),
		"-cp", strings.Join(e.inst.classpath, string(os.PathListSeparator)),
		"org.apache.zookeeper.server.quorum.QuorumPeerMain",
		s.cfgPath,
	}
}

// launchLocked starts the JVM. s.mu must be held.
func (s *Server) launchLocked() (*process, error) {
	f, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("zktest: opening log file: %w", err)
	}
	args := s.javaArgs()
	fmt.Fprintf(f, "=== zktest %s: starting server %d: %s %s\n",
		time.Now().Format("15:04:05.000"), s.id, s.ens.inst.java, strings.Join(args, " "))

	out := &serverOutput{file: f, tail: s.tail}
	if s.ens.sink != nil {
		out.user = &prefixWriter{prefix: fmt.Sprintf("zk%d| ", s.id), sink: s.ens.sink}
	}
	cmd := exec.Command(s.ens.inst.java, args...)
	cmd.Dir = s.dir
	cmd.Stdin = nil
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.WaitDelay = 2 * time.Second
	setProcAttrs(cmd)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("zktest: starting server %d: %w", s.id, err)
	}
	p := &process{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	s.proc = p
	go func() {
		err := cmd.Wait()
		out.flush()
		fmt.Fprintf(f, "=== zktest %s: server %d (pid %d) exited: %v\n",
			time.Now().Format("15:04:05.000"), s.id, p.pid, err)
		f.Close()
		p.err = err
		close(p.done)
	}()
	return p, nil
}

// serverOutput receives a server's stdout and stderr (from the single
// goroutine os/exec copies them with).
type serverOutput struct {
	file *os.File
	tail *tailBuffer
	user *prefixWriter
}

func (o *serverOutput) Write(b []byte) (int, error) {
	_, _ = o.file.Write(b)
	o.tail.Write(b)
	if o.user != nil {
		o.user.Write(b)
	}
	return len(b), nil
}

func (o *serverOutput) flush() {
	if o.user != nil {
		o.user.flush()
	}
}

// lockedWriter serializes writes of all servers to the user's writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// prefixWriter writes whole lines, each prefixed, to a shared writer.
type prefixWriter struct {
	prefix  string
	sink    *lockedWriter
	partial []byte
}

func (w *prefixWriter) Write(b []byte) {
	w.partial = append(w.partial, b...)
	i := strings.LastIndexByte(string(w.partial), '\n')
	if i < 0 {
		if len(w.partial) < 64<<10 {
			return
		}
		i = len(w.partial) - 1 // an endless line: emit it anyway
	}
	var out []byte
	for line := range strings.Lines(string(w.partial[:i+1])) {
		out = append(out, w.prefix...)
		out = append(out, line...)
	}
	if out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	w.partial = append(w.partial[:0], w.partial[i+1:]...)
	w.sink.mu.Lock()
	_, _ = w.sink.w.Write(out)
	w.sink.mu.Unlock()
}

func (w *prefixWriter) flush() {
	if len(w.partial) > 0 {
		w.Write([]byte{'\n'})
	}
}

// tailBuffer keeps the last bytes written to it and counts all of them,
// so that what was written after a mark can be told apart.
type tailBuffer struct {
	mu    sync.Mutex
	buf   []byte
	max   int
	total int64 // bytes ever written, across resets
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(b []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total += int64(len(b))
	t.buf = append(t.buf, b...)
	if len(t.buf) > 2*t.max {
		t.buf = append(t.buf[:0:0], t.buf[len(t.buf)-t.max:]...)
	}
}

func (t *tailBuffer) reset() {
	t.mu.Lock()
	t.buf = nil
	t.mu.Unlock()
}

func (t *tailBuffer) contains(s string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Contains(string(t.buf), s)
}

// mark returns a position to pass to since later.
func (t *tailBuffer) mark() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// since returns what was written after mark and is still held. When the
// buffer no longer holds all of it, the partial line it starts with is
// dropped and cut reports it.
func (t *tailBuffer) since(mark int64) (s string, cut bool) {
	t.mu.Lock()
	n := t.total - mark
	if n > int64(len(t.buf)) {
		n, cut = int64(len(t.buf)), true
	}
	s = string(t.buf[len(t.buf)-int(n):])
	t.mu.Unlock()
	if cut {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		} else {
			s = ""
		}
	}
	return s, cut
}

// lastLines returns up to n complete trailing lines, newline-terminated.
func (t *tailBuffer) lastLines(n int) string {
	t.mu.Lock()
	s := string(t.buf)
	t.mu.Unlock()
	return lastLines(s, n)
}

// lastLines returns up to n trailing lines of s, newline-terminated.
func lastLines(s string, n int) string {
	if s == "" || n <= 0 {
		return ""
	}
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	end := len(s) - 1
	start := end
	for count := 0; count < n; count++ {
		i := strings.LastIndexByte(s[:start], '\n')
		if i < 0 {
			return s
		}
		start = i
	}
	return s[start+1:]
}
