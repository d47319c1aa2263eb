package zktest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// backend is a TCP server for proxy tests; handle runs per connection.
type backend struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func startBackend(t *testing.T, handle func(net.Conn)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{ln: ln}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func echo(c net.Conn) { _, _ = io.Copy(c, c) }

func newTestProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := NewProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("proxy Close: %v", err)
		}
	})
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads len(msg) bytes back within timeout.
func roundTrip(c net.Conn, msg string, timeout time.Duration) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, len(msg))
	n, err := io.ReadFull(c, buf)
	return string(buf[:n]), err
}

// expectSilence checks that nothing arrives on c for d.
func expectSilence(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	var b [1]byte
	n, err := c.Read(b[:])
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("expected silence, got %d bytes, err %v", n, err)
	}
}

// expectClosed checks that c is closed by the other side within d, without
// data arriving first. A reset counts as closed: closing a socket that has
// unread input (as a partitioned connection may) sends RST instead of FIN.
func expectClosed(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	b, err := io.ReadAll(c)
	if len(b) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("expected the connection to be closed without data, got %q, err %v", b, err)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestProxyForwards(t *testing.T) {
	b := startBackend(t, echo)
	p := newTestProxy(t, b.ln.Addr().String())
	if p.Target() != b.ln.Addr().String() {
		t.Errorf("Target() = %s", p.Target())
	}
	c := dial(t, p.Addr())
	for _, msg := range []string{"hello", "world", string(bytes.Repeat([]byte("x"), 100000))} {
		if got, err := roundTrip(c, msg, 2*time.Second); err != nil || got != msg {
			t.Fatalf("round trip of %d bytes: got %d bytes, %v", len(msg), len(got), err)
		}
	}
}

func TestProxyHalfClose(t *testing.T) {
	// The backend answers once the client has finished sending, like a
	// request/response protocol over a half-closed connection.
	b := startBackend(t, func(c net.Conn) {
		data, _ := io.ReadAll(c)
		_, _ = c.Write(append([]byte("got:"), data...))
	})
	p := newTestProxy(t, b.ln.Addr().String())
	c := dial(t, p.Addr())
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "got:ping" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestProxyDropConnections(t *testing.T) {
	b := startBackend(t, echo)
	p := newTestProxy(t, b.ln.Addr().String())
	c1, c2 := dial(t, p.Addr()), dial(t, p.Addr())
	for _, c := range []net.Conn{c1, c2} {
		if _, err := roundTrip(c, "x", 2*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	p.DropConnections()
	expectClosed(t, c1, 2*time.Second)
	expectClosed(t, c2, 2*time.Second)
	c3 := dial(t, p.Addr())
	if got, err := roundTrip(c3, "again", 2*time.Second); err != nil || got != "again" {
		t.Fatalf("after DropConnections: %q, %v", got, err)
	}
}

func TestProxyBlackholeAndHeal(t *testing.T) {
	b := startBackend(t, echo)
	p := newTestProxy(t, b.ln.Addr().String())
	old := dial(t, p.Addr())
	if _, err := roundTrip(old, "before", 2*time.Second); err != nil {
		t.Fatal(err)
	}

	p.Blackhole()
	if _, err := old.Write([]byte("lost")); err != nil {
		t.Fatal(err)
	}
	expectSilence(t, old, 200*time.Millisecond)
	// New connections are accepted (the dial succeeds) but go nowhere.
	fresh := dial(t, p.Addr())
	if _, err := fresh.Write([]byte("lost too")); err != nil {
		t.Fatal(err)
	}
	expectSilence(t, fresh, 200*time.Millisecond)
	waitFor(t, 2*time.Second, "both connections to be held", func() bool { return p.connCount() == 2 })

	p.Heal()
	// Heal closes the connections that were partitioned...
	expectClosed(t, old, 2*time.Second)
	expectClosed(t, fresh, 2*time.Second)
	// ...and forwards new ones normally.
	c := dial(t, p.Addr())
	if got, err := roundTrip(c, "after", 2*time.Second); err != nil || got != "after" {
		t.Fatalf("after Heal: %q, %v", got, err)
	}
}

func TestProxyReject(t *testing.T) {
	b := startBackend(t, echo)
	p := newTestProxy(t, b.ln.Addr().String())
	old := dial(t, p.Addr())
	if _, err := roundTrip(old, "x", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Reject()
	expectClosed(t, old, 2*time.Second)
	for range 3 {
		c := dial(t, p.Addr())
		expectClosed(t, c, 2*time.Second)
	}
	p.Heal()
	c := dial(t, p.Addr())
	if got, err := roundTrip(c, "ok", 2*time.Second); err != nil || got != "ok" {
		t.Fatalf("after Heal: %q, %v", got, err)
	}
}

func TestProxyLatency(t *testing.T) {
	b := startBackend(t, echo)
	p := newTestProxy(t, b.ln.Addr().String())
	c := dial(t, p.Addr())
	const d = 100 * time.Millisecond
	p.SetLatency(d)

	start := time.Now()
	if _, err := roundTrip(c, "slow", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if rtt := time.Since(start); rtt < 2*d {
		t.Errorf("round trip took %v with %v latency each way, want >= %v", rtt, d, 2*d)
	}

	// Order is preserved across many small writes.
	var want bytes.Buffer
	for i := range 50 {
		msg := []byte{byte('A' + i%26)}
		want.Write(msg)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, want.Len())
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("got %q, %v; want %q", got, err, want.Bytes())
	}
	_ = c.SetReadDeadline(time.Time{})

	// After Heal no delay is added. A delayed round trip can never take
	// less than 2d, while an undelayed one may be slowed by a busy
	// machine: so the check is that the fastest of several round trips
	// beats 2d, which only a removed latency can do.
	p.Heal()
	fastest := time.Duration(1<<63 - 1)
	for range 5 {
		start := time.Now()
		if _, err := roundTrip(c, "fast", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		fastest = min(fastest, time.Since(start))
	}
	if fastest >= 2*d {
		t.Errorf("fastest of 5 round trips after Heal took %v, want < %v: latency still applied", fastest, 2*d)
	}
	t.Logf("fastest round trip after Heal: %v (latency was %v each way)", fastest, d)
}

func TestProxySniffsSessions(t *testing.T) {
	pw := mustHex(t, "000102030405060708090a0b0c0d0e0f")
	response := mustHex(t, "00000025"+"00000000"+"00000fa0"+"0000000100000abc"+"00000010")
	response = append(response, pw...)
	response = append(response, 0)
	b := startBackend(t, func(c net.Conn) {
		if _, err := readFrame(c, maxFrameSize); err != nil {
			return
		}
		// Split the frame to exercise reassembly.
		_, _ = c.Write(response[:7])
		time.Sleep(10 * time.Millisecond)
		_, _ = c.Write(response[7:])
		_, _ = io.Copy(io.Discard, c)
	})
	p := newTestProxy(t, b.ln.Addr().String())
	c := dial(t, p.Addr())
	if _, err := c.Write(connectRequest{TimeOut: 4000, Passwd: make([]byte, 16)}.encode()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	got, err := readFrame(c, maxFrameSize)
	if err != nil || !bytes.Equal(got, response[4:]) {
		t.Fatalf("client got %x, %v", got, err)
	}
	s := p.Sessions()
	if len(s) != 1 || !bytes.Equal(s[0x100000abc], pw) {
		t.Fatalf("Sessions() = %x", s)
	}
	// The returned map is a copy.
	s[0x100000abc][0] = 0xff
	if p.Sessions()[0x100000abc][0] != 0 {
		t.Error("Sessions() returned the proxy's own password slice")
	}
	p.dropSession(0x100000abc)
	expectClosed(t, c, 2*time.Second)
}

func TestProxyIgnoresExpiredReply(t *testing.T) {
	b := startBackend(t, func(c net.Conn) {
		_, _ = c.Write(mustHex(t, expiredReply))
	})
	p := newTestProxy(t, b.ln.Addr().String())
	c := dial(t, p.Addr())
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatal(err)
	}
	if s := p.Sessions(); len(s) != 0 {
		t.Fatalf("Sessions() = %x, want none for session id 0", s)
	}
}

func TestProxyDeadTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p := newTestProxy(t, dead)
	c := dial(t, p.Addr())
	expectClosed(t, c, 5*time.Second)
}

func TestProxyClose(t *testing.T) {
	b := startBackend(t, echo)
	p, err := NewProxy(b.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	if _, err := roundTrip(c, "x", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetLatency(time.Hour) // a queued chunk must not keep Close waiting
	if _, err := c.Write([]byte("stuck")); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	expectClosed(t, c, 2*time.Second)
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("closed proxy still accepts connections")
	}
}
