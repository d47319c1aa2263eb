package resilience

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// The expired-session answer captured in the source notes (seed 000): the
// server replies timeout 0, session 0 and a zeroed 16-byte password.
func TestParseConnectResponseExpiredCapture(t *testing.T) {
	raw, err := hex.DecodeString("0000002500000000000000000000000000000000000000100000000000000000000000000000000000")
	if err != nil {
		t.Fatal(err)
	}
	if got := int(raw[3]); got != len(raw)-4 {
		t.Fatalf("frame length %d, body %d", got, len(raw)-4)
	}
	r, err := parseConnectResponse(raw[4:])
	if err != nil {
		t.Fatal(err)
	}
	if r.SessionID != 0 || r.Timeout != 0 || len(r.Password) != 16 || r.ReadOnly {
		t.Fatalf("parsed %+v, want expired answer", r)
	}
}

func TestParseConnectResponseSession(t *testing.T) {
	// protocol 0, timeout 4000ms, session 0x1000abc, 16-byte password, readOnly 0
	raw, _ := hex.DecodeString("00000000" + "00000fa0" + "0000000001000abc" + "00000010" + strings.Repeat("ab", 16) + "00")
	r, err := parseConnectResponse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if r.SessionID != 0x1000abc || r.Timeout != 4*time.Second || len(r.Password) != 16 {
		t.Fatalf("parsed %+v", r)
	}
	if _, err := parseConnectResponse(raw[:10]); err == nil {
		t.Fatal("truncated frame parsed without error")
	}
	if _, err := parseConnectResponse(raw[:25]); err == nil {
		t.Fatal("truncated password parsed without error")
	}
}

func TestValidatePath(t *testing.T) {
	good := []string{"/", "/a", "/a/b", "/a.b/c", "/a/..b", "/ünïcode"}
	for _, p := range good {
		if err := ValidatePath(p, false); err != nil {
			t.Errorf("ValidatePath(%q) = %v, want nil", p, err)
		}
	}
	bad := []string{"", "a", "a/b", "/a/", "//a", "/a//b", "/a/./b", "/a/..", "/a\x00b", "/a\x01", "/\u0085", "/\uf000", "/\ufff5"}
	for _, p := range bad {
		if err := ValidatePath(p, false); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("ValidatePath(%q) = %v, want ErrInvalidPath", p, err)
		}
	}
	if err := ValidatePath("/a/", true); err != nil {
		t.Errorf("sequential trailing slash rejected: %v", err)
	}
}

func TestParseServers(t *testing.T) {
	got, err := parseServers([]string{"a:1", "b", " c:2181 , d:3"})
	if err != nil {
		t.Fatal(err)
	}
	want := "a:1,b:2181,c:2181,d:3"
	if strings.Join(got, ",") != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	for _, in := range [][]string{nil, {}, {""}, {" , "}} {
		if _, err := parseServers(in); !errors.Is(err, ErrNoServers) {
			t.Errorf("parseServers(%q) = %v, want ErrNoServers", in, err)
		}
	}
	for _, in := range []string{"a:b", "a:0", "a:70000", ":1", "a b:1", "[::1"} {
		if _, err := parseServers([]string{in}); !errors.Is(err, ErrInvalidServer) {
			t.Errorf("parseServers(%q) = %v, want ErrInvalidServer", in, err)
		}
	}
}

func TestStateAndCauseNames(t *testing.T) {
	for st := Connecting; st <= Closed; st++ {
		if strings.HasPrefix(st.String(), "State(") {
			t.Errorf("state %d has no name", st)
		}
	}
	if State(42).String() != "State(42)" || Cause(42).String() != "cause(42)" {
		t.Error("unknown values not formatted")
	}
	if !Connected.HasSession() || !Reconnected.HasSession() || Suspended.HasSession() || Lost.HasSession() {
		t.Error("HasSession wrong")
	}
}

func TestNewUUID(t *testing.T) {
	u := NewUUID()
	if len(u) != 36 || u[14] != '4' || strings.Count(u, "-") != 4 {
		t.Fatalf("bad uuid %q", u)
	}
	if NewUUID() == u {
		t.Fatal("uuids repeat")
	}
}

// The sniffer follows the reply stream frame by frame, however the reads
// split it, moves both liveness clocks to the send time of the answered
// handshake, and takes the zxid of each reply to a request for itself
// (go-zookeeper/zk sees 0).
func TestSnifferReadsHandshakeAndZxids(t *testing.T) {
	info := &connInfo{}
	c := &sniffConn{info: info}
	c.sentAt.Store(100) // the handshake, sent at 100
	hs, _ := hex.DecodeString("00000024" + "00000000" + "000007d0" + "0000000000000abc" + "00000010" + strings.Repeat("00", 16))
	reply := func(xid, zxid string) []byte {
		b, _ := hex.DecodeString("00000014" + xid + zxid + "00000000" + "cafebabe")
		return b
	}
	stream := append([]byte(nil), hs...)
	for _, r := range [][]byte{
		reply("00000005", "0000000100000007"),
		reply("fffffffe", "0000000100000009"), // ping: no zxid taken
		reply("ffffffff", "ffffffffffffffff"), // notification
		reply("00000006", "0000000000000000"), // zxid 0: keep the last
		reply("fffffffe", "0000000100000009"),
	} {
		stream = append(stream, r...)
	}
	orig := append([]byte(nil), stream...)
	// Feed it one byte at a time: the worst split.
	for i := range stream {
		if i == len(hs) {
			if info.sessionID.Load() != 0xabc || info.timeout.Load() != int64(2*time.Second) ||
				info.ackedAt.Load() != 100 || info.leaderAt.Load() != 100 || !c.answer.Load() {
				t.Fatalf("after handshake: session %x timeout %v acked %d leader %d answered %v", info.sessionID.Load(),
					time.Duration(info.timeout.Load()), info.ackedAt.Load(), info.leaderAt.Load(), c.answer.Load())
			}
		}
		c.absorb(stream[i : i+1])
	}
	if info.ackedAt.Load() != 100 || info.leaderAt.Load() != 100 {
		t.Fatalf("ping replies moved the clocks: acked %d leader %d", info.ackedAt.Load(), info.leaderAt.Load())
	}
	if got := info.lastZxid.Load(); got != 0x100000007 {
		t.Fatalf("lastZxid %#x, want 0x100000007", got)
	}
	// Only the zxid fields changed, and all of them read 0.
	if !bytes.Equal(stream[:len(hs)], orig[:len(hs)]) {
		t.Fatal("handshake bytes changed")
	}
	for f, off := 0, len(hs); off < len(stream); f, off = f+1, off+24 {
		want := append(append(append([]byte(nil), orig[off:off+8]...), make([]byte, 8)...), orig[off+16:off+24]...)
		if !bytes.Equal(stream[off:off+24], want) {
			t.Fatalf("frame %d: got %x, want %x", f, stream[off:off+24], want)
		}
	}
}

// The ConnectRequest and SetWatches requests leave with the wrapper's
// lastZxid in place of go-zookeeper/zk's; everything else is untouched, and
// go-zookeeper/zk's buffer is not written to.
func TestSnifferWritesItsZxid(t *testing.T) {
	var got bytes.Buffer
	info := &connInfo{}
	info.lastZxid.Store(0x1122334455667788)
	c := &sniffConn{Conn: writerConn{w: &got}, info: info}
	connect, _ := hex.DecodeString("0000002c" + "00000000" + "0000000000000000" + "00000fa0" + "0000000000000abc" + "00000010" + strings.Repeat("ab", 16))
	keep := append([]byte(nil), connect...)
	if n, err := c.Write(connect); n != len(connect) || err != nil {
		t.Fatalf("write: %d %v", n, err)
	}
	if !bytes.Equal(connect, keep) {
		t.Fatal("caller's buffer modified")
	}
	want := append(append(append([]byte(nil), keep[:8]...), 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88), keep[16:]...)
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("ConnectRequest sent as %x, want %x", got.Bytes(), want)
	}
	c.handshook = true
	got.Reset()
	setWatches, _ := hex.DecodeString("00000022" + "fffffff8" + "00000065" + "0000000000000000" + "00000000" + "00000001" + "00000002" + "2f61" + "00000000")
	c.Write(setWatches)
	if b := got.Bytes(); !bytes.Equal(b[12:20], want[8:16]) || !bytes.Equal(b[:12], setWatches[:12]) || !bytes.Equal(b[20:], setWatches[20:]) {
		t.Fatalf("SetWatches sent as %x", b)
	}
	got.Reset()
	getData, _ := hex.DecodeString("0000000f" + "00000007" + "00000004" + "00000002" + "2f61" + "01")
	c.Write(getData)
	if !bytes.Equal(got.Bytes(), getData) {
		t.Fatalf("GetData changed: %x", got.Bytes())
	}
}

// writerConn records what is written to it; nothing else is called.
type writerConn struct {
	net.Conn
	w *bytes.Buffer
}

func (c writerConn) Write(p []byte) (int, error) { return c.w.Write(p) }

// However the reads split the stream, the same bytes come out, every reply
// header's zxid blanked, and the same zxid is kept.
func TestSnifferSplitsAlike(t *testing.T) {
	hs, _ := hex.DecodeString("00000024" + "00000000" + "000007d0" + "0000000000000abc" + "00000010" + strings.Repeat("00", 16))
	// Each reply as length+xid, zxid, err+body.
	replies := [][3]string{
		{"00000014" + "00000001", "0000000200000003", "00000000" + "01020304"},
		{"00000010" + "fffffffe", "0000000200000004", "00000000"},
		{"0000001f" + "ffffffff", "ffffffffffffffff", "00000000" + "00000003" + "00000003" + "00000003" + "2f6161"},
		{"00000010" + "00000002", "0000000200000005", "ffffff9b"},
	}
	var in, blanked string
	for _, r := range replies {
		in += r[0] + r[1] + r[2]
		blanked += r[0] + strings.Repeat("0", 16) + r[2]
	}
	frames, _ := hex.DecodeString(in)
	want, _ := hex.DecodeString(blanked)
	for _, chunk := range []int{1, 2, 5, 13, 1 << 10} {
		c := &sniffConn{info: &connInfo{}}
		stream := append(append([]byte(nil), hs...), frames...)
		for i := 0; i < len(stream); i += chunk {
			c.absorb(stream[i:min(i+chunk, len(stream))])
		}
		if !bytes.Equal(stream[len(hs):], want) {
			t.Fatalf("chunks of %d: replies passed on as %x, want %x", chunk, stream[len(hs):], want)
		}
		if z := c.info.lastZxid.Load(); z != 0x200000005 {
			t.Fatalf("chunks of %d: lastZxid %#x, want 0x200000005", chunk, z)
		}
	}
}

// An answered probe moves ackedAt to its issue time at once, but leaderAt
// only to the newest answered probe issued at least T/3 before it.
func TestProbeClocks(t *testing.T) {
	const T = 600 // nanoseconds, for round numbers
	info := &connInfo{requested: T}
	info.handshaken(1000)
	for _, step := range []struct{ issued, acked, leader int64 }{
		{1100, 1100, 1000}, // T/6 later: leader stays at the handshake
		{1200, 1200, 1000}, // 1000 is the handshake (direct), not a probe
		{1300, 1300, 1100}, // 1100 <= 1300-200
		{1350, 1350, 1100},
		{1500, 1500, 1300},
		{1400, 1500, 1300}, // a late answer to an older probe moves nothing back
	} {
		info.probed(step.issued)
		if a, l := info.ackedAt.Load(), info.leaderAt.Load(); a != step.acked || l != step.leader {
			t.Fatalf("after probe issued at %d: acked %d leader %d, want %d %d", step.issued, a, l, step.acked, step.leader)
		}
	}
	if len(info.probes) > 4 {
		t.Fatalf("probe history grows: %v", info.probes)
	}
}

// The host list tries every server once before pausing, pauses once per
// round without success, and starts over after a success.
func TestHostListPausesPerRound(t *testing.T) {
	info := &connInfo{requested: 200 * time.Millisecond} // pause 10-20ms
	never := make(chan struct{})
	h := &hostList{info: info, quit: []<-chan struct{}{never, never}}
	if err := h.Init([]string{"a:1", "b:1", "c:1"}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var paused []int
	for i := 1; i <= 7; i++ {
		start := time.Now()
		srv, retry := h.Next()
		if retry {
			t.Fatal("Next reported retryStart: go-zookeeper/zk would sleep a second and fail queued requests")
		}
		if i <= 3 {
			seen[srv] = true
		}
		if time.Since(start) >= 10*time.Millisecond {
			paused = append(paused, i)
		}
	}
	if len(seen) != 3 {
		t.Fatalf("first round visited %v, want all three servers", seen)
	}
	if fmt.Sprint(paused) != "[4 7]" {
		t.Fatalf("paused before tries %v, want [4 7]", paused)
	}
	h.Connected()
	start := time.Now()
	h.Next()
	if time.Since(start) >= 10*time.Millisecond {
		t.Fatal("paused right after a success")
	}
}

// TestHostListSkipsSilentServers: a server marked silent (a handshake or a
// probe it left unanswered) is not tried again for a session timeout while
// another server is not marked; with every server marked, the rotation is
// the plain one; a handshake it answers clears the mark.
func TestHostListSkipsSilentServers(t *testing.T) {
	info := &connInfo{requested: time.Minute}
	never := make(chan struct{})
	h := &hostList{info: info, quit: []<-chan struct{}{never, never}}
	if err := h.Init([]string{"a:1", "b:1", "c:1"}); err != nil {
		t.Fatal(err)
	}
	info.wentSilent("b:1")
	count := func(tries int) map[string]int {
		seen := map[string]int{}
		for range tries {
			h.Connected() // no pause between rounds: this is about the order
			srv, _ := h.Next()
			seen[srv]++
		}
		return seen
	}
	if seen := count(9); seen["b:1"] != 0 || seen["a:1"] == 0 || seen["c:1"] == 0 {
		t.Fatalf("with b silent, 9 tries visited %v; want a and c, never b", seen)
	}
	info.wentSilent("a:1")
	info.wentSilent("c:1")
	if seen := count(9); seen["a:1"] != 3 || seen["b:1"] != 3 || seen["c:1"] != 3 {
		t.Fatalf("with every server silent, 9 tries visited %v; want each 3 times", seen)
	}
	info.answered("a:1")
	if seen := count(4); seen["a:1"] != 4 {
		t.Fatalf("a answered, b and c silent: 4 tries visited %v; want a only", seen)
	}
	short := &connInfo{requested: 20 * time.Millisecond}
	short.wentSilent("x:1")
	if !short.isSilent("x:1", time.Now()) {
		t.Fatal("x not silent right after it went silent")
	}
	if short.isSilent("x:1", time.Now().Add(21*time.Millisecond)) {
		t.Fatal("x still silent a session timeout after it went silent")
	}
}

// The rule for believing an "expired" answer to a reconnect: the first for
// a session is held back; a second from another server stands; the same
// server again stands only a third of the timeout after the first; a
// successful handshake starts over.
func TestHoldBackExpiredAnswer(t *testing.T) {
	info := &connInfo{requested: 3 * time.Second}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		sid  int64
		addr string
		at   time.Duration
		want bool
	}{
		{7, "a", 0, true},                       // first: held back
		{7, "a", 500 * time.Millisecond, true},  // same server, soon: still held
		{7, "b", 600 * time.Millisecond, false}, // another server agrees: stands
		{7, "a", 2 * time.Second, false},        // same server a third of T later: stands
		{8, "a", 2 * time.Second, true},         // another session: held back again
	}
	for i, st := range steps {
		if got := info.holdBack(st.sid, st.addr, t0.Add(st.at)); got != st.want {
			t.Errorf("step %d (session %d from %s at +%v): held back %v, want %v", i, st.sid, st.addr, st.at, got, st.want)
		}
	}
	info.resumed()
	if !info.holdBack(8, "a", t0.Add(3*time.Second)) {
		t.Error("after a successful handshake, the next expired answer for the session was not held back")
	}
	if got := info.held.Load(); got != 4 {
		t.Errorf("held %d answers, want 4", got)
	}
}
