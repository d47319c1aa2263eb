package zktest

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
)

// expiredReply is a real ConnectResponse captured from ZooKeeper 3.8 when a
// client tried to resume an expired session: protocolVersion 0, timeOut 0,
// sessionId 0, a 16-byte all-zero password and readOnly 0.
const expiredReply = "0000002500000000000000000000000000000000000000100000000000000000000000000000000000"

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseCapturedExpiredReply(t *testing.T) {
	frame := mustHex(t, expiredReply)
	payload, err := readFrame(bytes.NewReader(frame), maxFrameSize)
	if err != nil {
		t.Fatalf("readFrame: %v", err)
	}
	if len(payload) != 0x25 {
		t.Fatalf("payload length = %d, want 0x25", len(payload))
	}
	r, err := parseConnectResponse(payload)
	if err != nil {
		t.Fatalf("parseConnectResponse: %v", err)
	}
	if r.ProtocolVersion != 0 || r.TimeOut != 0 || r.SessionID != 0 {
		t.Errorf("got version %d, timeout %d, session %d; want all 0", r.ProtocolVersion, r.TimeOut, r.SessionID)
	}
	if !bytes.Equal(r.Passwd, make([]byte, 16)) {
		t.Errorf("password = %x, want 16 zero bytes", r.Passwd)
	}
	if !r.HasReadOnly || r.ReadOnly {
		t.Errorf("readOnly present=%v value=%v, want present and false", r.HasReadOnly, r.ReadOnly)
	}
}

func TestParseConnectResponse(t *testing.T) {
	// protocolVersion 0, timeOut 4000, session 0x100000abc, 16-byte password, readOnly 1.
	pw := []byte("0123456789abcdef")
	payload := mustHex(t, "00000000"+"00000fa0"+"0000000100000abc"+"00000010")
	payload = append(payload, pw...)
	payload = append(payload, 1)
	r, err := parseConnectResponse(payload)
	if err != nil {
		t.Fatal(err)
	}
	if r.TimeOut != 4000 || r.SessionID != 0x100000abc || !bytes.Equal(r.Passwd, pw) || !r.HasReadOnly || !r.ReadOnly {
		t.Errorf("got %+v", r)
	}

	// Without the optional readOnly byte.
	r, err = parseConnectResponse(payload[:len(payload)-1])
	if err != nil {
		t.Fatal(err)
	}
	if r.HasReadOnly || r.SessionID != 0x100000abc {
		t.Errorf("got %+v, want no readOnly flag", r)
	}

	// A null (-1) password.
	r, err = parseConnectResponse(mustHex(t, "00000000"+"00000fa0"+"0000000100000abc"+"ffffffff"))
	if err != nil || r.Passwd != nil {
		t.Errorf("null password: got %+v, %v", r, err)
	}

	for name, p := range map[string][]byte{
		"short":              payload[:19],
		"password too long":  mustHex(t, "00000000"+"00000fa0"+"0000000100000abc"+"00000011"+"00"),
		"negative pw length": mustHex(t, "00000000"+"00000fa0"+"0000000100000abc"+"fffffffe"),
	} {
		if _, err := parseConnectResponse(p); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestEncodeConnectRequest(t *testing.T) {
	req := connectRequest{
		ProtocolVersion: 0,
		LastZxidSeen:    0,
		TimeOut:         10000,
		SessionID:       0x0102030405060708,
		Passwd:          []byte{0xaa, 0xbb},
	}
	got := req.encode()
	want := mustHex(t, ""+
		"0000001f"+ // length 31 = 4+8+4+8+4+2+1
		"00000000"+ // protocolVersion
		"0000000000000000"+ // lastZxidSeen
		"00002710"+ // timeOut 10000
		"0102030405060708"+ // sessionId
		"00000002"+"aabb"+ // password
		"00") // readOnly false
	if !bytes.Equal(got, want) {
		t.Fatalf("encode() =\n%x\nwant\n%x", got, want)
	}

	// The standard 16-byte password gives a 45-byte payload.
	req.Passwd = make([]byte, 16)
	req.ReadOnly = true
	got = req.encode()
	if len(got) != 4+45 || got[3] != 45 || got[len(got)-1] != 1 {
		t.Fatalf("encode() with 16-byte password = %x", got)
	}
}

func TestEncodeCloseSession(t *testing.T) {
	got := encodeRequestHeader(1, opCloseSession)
	want := mustHex(t, "00000008"+"00000001"+"fffffff5")
	if !bytes.Equal(got, want) {
		t.Fatalf("closeSession frame = %x, want %x", got, want)
	}
}

func TestParseReplyHeader(t *testing.T) {
	h, err := parseReplyHeader(mustHex(t, "00000001"+"0000000200000003"+"ffffff90"))
	if err != nil {
		t.Fatal(err)
	}
	if h.Xid != 1 || h.Zxid != 0x200000003 || h.Err != -112 {
		t.Errorf("got %+v", h)
	}
	if _, err := parseReplyHeader(make([]byte, 15)); err == nil {
		t.Error("short reply header: no error")
	}
}

func TestReadFrame(t *testing.T) {
	if _, err := readFrame(bytes.NewReader(mustHex(t, "00000005"+"0102")), maxFrameSize); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated frame: err = %v, want ErrUnexpectedEOF", err)
	}
	if _, err := readFrame(bytes.NewReader(mustHex(t, "7fffffff")), maxFrameSize); err == nil {
		t.Error("huge frame: no error")
	}
	if _, err := readFrame(bytes.NewReader(nil), maxFrameSize); !errors.Is(err, io.EOF) {
		t.Errorf("empty stream: err = %v, want EOF", err)
	}
}

func TestSnifferByteByByte(t *testing.T) {
	pw := []byte("0123456789abcdef")
	frame := mustHex(t, "00000025"+"00000000"+"00001770"+"00000000deadbeef"+"00000010")
	frame = append(frame, pw...)
	frame = append(frame, 0)
	frame = append(frame, mustHex(t, "0000001000000000")...) // the next frame must be ignored

	var s connectResponseSniffer
	found := 0
	for i := range frame {
		if r, ok := s.feed(frame[i : i+1]); ok {
			found++
			if r.SessionID != 0xdeadbeef || r.TimeOut != 6000 || !bytes.Equal(r.Passwd, pw) {
				t.Errorf("sniffed %+v", r)
			}
			if i != 4+0x25-1 {
				t.Errorf("response reported after byte %d, want %d", i, 4+0x25-1)
			}
		}
	}
	if found != 1 {
		t.Fatalf("sniffer reported %d responses, want 1", found)
	}
}

func TestSnifferIgnoresNonProtocol(t *testing.T) {
	var s connectResponseSniffer
	if _, ok := s.feed([]byte("Zookeeper version: 3.8.0\nMode: standalone\n")); ok {
		t.Fatal("sniffer decoded a four-letter-word answer")
	}
	if !s.done {
		t.Fatal("sniffer did not give up")
	}
	if _, ok := s.feed(mustHex(t, expiredReply)); ok {
		t.Fatal("sniffer decoded a frame after giving up")
	}
}

func TestParseMode(t *testing.T) {
	srvr := "Zookeeper version: 3.8.0-abc, built on 2024-12-29 17:54 UTC\n" +
		"Latency min/avg/max: 0/0.0/0\nReceived: 7\nSent: 6\nConnections: 1\nOutstanding: 0\n" +
		"Zxid: 0x100000000\nMode: follower\nNode count: 5\n"
	if m, err := parseMode(srvr); err != nil || m != "follower" {
		t.Errorf("parseMode = %q, %v; want follower", m, err)
	}
	if _, err := parseMode("This ZooKeeper instance is not currently serving requests\n"); err == nil || !strings.Contains(err.Error(), "not currently serving") {
		t.Errorf("not serving: err = %v", err)
	}
	for _, s := range []string{"", "srvr is not executed because it is not in the whitelist.\n"} {
		if _, err := parseMode(s); err == nil {
			t.Errorf("parseMode(%q): no error", s)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	tb := newTailBuffer(16)
	for i := range 20 {
		tb.Write([]byte{byte('a' + i), '\n'})
	}
	if got := tb.lastLines(3); got != "r\ns\nt\n" {
		t.Errorf("lastLines(3) = %q", got)
	}
	if !tb.contains("t\n") || tb.contains("a\n") {
		t.Errorf("contains: buffer should keep only the tail")
	}
	tb.Write([]byte("partial"))
	if got := tb.lastLines(2); got != "t\npartial\n" {
		t.Errorf("lastLines with partial line = %q", got)
	}
}

func TestPrefixWriter(t *testing.T) {
	var buf bytes.Buffer
	w := &prefixWriter{prefix: "zk1| ", sink: &lockedWriter{w: &buf}}
	w.Write([]byte("one\ntw"))
	w.Write([]byte("o\nthree"))
	w.flush()
	if got, want := buf.String(), "zk1| one\nzk1| two\nzk1| three\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
