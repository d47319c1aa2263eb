package resilience

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// handshakeReply is the server's answer to a ConnectRequest. A reply with
// SessionID 0 (and a timeout of 0) means the session the client asked to
// resume has expired.
type handshakeReply struct {
	ProtocolVersion int32
	Timeout         time.Duration
	SessionID       int64
	Password        []byte
	ReadOnly        bool
}

var errShortHandshake = errors.New("resilience: truncated ConnectResponse")

// parseConnectResponse decodes a ConnectResponse frame body (the bytes after
// the 4-byte length prefix).
func parseConnectResponse(b []byte) (handshakeReply, error) {
	var r handshakeReply
	if len(b) < 20 {
		return r, errShortHandshake
	}
	r.ProtocolVersion = int32(binary.BigEndian.Uint32(b[0:4]))
	r.Timeout = time.Duration(int32(binary.BigEndian.Uint32(b[4:8]))) * time.Millisecond
	r.SessionID = int64(binary.BigEndian.Uint64(b[8:16]))
	n := int32(binary.BigEndian.Uint32(b[16:20]))
	rest := b[20:]
	if n > 0 {
		if int(n) > len(rest) {
			return r, errShortHandshake
		}
		r.Password = append([]byte(nil), rest[:n]...)
		rest = rest[n:]
	}
	if len(rest) > 0 {
		r.ReadOnly = rest[0] != 0
	}
	return r, nil
}

// connInfo is what the session layer learns by watching the bytes of one
// go-zookeeper/zk connection. go-zookeeper/zk keeps the negotiated timeout
// private and its session events carry no session id, so both are read off
// the handshake. heardAt is a lower bound on when the server last heard from
// this client: the send time of the latest request (handshake or ping) whose
// reply has arrived. The ensemble cannot expire the session before heardAt
// plus the timeout, so a presumption based on it never comes too late.
//
// When the client's server is a follower, it passes session touches on to
// the ensemble's leader (which expires sessions) only every half tick, so a
// follower that dies may take the latest touch with it. The touch of the
// ping before (a third of the timeout earlier, and the negotiated timeout
// is at least two ticks) has always been passed on; prevHeardAt keeps its
// send time, and presumed expiry counts from there.
type connInfo struct {
	dials       atomic.Int64 // TCP connections opened so far
	heardAt     atomic.Int64 // unix nanos
	prevHeardAt atomic.Int64 // the heardAt before the latest one
	sessionID   atomic.Int64 // from the latest ConnectResponse (0: expired)
	timeout     atomic.Int64 // negotiated timeout from the latest ConnectResponse
}

// sniffConn passes every byte through unchanged. It decodes the first frame
// the server sends (the ConnectResponse) and the xid of every later reply,
// and notes when the handshake and each ping were written.
type sniffConn struct {
	net.Conn
	info *connInfo

	mu      sync.Mutex
	pending []int64 // send times of the handshake and pings awaiting replies, in order

	// Read side, touched only by the reading goroutine.
	handshook bool
	hdr       []byte // partial frame header
	skip      int    // body bytes left to skip in the current frame
	gateOpen  bool

	gate     chan struct{} // see gateWait
	gateOnce sync.Once
}

// go-zookeeper/zk v1.0.4 reads Conn.lastZxid to re-register watches after
// a reconnect (sendSetWatches) while its receive goroutine may already be
// writing it for replies to queued requests: a data race (upstream
// go-zookeeper/zk PR #35). The connection holds back the replies that follow
// the handshake until the SetWatches request has been written, which orders
// the two accesses. Without watches to re-register no SetWatches is sent and
// nothing reads lastZxid, so the replies wait at most gateWait. A
// connection's first TCP connection has no watches to re-register and is
// not held back.
const (
	gateWait     = 250 * time.Millisecond
	opSetWatches = 101
)

func (c *sniffConn) openGate() { c.gateOnce.Do(func() { close(c.gate) }) }

// pingFrame is how go-zookeeper/zk writes a ping: length 8, xid -2, opcode 11.
var pingFrame = []byte{0, 0, 0, 8, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 11}

func (c *sniffConn) Write(p []byte) (int, error) {
	if !c.handshook || bytes.Equal(p, pingFrame) {
		c.mu.Lock()
		c.pending = append(c.pending, time.Now().UnixNano())
		c.mu.Unlock()
	}
	n, err := c.Conn.Write(p)
	if len(p) >= 12 && binary.BigEndian.Uint32(p[8:12]) == opSetWatches {
		c.openGate()
	}
	return n, err
}

func (c *sniffConn) Read(p []byte) (int, error) {
	if c.handshook && !c.gateOpen {
		t := time.NewTimer(gateWait)
		select {
		case <-c.gate:
		case <-t.C:
		}
		t.Stop()
		c.gateOpen = true
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.absorb(p[:n])
	}
	return n, err
}

// absorb walks the reply stream frame by frame without copying bodies.
func (c *sniffConn) absorb(p []byte) {
	for len(p) > 0 {
		if c.skip > 0 {
			k := min(c.skip, len(p))
			c.skip -= k
			p = p[k:]
			continue
		}
		want := 8 // length + xid
		if !c.handshook {
			want = 4
		}
		if len(c.hdr) < want {
			k := min(want-len(c.hdr), len(p))
			c.hdr = append(c.hdr, p[:k]...)
			p = p[k:]
			if len(c.hdr) < want {
				return
			}
		}
		size := int(binary.BigEndian.Uint32(c.hdr[:4]))
		if !c.handshook {
			// Collect the whole ConnectResponse.
			if size > 4096 {
				c.handshook, c.hdr = true, nil // not a handshake; stop decoding
				continue
			}
			if len(c.hdr) < 4+size {
				k := min(4+size-len(c.hdr), len(p))
				c.hdr = append(c.hdr, p[:k]...)
				p = p[k:]
				if len(c.hdr) < 4+size {
					return
				}
			}
			if r, err := parseConnectResponse(c.hdr[4:]); err == nil {
				c.info.sessionID.Store(r.SessionID)
				if r.Timeout > 0 {
					c.info.timeout.Store(int64(r.Timeout))
					c.answered()
				}
			}
			c.handshook, c.hdr = true, nil
			continue
		}
		if xid := int32(binary.BigEndian.Uint32(c.hdr[4:8])); xid == -2 {
			c.answered()
		}
		c.skip = size - 4
		c.hdr = c.hdr[:0]
	}
}

// answered records that the oldest outstanding handshake or ping was heard.
func (c *sniffConn) answered() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		return
	}
	c.info.prevHeardAt.Store(c.info.heardAt.Load())
	c.info.heardAt.Store(c.pending[0])
	c.pending = c.pending[1:]
}

func sniffingDialer(d Dialer, info *connInfo) func(string, string, time.Duration) (net.Conn, error) {
	return func(network, addr string, timeout time.Duration) (net.Conn, error) {
		c, err := d(network, addr, timeout)
		if err != nil {
			return nil, err
		}
		sc := &sniffConn{Conn: c, info: info, gate: make(chan struct{})}
		if info.dials.Add(1) == 1 {
			sc.gateOpen = true // nothing to re-register yet
		}
		return sc, nil
	}
}
