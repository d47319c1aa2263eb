// Package wirefault loses one chosen ZooKeeper request, or the reply to it,
// on a client's connection, and holds the client's reconnect until the test
// lets it go: the fault that makes an operation's outcome ambiguous, with
// time for a second client to act before the first one can find out what
// happened.
//
// Use an Injector's Dial as the client's dialer (resilience.WithDialer). The
// injector reads the frames go-zookeeper/zk writes (it writes each request
// in one Write) and the frames the server sends back; it understands just
// enough of the protocol to name a request's operation and first path.
package wirefault

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Mode says what the armed fault loses.
type Mode int

const (
	// LoseRequest drops the request before the server sees it, then closes
	// the connection: the operation did not happen.
	LoseRequest Mode = iota + 1
	// LoseReply delivers the request and closes the connection when its
	// reply arrives, without passing the reply on: the operation happened.
	LoseReply
)

func (m Mode) String() string {
	switch m {
	case LoseRequest:
		return "lost request"
	case LoseReply:
		return "lost reply"
	}
	return "no fault"
}

// ZooKeeper request opcodes that tests match on.
const (
	OpCreate          = 1
	OpDelete          = 2
	OpExists          = 3
	OpGetData         = 4
	OpSetData         = 5
	OpGetChildren     = 8
	OpSync            = 9
	OpGetChildren2    = 12
	OpCheck           = 13
	OpMulti           = 14
	OpCreate2         = 15
	OpCreateContainer = 19
)

// Request is what the injector knows of a request frame.
type Request struct {
	Xid  int32
	Op   int32
	Path string // the first path in the request (a multi's first op's)
}

// IsWrite reports whether r changes the tree.
func (r Request) IsWrite() bool {
	switch r.Op {
	case OpCreate, OpDelete, OpSetData, OpMulti, OpCreate2, OpCreateContainer, OpCheck:
		return true
	}
	return false
}

// Injector is a dialer with one fault at a time. The zero value is not
// usable; call New.
type Injector struct {
	mu       sync.Mutex
	armed    *arm
	held     chan struct{} // closed by Release; nil when dials go through
	dialHold time.Duration
}

type arm struct {
	mode  Mode
	match func(Request) bool
	fired chan struct{}
	req   Request
}

// New returns an Injector with nothing armed. Dials held after a fault give
// up after a minute, so a test that forgets Release does not hang forever.
func New() *Injector { return &Injector{dialHold: time.Minute} }

// Arm makes the next request for which match returns true suffer mode. The
// returned channel is closed once the fault has happened: the connection
// is closed then, and from that moment new dials wait until Release. Arming
// again replaces an earlier fault that has not happened yet.
func (in *Injector) Arm(mode Mode, match func(Request) bool) <-chan struct{} {
	a := &arm{mode: mode, match: match, fired: make(chan struct{})}
	in.mu.Lock()
	in.armed = a
	in.mu.Unlock()
	return a.fired
}

// Hold makes new dials wait until Release, as a fired fault does.
func (in *Injector) Hold() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.held == nil {
		in.held = make(chan struct{})
	}
}

// Release lets held and later dials through. It is safe to call more than
// once, and when nothing is held.
func (in *Injector) Release() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.held != nil {
		close(in.held)
		in.held = nil
	}
}

// Dial is a resilience.Dialer: it waits while reconnects are held, then
// dials a plain TCP connection and wraps it.
func (in *Injector) Dial(network, address string, timeout time.Duration) (net.Conn, error) {
	in.mu.Lock()
	held := in.held
	in.mu.Unlock()
	if held != nil {
		select {
		case <-held:
		case <-time.After(in.dialHold):
			return nil, errors.New("wirefault: reconnect held too long (Release was not called)")
		}
	}
	c, err := net.DialTimeout(network, address, timeout)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, in: in, dropXid: -1}, nil
}

// take returns the armed fault if r matches it, and disarms it.
func (in *Injector) take(r Request) *arm {
	in.mu.Lock()
	defer in.mu.Unlock()
	a := in.armed
	if a == nil || !a.match(r) {
		return nil
	}
	in.armed = nil
	a.req = r
	return a
}

// fire holds new dials and tells the test.
func (in *Injector) fire(a *arm) {
	in.mu.Lock()
	if in.held == nil {
		in.held = make(chan struct{})
	}
	in.mu.Unlock()
	close(a.fired)
}

type conn struct {
	net.Conn
	in *Injector

	wmu       sync.Mutex
	handshook bool // the ConnectRequest has been written

	rmu     sync.Mutex
	dropXid int32 // reply to lose, or -1
	dropArm *arm
	rbuf    []byte // read from the server, not yet handed on
	rstart  bool   // past the ConnectResponse
	left    int    // bytes of the current frame still to hand on
	dead    bool
}

var errLost = errors.New("wirefault: connection closed to lose a request or reply")

func (c *conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	first := !c.handshook
	c.handshook = true
	c.wmu.Unlock()
	if first {
		return c.Conn.Write(p)
	}
	r, ok := parseRequest(p)
	if !ok {
		return c.Conn.Write(p)
	}
	a := c.in.take(r)
	if a == nil {
		return c.Conn.Write(p)
	}
	switch a.mode {
	case LoseRequest:
		c.in.fire(a)
		c.rmu.Lock()
		c.dead = true
		c.rmu.Unlock()
		_ = c.Conn.Close()
		return len(p), nil
	default:
		c.rmu.Lock()
		c.dropXid, c.dropArm = r.Xid, a
		c.rmu.Unlock()
		return c.Conn.Write(p)
	}
}

// Read hands on the server's bytes frame by frame, so that it can stop at
// the start of the reply it must lose.
func (c *conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.dead {
			return 0, errLost
		}
		if c.left > 0 && len(c.rbuf) > 0 {
			n := copy(p, c.rbuf[:min(c.left, len(c.rbuf))])
			c.rbuf = c.rbuf[n:]
			c.left -= n
			return n, nil
		}
		if c.left == 0 && len(c.rbuf) >= 8 {
			size := int(binary.BigEndian.Uint32(c.rbuf[0:4]))
			xid := int32(binary.BigEndian.Uint32(c.rbuf[4:8]))
			if c.rstart && c.dropArm != nil && xid == c.dropXid {
				a := c.dropArm
				c.dropArm, c.dropXid = nil, -1
				c.dead = true
				_ = c.Conn.Close()
				c.in.fire(a)
				return 0, errLost
			}
			c.rstart = true
			c.left = size + 4
			continue
		}
		// Need more bytes (unlocked reads would let Write race; go-zookeeper/zk
		// reads from one goroutine, so holding rmu here blocks nobody else).
		buf := make([]byte, 32<<10)
		c.rmu.Unlock()
		n, err := c.Conn.Read(buf)
		c.rmu.Lock()
		if n > 0 {
			c.rbuf = append(c.rbuf, buf[:n]...)
			continue
		}
		if err == nil {
			err = io.ErrNoProgress
		}
		if c.dead {
			return 0, errLost
		}
		return 0, err
	}
}

// parseRequest decodes a request frame's header and first path.
func parseRequest(p []byte) (Request, bool) {
	if len(p) < 12 {
		return Request{}, false
	}
	r := Request{
		Xid: int32(binary.BigEndian.Uint32(p[4:8])),
		Op:  int32(binary.BigEndian.Uint32(p[8:12])),
	}
	body := p[12:]
	if r.Op == OpMulti {
		// MultiHeader: type int32, done bool, err int32.
		if len(body) < 9 {
			return r, true
		}
		body = body[9:]
	}
	if len(body) >= 4 {
		n := int(int32(binary.BigEndian.Uint32(body[0:4])))
		if n >= 0 && 4+n <= len(body) {
			r.Path = string(body[4 : 4+n])
		}
	}
	return r, true
}
