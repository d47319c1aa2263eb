package zktest

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// This file holds the small part of the ZooKeeper client wire protocol that
// zktest speaks itself: the ConnectRequest/ConnectResponse handshake, the
// closeSession request and the four-letter-word admin commands.
//
// Every frame on a client connection is a 4-byte big-endian length followed
// by that many bytes of payload. The first frame a client sends is a
// ConnectRequest and the first frame the server answers with is a
// ConnectResponse; after that, requests start with a request header
// (xid, opcode) and replies with a reply header (xid, zxid, err).

const (
	// opCloseSession is the opcode of the closeSession request.
	opCloseSession int32 = -11

	// maxFrameSize bounds the frames zktest reads itself; ZooKeeper's own
	// default jute.maxbuffer is about 1 MiB.
	maxFrameSize = 1 << 20

	// maxConnectResponseSize bounds what the proxy is prepared to sniff as a
	// ConnectResponse. A real one is 37 bytes (16-byte password).
	maxConnectResponseSize = 4096

	// minConnectResponseSize is the payload size of a ConnectResponse with
	// an empty password and no readOnly flag.
	minConnectResponseSize = 4 + 4 + 8 + 4
)

// connectRequest is the first frame a client sends on a connection.
type connectRequest struct {
	ProtocolVersion int32
	LastZxidSeen    int64
	TimeOut         int32 // requested session timeout in milliseconds
	SessionID       int64
	Passwd          []byte
	ReadOnly        bool
}

// encode returns the request as a complete frame, length prefix included.
func (r connectRequest) encode() []byte {
	payload := 4 + 8 + 4 + 8 + 4 + len(r.Passwd) + 1
	b := make([]byte, 0, 4+payload)
	b = binary.BigEndian.AppendUint32(b, uint32(payload))
	b = binary.BigEndian.AppendUint32(b, uint32(r.ProtocolVersion))
	b = binary.BigEndian.AppendUint64(b, uint64(r.LastZxidSeen))
	b = binary.BigEndian.AppendUint32(b, uint32(r.TimeOut))
	b = binary.BigEndian.AppendUint64(b, uint64(r.SessionID))
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Passwd)))
	b = append(b, r.Passwd...)
	if r.ReadOnly {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return b
}

// minConnectRequestSize and maxConnectRequestSize bound the payload of what
// the proxy takes for a ConnectRequest: one with an empty password and no
// readOnly flag, and one with a password far longer than ZooKeeper's 16
// bytes.
const (
	minConnectRequestSize = 4 + 8 + 4 + 8 + 4
	maxConnectRequestSize = 4096
)

// readConnectRequest reads a client's first frame from r and returns it
// whole (length prefix included) with the session id it asks to resume (0
// for a new session). When the first bytes are no plausible ConnectRequest
// (a four-letter word such as "srvr"), it returns them as read, with id 0.
// On a read error it returns what it read and the error.
func readConnectRequest(r io.Reader) (frame []byte, id int64, err error) {
	var head [4]byte
	n, err := io.ReadFull(r, head[:])
	if err != nil {
		return head[:n], 0, err
	}
	size := binary.BigEndian.Uint32(head[:])
	if size < minConnectRequestSize || size > maxConnectRequestSize {
		return head[:], 0, nil
	}
	frame = make([]byte, 4+size)
	copy(frame, head[:])
	n, err = io.ReadFull(r, frame[4:])
	if err != nil {
		return frame[:4+n], 0, err
	}
	return frame, int64(binary.BigEndian.Uint64(frame[4+4+8+4:])), nil
}

// connectResponse is the first frame a server sends on a connection.
// SessionID 0 means the session the client asked to resume has expired.
type connectResponse struct {
	ProtocolVersion int32
	TimeOut         int32 // negotiated session timeout in milliseconds
	SessionID       int64
	Passwd          []byte
	ReadOnly        bool
	HasReadOnly     bool // whether the optional readOnly byte was present
}

// parseConnectResponse decodes a ConnectResponse payload (the bytes after
// the length prefix).
func parseConnectResponse(p []byte) (connectResponse, error) {
	var r connectResponse
	if len(p) < minConnectResponseSize {
		return r, fmt.Errorf("zktest: connect response too short: %d bytes, want at least %d", len(p), minConnectResponseSize)
	}
	r.ProtocolVersion = int32(binary.BigEndian.Uint32(p[0:4]))
	r.TimeOut = int32(binary.BigEndian.Uint32(p[4:8]))
	r.SessionID = int64(binary.BigEndian.Uint64(p[8:16]))
	n := int32(binary.BigEndian.Uint32(p[16:20]))
	rest := p[20:]
	switch {
	case n == -1: // a null buffer in jute
	case n < 0 || int(n) > len(rest):
		return r, fmt.Errorf("zktest: connect response has a bad password length %d (%d bytes left)", n, len(rest))
	default:
		r.Passwd = append([]byte{}, rest[:n]...)
		rest = rest[n:]
	}
	if len(rest) > 0 {
		r.HasReadOnly = true
		r.ReadOnly = rest[0] != 0
	}
	return r, nil
}

// encodeRequestHeader returns a complete frame holding only a request header,
// which is the whole of requests without a body such as closeSession.
func encodeRequestHeader(xid, opcode int32) []byte {
	b := make([]byte, 0, 12)
	b = binary.BigEndian.AppendUint32(b, 8)
	b = binary.BigEndian.AppendUint32(b, uint32(xid))
	b = binary.BigEndian.AppendUint32(b, uint32(opcode))
	return b
}

// replyHeader starts every reply after the ConnectResponse.
type replyHeader struct {
	Xid  int32
	Zxid int64
	Err  int32
}

// parseReplyHeader decodes the reply header at the start of a reply payload.
func parseReplyHeader(p []byte) (replyHeader, error) {
	if len(p) < 16 {
		return replyHeader{}, fmt.Errorf("zktest: reply too short: %d bytes, want at least 16", len(p))
	}
	return replyHeader{
		Xid:  int32(binary.BigEndian.Uint32(p[0:4])),
		Zxid: int64(binary.BigEndian.Uint64(p[4:12])),
		Err:  int32(binary.BigEndian.Uint32(p[12:16])),
	}, nil
}

// readFrame reads one length-prefixed frame and returns its payload.
func readFrame(r io.Reader, limit int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int32(binary.BigEndian.Uint32(hdr[:]))
	if n < 0 || int(n) > limit {
		return nil, fmt.Errorf("zktest: bad frame length %d (limit %d)", n, limit)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return p, nil
}

// connectResponseSniffer watches the first bytes a server sends on a
// connection and decodes them as a ConnectResponse. It is fed the stream in
// arbitrary chunks and gives up on anything that does not look like one
// (for instance the text answer to a four-letter word).
type connectResponseSniffer struct {
	buf  []byte
	done bool
}

// feed consumes the next chunk of the server->client stream. It reports a
// decoded response once, when the complete first frame has been seen.
func (s *connectResponseSniffer) feed(b []byte) (connectResponse, bool) {
	if s.done {
		return connectResponse{}, false
	}
	s.buf = append(s.buf, b...)
	if len(s.buf) < 4 {
		return connectResponse{}, false
	}
	n := int(int32(binary.BigEndian.Uint32(s.buf[:4])))
	if n < minConnectResponseSize || n > maxConnectResponseSize {
		s.finish()
		return connectResponse{}, false
	}
	if len(s.buf) < 4+n {
		return connectResponse{}, false
	}
	r, err := parseConnectResponse(s.buf[4 : 4+n])
	s.finish()
	if err != nil {
		return connectResponse{}, false
	}
	return r, true
}

func (s *connectResponseSniffer) finish() {
	s.done = true
	s.buf = nil
}

// errorCodeName names the ZooKeeper error codes zktest may see.
func errorCodeName(code int32) string {
	switch code {
	case 0:
		return "ok"
	case -4:
		return "connection loss"
	case -112:
		return "session expired"
	case -118:
		return "session moved"
	case -101:
		return "no node"
	case -102:
		return "no auth"
	}
	return fmt.Sprintf("error %d", code)
}

// closeSession resumes session id on the server at addr (bypassing any
// proxy) and closes it, which is exactly what a client does when it calls
// close(). Afterwards the ensemble has forgotten the session: its ephemeral
// nodes are gone and its next reconnect is answered "expired". It reports
// alreadyGone when the server says the session had already expired.
func closeSession(ctx context.Context, addr string, id int64, passwd []byte) (alreadyGone bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}

	req := connectRequest{TimeOut: 10000, SessionID: id, Passwd: passwd}
	if _, err := conn.Write(req.encode()); err != nil {
		return false, fmt.Errorf("sending connect request: %w", ctxErr(ctx, err))
	}
	br := bufio.NewReader(conn)
	p, err := readFrame(br, maxFrameSize)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return false, fmt.Errorf("server closed the connection instead of answering the connect request (is it serving?)")
		}
		return false, fmt.Errorf("reading connect response: %w", ctxErr(ctx, err))
	}
	resp, err := parseConnectResponse(p)
	if err != nil {
		return false, err
	}
	if resp.SessionID == 0 {
		return true, nil
	}
	if resp.SessionID != id {
		return false, fmt.Errorf("server resumed session 0x%x, want 0x%x", resp.SessionID, id)
	}

	const xid = 1
	if _, err := conn.Write(encodeRequestHeader(xid, opCloseSession)); err != nil {
		return false, fmt.Errorf("sending closeSession: %w", ctxErr(ctx, err))
	}
	for {
		p, err := readFrame(br, maxFrameSize)
		if err != nil {
			return false, fmt.Errorf("reading closeSession reply: %w", ctxErr(ctx, err))
		}
		h, err := parseReplyHeader(p)
		if err != nil {
			return false, err
		}
		if h.Xid != xid { // a notification (-1) or ping reply (-2): skip
			continue
		}
		switch h.Err {
		case 0:
			return false, nil
		case -112: // sessionExpired: it went away between the two frames
			return true, nil
		}
		return false, fmt.Errorf("closeSession failed: %s", errorCodeName(h.Err))
	}
}

// ctxErr prefers the context's error over the I/O error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ce := ctx.Err(); ce != nil {
		return ce
	}
	return err
}

// fourLetterWord sends a four-letter admin command (such as "srvr") to the
// server at addr and returns its whole answer. The server closes the
// connection after answering.
func fourLetterWord(ctx context.Context, addr, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := io.WriteString(conn, cmd); err != nil {
		return "", ctxErr(ctx, err)
	}
	b, err := io.ReadAll(io.LimitReader(conn, maxFrameSize))
	if err != nil {
		return string(b), ctxErr(ctx, err)
	}
	return string(b), nil
}

// notServingText is how a ZooKeeper server answers "srvr" while it is not
// part of a quorum (or still starting up).
const notServingText = "not currently serving requests"

// parseMode extracts the value of the "Mode:" line of a "srvr" answer. Its
// errors describe why there is none.
func parseMode(srvr string) (string, error) {
	if strings.Contains(srvr, notServingText) {
		return "", fmt.Errorf("srvr answered %q", strings.TrimSpace(srvr))
	}
	for line := range strings.Lines(srvr) {
		if v, ok := strings.CutPrefix(line, "Mode:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	if strings.TrimSpace(srvr) == "" {
		return "", errors.New("empty answer to srvr")
	}
	return "", fmt.Errorf("unexpected answer to srvr: %q", truncate(srvr, 200))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
