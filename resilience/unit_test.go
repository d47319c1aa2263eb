package resilience

import (
	"encoding/hex"
	"errors"
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
// split it, and moves heardAt to the send time of each answered ping.
func TestSnifferTracksAnsweredPings(t *testing.T) {
	info := &connInfo{}
	c := &sniffConn{info: info, gate: make(chan struct{})}
	c.pending = []int64{100} // the handshake, sent at 100
	hs, _ := hex.DecodeString("00000024" + "00000000" + "000007d0" + "0000000000000abc" + "00000010" + strings.Repeat("00", 16))
	reply := func(xid string) []byte {
		b, _ := hex.DecodeString("00000014" + xid + "0000000000000001" + "00000000" + "cafebabe")
		return b
	}
	stream := append(append(append(hs, reply("00000005")...), reply("fffffffe")...), reply("fffffffe")...)
	// Feed it one byte at a time: the worst split.
	for i := range stream {
		if i == len(hs) {
			if info.sessionID.Load() != 0xabc || info.timeout.Load() != int64(2*time.Second) || info.heardAt.Load() != 100 {
				t.Fatalf("after handshake: session %x timeout %v heard %d", info.sessionID.Load(), time.Duration(info.timeout.Load()), info.heardAt.Load())
			}
			c.pending = append(c.pending, 200, 300) // two pings
		}
		c.absorb(stream[i : i+1])
	}
	if got := info.heardAt.Load(); got != 300 {
		t.Fatalf("heardAt %d after two ping replies, want 300", got)
	}
	if got := info.prevHeardAt.Load(); got != 200 {
		t.Fatalf("prevHeardAt %d, want 200 (the ping before)", got)
	}
	if len(c.pending) != 0 {
		t.Fatalf("pending %v", c.pending)
	}
}
