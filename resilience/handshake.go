package resilience

import (
	"encoding/binary"
	"errors"
	"net"
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
// go-zookeeper/zk connection: when the server last spoke, and what it
// answered to the latest handshake. go-zookeeper/zk keeps the negotiated
// timeout private, and its session events carry no session id, so the
// session layer reads both off the wire.
type connInfo struct {
	lastRecv  atomic.Int64 // unix nanos of the last bytes read from any server
	sessionID atomic.Int64 // from the latest ConnectResponse (0: expired)
	timeout   atomic.Int64 // negotiated timeout from the latest ConnectResponse
}

// sniffConn passes every byte through unchanged and decodes the first frame
// the server sends, which is always the ConnectResponse.
type sniffConn struct {
	net.Conn
	info *connInfo
	buf  []byte
	done bool
}

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.info.lastRecv.Store(time.Now().UnixNano())
		if !c.done {
			c.absorb(p[:n])
		}
	}
	return n, err
}

func (c *sniffConn) absorb(p []byte) {
	c.buf = append(c.buf, p...)
	if len(c.buf) < 4 {
		return
	}
	size := int(binary.BigEndian.Uint32(c.buf[:4]))
	if size > 4096 { // not a ConnectResponse; stop looking
		c.done, c.buf = true, nil
		return
	}
	if len(c.buf) < 4+size {
		return
	}
	if r, err := parseConnectResponse(c.buf[4 : 4+size]); err == nil {
		c.info.sessionID.Store(r.SessionID)
		if r.Timeout > 0 {
			c.info.timeout.Store(int64(r.Timeout))
		}
	}
	c.done, c.buf = true, nil
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
