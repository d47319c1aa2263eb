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
//
// lastZxid stands in for go-zookeeper/zk's own Conn.lastZxid; see sniffConn.
type connInfo struct {
	heardAt     atomic.Int64 // unix nanos
	prevHeardAt atomic.Int64 // the heardAt before the latest one
	sessionID   atomic.Int64 // from the latest ConnectResponse (0: expired)
	timeout     atomic.Int64 // negotiated timeout from the latest ConnectResponse
	lastZxid    atomic.Int64 // zxid of the latest reply to a request
}

// sniffConn passes the byte stream through, decoding the first frame the
// server sends (the ConnectResponse) and the header of every later reply,
// and noting when the handshake and each ping were written.
//
// It also keeps go-zookeeper/zk v1.0.4 clear of a data race: its receive
// goroutine writes Conn.lastZxid for every reply while, after a reconnect,
// its connect loop reads it to re-register watches (upstream PR
// go-zookeeper/zk#35), with nothing ordering the two. go-zookeeper/zk only
// writes the field for replies whose header zxid is positive, and only
// reads it into two requests: the ConnectRequest (LastZxidSeen) and
// SetWatches (RelativeZxid). So the wrapper keeps the value itself
// (connInfo.lastZxid, updated exactly where go-zookeeper/zk would update
// its own), zeroes the zxid in each reply header before go-zookeeper/zk
// sees it, and writes its value into those two requests on their way out.
// The server sees what it would have seen; go-zookeeper/zk's field is never
// written by the receive goroutine. go-zookeeper/zk discards the header zxid
// otherwise.
type sniffConn struct {
	net.Conn
	info *connInfo

	mu      sync.Mutex
	pending []int64 // send times of the handshake and pings awaiting replies, in order

	// Read side, touched only by the reading goroutine.
	handshook bool
	hdr       []byte // the ConnectResponse, or the current reply's header so far
	skip      int    // body bytes left to skip in the current frame
}

// Frame layouts (after the 4-byte length prefix) used below.
const (
	replyHeaderLen = 4 + 16 // length, xid, zxid, err
	opSetWatches   = 101
)

// pingFrame is how go-zookeeper/zk writes a ping: length 8, xid -2, opcode 11.
var pingFrame = []byte{0, 0, 0, 8, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 11}

func (c *sniffConn) Write(p []byte) (int, error) {
	switch {
	case !c.handshook:
		// The ConnectRequest: length, protocolVersion, lastZxidSeen, ...
		c.mu.Lock()
		c.pending = append(c.pending, time.Now().UnixNano())
		c.mu.Unlock()
		if len(p) >= 16 {
			p = withZxid(p, 8, c.info.lastZxid.Load())
		}
	case bytes.Equal(p, pingFrame):
		c.mu.Lock()
		c.pending = append(c.pending, time.Now().UnixNano())
		c.mu.Unlock()
	case len(p) >= 20 && binary.BigEndian.Uint32(p[8:12]) == opSetWatches:
		// length, xid, opcode, relativeZxid, ...
		p = withZxid(p, 12, c.info.lastZxid.Load())
	}
	return c.Conn.Write(p)
}

// withZxid returns a copy of the frame p with z written at offset off (the
// caller's buffer belongs to go-zookeeper/zk).
func withZxid(p []byte, off int, z int64) []byte {
	q := append([]byte(nil), p...)
	binary.BigEndian.PutUint64(q[off:off+8], uint64(z))
	return q
}

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.absorb(p[:n])
	}
	return n, err
}

// absorb walks the reply stream frame by frame, however reads split it,
// without copying bodies. It zeroes the zxid of each reply header in p.
func (c *sniffConn) absorb(p []byte) {
	for len(p) > 0 {
		if c.skip > 0 {
			k := min(c.skip, len(p))
			c.skip -= k
			p = p[k:]
			continue
		}
		if !c.handshook {
			p = c.absorbHandshake(p)
			continue
		}
		// Copy header bytes, then blank the zxid (offsets 8..15) in p.
		at := len(c.hdr)
		k := min(replyHeaderLen-at, len(p))
		c.hdr = append(c.hdr, p[:k]...)
		for i := max(at, 8); i < min(at+k, 16); i++ {
			p[i-at] = 0
		}
		p = p[k:]
		if len(c.hdr) < replyHeaderLen {
			return
		}
		size := int(binary.BigEndian.Uint32(c.hdr[0:4]))
		xid := int32(binary.BigEndian.Uint32(c.hdr[4:8]))
		zxid := int64(binary.BigEndian.Uint64(c.hdr[8:16]))
		switch {
		case xid == -2:
			c.answered()
		case xid >= 0 && zxid > 0:
			c.info.lastZxid.Store(zxid)
		}
		c.skip = max(size+4-replyHeaderLen, 0)
		c.hdr = c.hdr[:0]
	}
}

// absorbHandshake collects the ConnectResponse and returns what follows it.
func (c *sniffConn) absorbHandshake(p []byte) []byte {
	if len(c.hdr) < 4 {
		k := min(4-len(c.hdr), len(p))
		c.hdr = append(c.hdr, p[:k]...)
		p = p[k:]
		if len(c.hdr) < 4 {
			return p
		}
	}
	size := int(binary.BigEndian.Uint32(c.hdr[:4]))
	if size > 4096 {
		c.handshook, c.hdr, c.skip = true, nil, size // not a handshake; stop decoding it
		return p
	}
	k := min(4+size-len(c.hdr), len(p))
	c.hdr = append(c.hdr, p[:k]...)
	p = p[k:]
	if len(c.hdr) < 4+size {
		return p
	}
	if r, err := parseConnectResponse(c.hdr[4:]); err == nil {
		c.info.sessionID.Store(r.SessionID)
		if r.SessionID == 0 {
			// Expired: go-zookeeper/zk starts its next session from zxid 0.
			c.info.lastZxid.Store(0)
		}
		if r.Timeout > 0 {
			c.info.timeout.Store(int64(r.Timeout))
			c.answered()
		}
	}
	c.handshook, c.hdr = true, nil
	return p
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
		return &sniffConn{Conn: c, info: info}, nil
	}
}
