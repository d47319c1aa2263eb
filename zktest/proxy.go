package zktest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Proxy is a fault-injecting TCP proxy. Start puts one in front of every
// server, listening on 127.0.0.1 at a random port and forwarding to the
// server's real client port; clients that connect through it can then be
// disconnected, partitioned, refused or slowed down on demand.
//
// The proxy also watches the first frame each server sends on a connection,
// the ZooKeeper ConnectResponse, to learn the id and password of every
// session established through it (see Sessions and Ensemble.ExpireSession).
// The proxies of an Ensemble and of its Links (not those of NewProxy) also
// read the ConnectRequest each client sends first, so that ExpireSession
// can hold the client's reconnects while it expires the client's session;
// any other first message (a four-letter word) is forwarded as it is.
//
// All methods are safe for concurrent use.
type Proxy struct {
	ln   net.Listener
	addr string
	wg   sync.WaitGroup

	mu     sync.Mutex
	target string
	// hello, when set, reads the first message a connecting client sends
	// and returns what to send the target instead (see electionHello).
	hello func(io.Reader) ([]byte, error)
	// noSniff turns off the ConnectResponse sniffing (for peer links).
	noSniff bool
	// gate makes each connection read the client's ConnectRequest before
	// forwarding it, to learn the session it resumes and to hold it while
	// that session is being expired (see holdSession). Set on the proxies
	// of an Ensemble and its Links, which carry ZooKeeper clients only.
	gate bool
	// holding holds the new connections that resume these sessions.
	holding map[int64]chan struct{}
	// redial makes a connection retry dialling a target that refuses,
	// within proxyDialLimit, instead of closing the client's at once (for
	// quorum links, whose client does not retry after a reset).
	redial    bool
	hold      direction // directions held on existing and new connections
	reject    bool
	latency   time.Duration
	closed    bool
	conns     map[*proxyConn]struct{}
	sessions  map[int64][]byte
	closeErr  error
	closeDone bool
}

// proxyConn is one proxied client connection.
type proxyConn struct {
	p      *Proxy
	client net.Conn
	ctx    context.Context // done when the connection is closed
	cancel context.CancelFunc
	hello  func(io.Reader) ([]byte, error)
	sniff  bool
	gate   bool
	redial bool

	// Guarded by p.mu.
	server    net.Conn
	held      direction // directions whose bytes are no longer forwarded
	sessionID int64
}

// direction is a set of forwarding directions of a proxied connection.
type direction uint8

const (
	toServer direction = 1 << iota // requests: client to server
	toClient                       // replies: server to client
	bothWays = toServer | toClient
)

const (
	proxyBufSize   = 32 << 10
	proxyQueueLen  = 64
	proxyDialLimit = 5 * time.Second
)

// NewProxy starts a proxy listening on 127.0.0.1 at a random port that
// forwards every connection it accepts to target ("host:port"). The target
// is dialled once per accepted connection; when that fails the client's
// connection is closed. Close the proxy when done.
func NewProxy(target string) (*Proxy, error) {
	p, err := newProxy(target)
	if err != nil {
		return nil, fmt.Errorf("zktest: starting a proxy: %w", err)
	}
	return p, nil
}

// newGatedProxy is newProxy for ZooKeeper clients only: its connections
// pass the client's ConnectRequest through forwardConnect.
func newGatedProxy(target string) (*Proxy, error) {
	p, err := newProxy(target)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.gate = true
	p.mu.Unlock()
	return p, nil
}

// newProxy is NewProxy with the listener's error unwrapped, for callers
// that say what the proxy was for.
func newProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		ln:       ln,
		addr:     ln.Addr().String(),
		target:   target,
		conns:    make(map[*proxyConn]struct{}),
		sessions: make(map[int64][]byte),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the address clients connect to, "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.addr }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
}

func (p *Proxy) setTarget(t string) {
	p.mu.Lock()
	p.target = t
	p.mu.Unlock()
}

// DropConnections closes every current proxied connection at once, on both
// sides, as a crashed middlebox or a server-side reset would. New
// connections are still accepted and forwarded.
func (p *Proxy) DropConnections() {
	for _, c := range p.takeConns(func(*proxyConn) bool { return true }) {
		c.close()
	}
}

// Blackhole simulates a network partition: the proxy stops forwarding bytes
// in both directions on existing connections and on new ones, which are
// accepted but never forwarded to the server. Nothing is closed and nothing
// is answered, so clients see silence until their own timeouts fire. Heal
// ends the partition and closes the connections it held.
func (p *Proxy) Blackhole() { p.holdDirections(bothWays) }

// BlackholeRequests simulates a one-way partition that loses what the client
// sends: from now on no byte from the client reaches the server, on existing
// connections and on new ones, while everything the server sends (replies
// already owed, pings answered before the cut, watch notifications) still
// reaches the client. The held bytes pile up unread, so a client writing a
// lot eventually blocks in its send, as it would on a real lossy path; they
// are never delivered late. Nothing is closed. Heal ends it and closes the
// connections it affected.
func (p *Proxy) BlackholeRequests() { p.holdDirections(toServer) }

// BlackholeReplies simulates the other one-way partition: from now on no
// byte from the server reaches the client, on existing connections and on
// new ones, while everything the client sends still reaches the server,
// which applies its requests (and, on a new connection, creates its
// session) without the client hearing of it. Held bytes are never
// delivered late; nothing is closed. Heal ends it and closes the
// connections it affected.
func (p *Proxy) BlackholeReplies() { p.holdDirections(toClient) }

// holdDirections stops forwarding in the directions d (in addition to any
// already held) on current and future connections.
func (p *Proxy) holdDirections(d direction) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.hold |= d
	for c := range p.conns {
		c.holdLocked(d)
	}
}

// holdLocked stops forwarding in the directions d. p.mu must be held.
func (c *proxyConn) holdLocked(d direction) {
	c.held |= d
	// Interrupt pending reads so no byte is consumed once held; the pumps
	// notice the flag and hold.
	if d&toServer != 0 {
		_ = c.client.SetReadDeadline(time.Now())
	}
	if d&toClient != 0 && c.server != nil {
		_ = c.server.SetReadDeadline(time.Now())
	}
}

// Reject makes the proxy refuse connections: new ones are accepted and
// closed at once, and the current ones are dropped. Heal undoes it.
func (p *Proxy) Reject() {
	p.mu.Lock()
	if !p.closed {
		p.reject = true
	}
	p.mu.Unlock()
	p.DropConnections()
}

// SetLatency delays every chunk of data forwarded in either direction by d
// (one way, so a request/response round trip takes at least 2*d longer).
// Byte order is preserved. It applies to data read after the call; d <= 0
// removes the delay.
func (p *Proxy) SetLatency(d time.Duration) {
	if d < 0 {
		d = 0
	}
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// Heal restores normal forwarding: no blackhole (in either direction), no
// rejection, no latency. Connections that were blackholed, in one direction
// or both, are closed, as the TCP streams of a real partition would be dead
// by the time it heals; this also avoids replaying stale bytes or resuming
// a stream that lost some. Clients reconnect through the proxy as usual.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.hold = 0
	p.reject = false
	p.latency = 0
	p.mu.Unlock()
	for _, c := range p.takeConns(func(c *proxyConn) bool { return c.held != 0 }) {
		c.close()
	}
}

// Sessions returns the ZooKeeper sessions established through this proxy so
// far, as session id -> session password, learnt from the ConnectResponse
// frames the server sent. Sessions are never forgotten, even once closed.
func (p *Proxy) Sessions() map[int64][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[int64][]byte, len(p.sessions))
	for id, pw := range p.sessions {
		m[id] = append([]byte(nil), pw...)
	}
	return m
}

func (p *Proxy) sessionPassword(id int64) ([]byte, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pw, ok := p.sessions[id]
	return pw, ok
}

// dropSession closes the proxied connections that carry session id.
func (p *Proxy) dropSession(id int64) {
	for _, c := range p.takeConns(func(c *proxyConn) bool { return c.sessionID == id }) {
		c.close()
	}
}

// connCount returns the number of open proxied connections.
func (p *Proxy) connCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops the proxy: it stops listening, closes every proxied
// connection and waits for all of its goroutines to end. It is idempotent.
func (p *Proxy) Close() error {
	if err := p.close(); err != nil {
		return fmt.Errorf("zktest: closing proxy %s: %w", p.addr, err)
	}
	return nil
}

// close is Close with the listener's error unwrapped, for callers that say
// what the proxy was for.
func (p *Proxy) close() error {
	p.mu.Lock()
	if p.closeDone {
		p.mu.Unlock()
		return p.closeErr
	}
	p.closed = true
	p.closeDone = true
	p.mu.Unlock()

	err := p.ln.Close()
	for _, c := range p.takeConns(func(*proxyConn) bool { return true }) {
		c.close()
	}
	p.wg.Wait()
	p.mu.Lock()
	p.closeErr = err
	p.mu.Unlock()
	return err
}

// takeConns removes and returns the connections matching keep.
func (p *Proxy) takeConns(match func(*proxyConn) bool) []*proxyConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*proxyConn
	for c := range p.conns {
		if match(c) {
			out = append(out, c)
			delete(p.conns, c)
		}
	}
	return out
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		p.mu.Lock()
		if p.closed || p.reject {
			p.mu.Unlock()
			conn.Close()
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		c := &proxyConn{p: p, client: conn, ctx: ctx, cancel: cancel, held: p.hold, hello: p.hello, sniff: !p.noSniff, gate: p.gate, redial: p.redial}
		p.conns[c] = struct{}{}
		target := p.target
		p.wg.Add(1)
		p.mu.Unlock()
		go c.run(target)
	}
}

// close tears the connection down; pumps notice and exit.
func (c *proxyConn) close() {
	c.cancel()
	c.client.Close()
	c.p.mu.Lock()
	delete(c.p.conns, c)
	s := c.server
	c.p.mu.Unlock()
	if s != nil {
		s.Close()
	}
}

// isHeld reports whether forwarding in direction d has stopped.
func (c *proxyConn) isHeld(d direction) bool {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	return c.held&d != 0
}

func (c *proxyConn) heldDirs() direction {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	return c.held
}

// forwardHello reads the client's first message with the proxy's hello
// function and sends the server what it returns. It reports false when the
// connection is to be abandoned (closed, or held by a blackhole).
func (c *proxyConn) forwardHello(server net.Conn) bool {
	_ = c.client.SetReadDeadline(time.Now().Add(proxyDialLimit))
	b, err := c.hello(c.client)
	c.p.mu.Lock()
	held := c.held
	if held&toServer == 0 {
		_ = c.client.SetReadDeadline(time.Time{})
	}
	c.p.mu.Unlock()
	if held&toServer != 0 {
		<-c.ctx.Done() // cut while reading: never deliver
		return false
	}
	if err != nil {
		return false
	}
	if _, err := server.Write(b); err != nil {
		return false
	}
	return true
}

// forwardConnect reads the client's first frame, its ConnectRequest,
// records the session it resumes (so that dropSession also closes a
// connection still in its handshake), waits while that session is held
// (see holdSession), then sends the frame on. A first frame that is no
// ConnectRequest (a four-letter word, say) is sent on as it is. It reports
// false when the connection is to be abandoned (closed, or held by a
// blackhole).
func (c *proxyConn) forwardConnect(server net.Conn) bool {
	frame, id, err := readConnectRequest(c.client)
	c.p.mu.Lock()
	held := c.held
	if held&toServer == 0 {
		_ = c.client.SetReadDeadline(time.Time{})
	}
	if id != 0 {
		c.sessionID = id
	}
	wait := c.p.holding[id]
	c.p.mu.Unlock()
	if held&toServer != 0 {
		<-c.ctx.Done() // cut while reading: never deliver
		return false
	}
	if err != nil && len(frame) == 0 {
		return false
	}
	if wait != nil && id != 0 {
		select {
		case <-wait:
		case <-c.ctx.Done():
			return false
		}
		if c.isHeld(toServer) { // cut while held: never deliver
			<-c.ctx.Done()
			return false
		}
	}
	if len(frame) > 0 {
		if _, err := server.Write(frame); err != nil {
			return false
		}
	}
	return err == nil
}

// holdSession holds the proxy's new connections that resume session id:
// their ConnectRequest is not forwarded until release is called (or the
// connection closes), so that the client cannot take its session back
// while zktest expires it. It does nothing on a proxy without a gate.
func (p *Proxy) holdSession(id int64) (release func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.gate || p.closed {
		return func() {}
	}
	if p.holding == nil {
		p.holding = make(map[int64]chan struct{})
	}
	ch := make(chan struct{})
	p.holding[id] = ch
	return sync.OnceFunc(func() {
		p.mu.Lock()
		if p.holding[id] == ch {
			delete(p.holding, id)
		}
		p.mu.Unlock()
		close(ch)
	})
}

func (c *proxyConn) run(target string) {
	defer c.p.wg.Done()
	defer c.close()

	if c.heldDirs() == bothWays {
		// Accepted during a partition: hold it, never reach the server.
		<-c.ctx.Done()
		return
	}
	dctx, cancel := context.WithTimeout(c.ctx, proxyDialLimit)
	d := net.Dialer{}
	server, err := d.DialContext(dctx, "tcp", target)
	for err != nil && c.redial && dctx.Err() == nil {
		// A peer link: the client's connect has succeeded, so it will not
		// retry as it would after a refusal. Retry for it, within the limit.
		select {
		case <-dctx.Done():
		case <-time.After(20 * time.Millisecond):
			server, err = d.DialContext(dctx, "tcp", target)
		}
	}
	cancel()
	if err != nil {
		return // the client sees its connection closed, like a dead server
	}
	if tc, ok := server.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	c.p.mu.Lock()
	if c.ctx.Err() != nil {
		c.p.mu.Unlock()
		server.Close()
		return
	}
	c.server = server
	if c.held&toClient != 0 {
		_ = server.SetReadDeadline(time.Now())
	}
	c.p.mu.Unlock()
	if c.hello != nil && !c.forwardHello(server) {
		return
	}
	if c.gate && !c.forwardConnect(server) {
		return
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.pump(c.client, server, toServer)
	}()
	go func() {
		defer wg.Done()
		c.pump(server, c.client, toClient)
	}()
	wg.Wait()
}

type chunk struct {
	data []byte
	due  time.Time
}

// pump forwards one direction: a reader goroutine queues chunks stamped with
// their due time (now + latency) and this goroutine writes them in order
// once due. On EOF it half-closes dst after the queue drains; any error
// closes the whole connection.
func (c *proxyConn) pump(src, dst net.Conn, dir direction) {
	queue := make(chan chunk, proxyQueueLen)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(queue)
		c.read(src, queue, dir)
	}()
	defer func() { <-done }()

	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for ch := range queue {
		if wait := time.Until(ch.due); wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-timer.C:
			case <-c.ctx.Done():
				c.close()
				return
			}
		}
		if c.isHeld(dir) {
			<-c.ctx.Done()
			return
		}
		if _, err := dst.Write(ch.data); err != nil {
			c.close()
			return
		}
	}
	if c.ctx.Err() != nil {
		return
	}
	// The reader hit EOF: pass the half-close on.
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	} else {
		c.close()
	}
}

// read is the reading half of pump. It returns on EOF (queue then closed
// normally) or after closing the connection on any other error.
func (c *proxyConn) read(src net.Conn, queue chan<- chunk, dir direction) {
	var sn connectResponseSniffer
	sniff := dir == toClient && c.sniff
	for {
		if c.isHeld(dir) {
			<-c.ctx.Done()
			return
		}
		buf := make([]byte, proxyBufSize)
		n, err := src.Read(buf)
		if n > 0 {
			if c.isHeld(dir) {
				// Read raced with Blackhole: hold the bytes, never deliver.
				<-c.ctx.Done()
				return
			}
			if sniff && !sn.done {
				if r, ok := sn.feed(buf[:n]); ok && r.SessionID != 0 {
					c.p.mu.Lock()
					c.p.sessions[r.SessionID] = r.Passwd
					c.sessionID = r.SessionID
					c.p.mu.Unlock()
				}
			}
			c.p.mu.Lock()
			lat := c.p.latency
			c.p.mu.Unlock()
			select {
			case queue <- chunk{data: buf[:n], due: time.Now().Add(lat)}:
			case <-c.ctx.Done():
				return
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && c.ctx.Err() == nil {
				if c.isHeld(dir) {
					<-c.ctx.Done()
					return
				}
				_ = src.SetReadDeadline(time.Time{})
				continue
			}
			if c.ctx.Err() != nil || !isEOF(err) {
				c.close()
			}
			return
		}
	}
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }
