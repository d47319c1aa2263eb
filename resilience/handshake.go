package resilience

import (
	"encoding/binary"
	"errors"
	"fmt"
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

// errHeldBack fails a handshake whose "session expired" answer is held
// back until another server confirms it (see connInfo.holdBack).
var errHeldBack = errors.New("resilience: answered session expired; asking another server before believing it")

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
// go-zookeeper/zk connection, and by probing it (see probe.go).
// go-zookeeper/zk keeps the negotiated timeout private and its session
// events carry no session id, so both are read off the handshake.
//
// Two clocks decide loss (docs/state-machine.md gives the argument):
//
//   - ackedAt: when the latest request answered by the current server was
//     issued: the newest liveness probe, or the handshake. No answer for
//     too long after it, and the session suspends itself (probeOverdue).
//   - leaderAt: a time at which the ensemble's leader, the server that
//     expires sessions, has provably heard from this session. The leader
//     cannot expire the session before leaderAt plus the timeout, so a
//     presumption counted from it never comes too late.
//
// lastZxid stands in for go-zookeeper/zk's own Conn.lastZxid; see sniffConn.
type connInfo struct {
	sessionID atomic.Int64 // from the latest ConnectResponse (0: expired)
	timeout   atomic.Int64 // negotiated timeout from the latest ConnectResponse
	lastZxid  atomic.Int64 // zxid of the latest reply to a request

	ackedAt  atomic.Int64 // unix nanos
	leaderAt atomic.Int64 // unix nanos
	probeAt  atomic.Int64 // issue time of the probe awaiting its answer, 0 if none

	cur atomic.Pointer[sniffConn] // the TCP connection in use, for cut

	// requested is the timeout asked for, used until one is negotiated.
	requested time.Duration
	// note, if set, records why a dial or a handshake failed (for the
	// error Connect returns when no session comes).
	note func(error)

	mu     sync.Mutex
	probes []int64 // issue times of recently answered probes, oldest first

	silentMu sync.Mutex
	silent   map[string]time.Time // servers that left us unanswered, and until when to try the others first

	heldMu   sync.Mutex
	heldSID  int64        // the session whose first "expired" answer was held back (see holdBack)
	heldAddr string       // the server that gave it
	heldAt   time.Time    // and when
	held     atomic.Int64 // answers held back so far (for tests)
}

// limit returns the session timeout to reason with: the negotiated one, or
// the requested one before any server answered.
func (i *connInfo) limit() time.Duration {
	if t := i.timeout.Load(); t > 0 {
		return time.Duration(t)
	}
	return i.requested
}

// storeMax raises a to v if v is later.
func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// handshaken records a session granted or resumed by a handshake sent at
// sent. Creating a session is a leader transaction, and a follower resumes
// one only after the leader has revalidated (and touched) it, so both
// clocks move to the send time.
func (i *connInfo) handshaken(sent int64) {
	storeMax(&i.ackedAt, sent)
	storeMax(&i.leaderAt, sent)
}

// probed records a liveness probe (a sync, which passes through the
// leader) issued at issued and answered. The server touched the session
// when the probe arrived; a follower passes its touches on to the leader
// in answer to the leader's pings, which come every half tick. The probe's
// answer shows the follower was in touch with the leader when the leader
// processed it, but not that the touch table sent after it arrived. The
// touch of a probe issued a third of the timeout before an answered one
// has: a whole leader ping round fits between them (the timeout is at
// least two ticks, so half a tick is at most a quarter of it). So leaderAt
// moves to the newest answered probe issued at least a third of the
// timeout before this one.
func (i *connInfo) probed(issued int64) {
	storeMax(&i.ackedAt, issued)
	lag := int64(i.limit() / 3)
	i.mu.Lock()
	defer i.mu.Unlock()
	i.probes = append(i.probes, issued)
	var leader int64
	keep := 0
	for k, at := range i.probes {
		if at <= issued-lag {
			leader, keep = at, k
		}
	}
	i.probes = append(i.probes[:0], i.probes[keep:]...)
	if leader > 0 {
		storeMax(&i.leaderAt, leader)
	}
}

// failed records a dial or handshake failure.
func (i *connInfo) failed(err error) {
	if i.note != nil {
		i.note(err)
	}
}

// cut closes the TCP connection in use, so that go-zookeeper/zk moves on
// to the next server at once.
func (i *connInfo) cut() {
	if c := i.cur.Load(); c != nil {
		c.Conn.Close()
	}
}

// cutSilent is cut for a server that stopped answering: it is also marked
// silent (see wentSilent).
func (i *connInfo) cutSilent() {
	if c := i.cur.Load(); c != nil {
		i.wentSilent(c.addr)
		c.Conn.Close()
	}
}

// wentSilent records that the server at addr left a handshake or a probe
// unanswered. For the next session timeout hostList tries the other
// servers first: a paused or hung server accepts connections and then
// answers nothing, so each try of it costs a whole handshake watch, and a
// client stuck in one while the rest of the ensemble elects a new leader
// can miss the timeout the new leader gives it.
func (i *connInfo) wentSilent(addr string) {
	i.silentMu.Lock()
	defer i.silentMu.Unlock()
	if i.silent == nil {
		i.silent = map[string]time.Time{}
	}
	i.silent[addr] = time.Now().Add(i.limit())
}

// answered clears addr's silent mark: it completed a handshake.
func (i *connInfo) answered(addr string) {
	i.silentMu.Lock()
	defer i.silentMu.Unlock()
	delete(i.silent, addr)
}

// holdBack reports whether an "expired" answer from addr to a handshake
// resuming session sid should be held back from go-zookeeper/zk, which
// takes any such answer as final, while another server is asked.
//
// A server can answer "expired" for a session the ensemble still holds:
// a leader paused (SIGSTOP, a long GC pause) for longer than the session
// timeout, while the other servers elected a new leader that revalidated
// the session, expires every session in its own tracker on resuming and
// answers a reconnect waiting in its socket before it notices it is no
// longer leader. The new leader still has the session and its ephemerals.
// So the first "expired" answer for a session is held back, and the server
// that gave it is tried last; the answer stands once a different server
// says the same, or the same server says it again a third of the timeout
// later (a standalone server, or the only one reachable). A real expiry is
// reported one handshake later in an ensemble, and up to a third of the
// timeout later with one server. Holding the answer back never lets a
// holder act on a lost session: the session stays suspended, and the
// loss policies already count from the last contact.
func (i *connInfo) holdBack(sid int64, addr string, now time.Time) bool {
	i.heldMu.Lock()
	defer i.heldMu.Unlock()
	hold := addr == i.heldAddr && now.Sub(i.heldAt) < i.limit()/3
	if i.heldSID != sid {
		i.heldSID, i.heldAddr, i.heldAt, hold = sid, addr, now, true
	}
	if hold {
		i.held.Add(1)
	}
	return hold
}

// resumed forgets a held-back answer: a handshake succeeded.
func (i *connInfo) resumed() {
	i.heldMu.Lock()
	i.heldSID, i.heldAddr = 0, ""
	i.heldMu.Unlock()
}

// isSilent reports whether addr is marked silent at now.
func (i *connInfo) isSilent(addr string, now time.Time) bool {
	i.silentMu.Lock()
	defer i.silentMu.Unlock()
	until, ok := i.silent[addr]
	if ok && !now.Before(until) {
		delete(i.silent, addr)
		return false
	}
	return ok
}

// sniffConn passes the byte stream through, decoding the first frame the
// server sends (the ConnectResponse) and the header of every later reply.
// A handshake that gets no answer within a third of the timeout is cut
// off (go-zookeeper/zk would wait ten read timeouts), so a silent server
// costs one short wait before the next one is tried.
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

	addr    string       // the server dialled
	sentAt  atomic.Int64 // when the ConnectRequest was written
	answer  atomic.Bool  // the ConnectResponse has arrived
	silent  atomic.Bool  // the handshake watch cut the connection
	watchMu sync.Mutex
	watch   *time.Timer // cuts a handshake left unanswered

	reqSID atomic.Int64 // the session the ConnectRequest asked to resume (0: a new one)

	// Write side, touched only by the writing goroutine.
	sentHandshake bool

	// Read side, touched only by the reading goroutine.
	handshook bool
	heldBack  bool   // the ConnectResponse said "expired" and is held back (see connInfo.holdBack)
	hdr       []byte // the ConnectResponse, or the current reply's header so far
	skip      int    // body bytes left to skip in the current frame
}

// Frame layouts (after the 4-byte length prefix) used below.
const (
	replyHeaderLen = 4 + 16 // length, xid, zxid, err
	opSetWatches   = 101
)

func (c *sniffConn) Write(p []byte) (int, error) {
	switch {
	case !c.sentHandshake:
		// The ConnectRequest: length, protocolVersion, lastZxidSeen, ...
		c.sentHandshake = true
		c.sentAt.Store(time.Now().UnixNano())
		if limit := c.info.limit(); limit > 0 {
			c.watchMu.Lock()
			c.watch = time.AfterFunc(limit/3, func() {
				if !c.answer.Load() {
					c.silent.Store(true)
					c.info.wentSilent(c.addr)
					c.info.failed(fmt.Errorf("handshake with %s: no answer within %v", c.addr, limit/3))
					c.Conn.Close()
				}
			})
			c.watchMu.Unlock()
		}
		if len(p) >= 16 {
			p = withZxid(p, 8, c.info.lastZxid.Load())
		}
		if len(p) >= 28 { // ..., timeOut, sessionId
			c.reqSID.Store(int64(binary.BigEndian.Uint64(p[20:28])))
		}
	case len(p) >= 20 && binary.BigEndian.Uint32(p[8:12]) == opSetWatches:
		// length, xid, opcode, relativeZxid, ...
		p = withZxid(p, 12, c.info.lastZxid.Load())
	}
	return c.Conn.Write(p)
}

// Close stops the handshake watch and closes the connection.
func (c *sniffConn) Close() error {
	c.stopWatch()
	return c.Conn.Close()
}

func (c *sniffConn) stopWatch() {
	c.watchMu.Lock()
	if c.watch != nil {
		c.watch.Stop()
	}
	c.watchMu.Unlock()
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
	if c.heldBack {
		// go-zookeeper/zk keeps the session's id and password after a
		// failed handshake that is not an expiry, and dials the next
		// server.
		c.Conn.Close()
		return 0, errHeldBack
	}
	if err != nil && !c.handshook && !c.silent.Load() {
		c.info.failed(fmt.Errorf("handshake with %s: %w", c.addr, err))
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
		if xid >= 0 && zxid > 0 {
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
	c.answer.Store(true)
	c.stopWatch()
	r, err := parseConnectResponse(c.hdr[4:])
	if sid := c.reqSID.Load(); err == nil && r.SessionID == 0 && sid != 0 && c.info.holdBack(sid, c.addr, time.Now()) {
		c.heldBack, c.handshook, c.hdr = true, true, nil
		c.info.wentSilent(c.addr) // ask the others first
		c.info.failed(fmt.Errorf("handshake with %s: %w", c.addr, errHeldBack))
		return nil
	}
	c.info.answered(c.addr)
	if err == nil {
		if r.SessionID != 0 {
			c.info.resumed()
		}
		c.info.sessionID.Store(r.SessionID)
		if r.SessionID == 0 {
			// Expired: go-zookeeper/zk starts its next session from zxid 0.
			c.info.lastZxid.Store(0)
		}
		if r.Timeout > 0 {
			c.info.timeout.Store(int64(r.Timeout))
			c.info.handshaken(c.sentAt.Load())
		}
	}
	c.handshook, c.hdr = true, nil
	return p
}

func sniffingDialer(d Dialer, info *connInfo) func(string, string, time.Duration) (net.Conn, error) {
	return func(network, addr string, timeout time.Duration) (net.Conn, error) {
		// go-zookeeper/zk allows a second per dial; a server that does not
		// even accept should not cost more than the handshake watch.
		timeout = min(timeout, max(info.limit()/3, 100*time.Millisecond))
		c, err := d(network, addr, timeout)
		if err != nil {
			info.failed(err)
			return nil, err
		}
		sc := &sniffConn{Conn: c, info: info, addr: addr}
		info.cur.Store(sc)
		return sc, nil
	}
}
