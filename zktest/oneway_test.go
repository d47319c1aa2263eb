package zktest

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// recorder is a backend that keeps what each connection sent it and lets
// the test write to each connection.
type recorder struct {
	*backend
	mu  sync.Mutex
	got map[net.Conn]*bytes.Buffer
}

func startRecorder(t *testing.T) *recorder {
	r := &recorder{got: map[net.Conn]*bytes.Buffer{}}
	r.backend = startBackend(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		r.mu.Lock()
		r.got[c] = &bytes.Buffer{}
		r.mu.Unlock()
		for {
			n, err := c.Read(buf)
			r.mu.Lock()
			r.got[c].Write(buf[:n])
			r.mu.Unlock()
			if err != nil {
				return
			}
		}
	})
	return r
}

// conn returns the i-th connection the backend accepted, waiting for it.
func (r *recorder) conn(t *testing.T, i int) net.Conn {
	t.Helper()
	var c net.Conn
	waitFor(t, 2*time.Second, "the backend to accept a connection", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.backend.mu.Lock()
		defer r.backend.mu.Unlock()
		if len(r.backend.conns) <= i {
			return false
		}
		c = r.backend.conns[i]
		return r.got[c] != nil
	})
	return c
}

func (r *recorder) received(c net.Conn) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[c].String()
}

func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("reading %d bytes: %v (got %q)", n, err, buf)
	}
	return string(buf)
}

// expectOnly checks that the backend received exactly want on c, and
// nothing more for d.
func expectOnly(t *testing.T, r *recorder, c net.Conn, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if got := r.received(c); got != want {
			t.Fatalf("server received %q, want only %q", got, want)
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitReceived(t *testing.T, r *recorder, c net.Conn, want string) {
	t.Helper()
	waitFor(t, 2*time.Second, "the backend to receive "+want, func() bool { return r.received(c) == want })
}

// BlackholeRequests holds what clients send and forwards what the server
// sends, on existing and new connections; Heal closes the connections it
// held and forwards again.
func TestProxyBlackholeRequests(t *testing.T) {
	r := startRecorder(t)
	p := newTestProxy(t, r.ln.Addr().String())
	old := dial(t, p.Addr())
	srvOld := r.conn(t, 0)
	if _, err := old.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	waitReceived(t, r, srvOld, "a")

	p.BlackholeRequests()
	if _, err := old.Write([]byte("lost")); err != nil {
		t.Fatal(err)
	}
	if _, err := srvOld.Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, old, 5); got != "reply" {
		t.Fatalf("client read %q", got)
	}
	// A new connection reaches the server, which can talk to the client,
	// but the client's bytes never arrive.
	fresh := dial(t, p.Addr())
	if _, err := fresh.Write([]byte("lost too")); err != nil {
		t.Fatal(err)
	}
	srvFresh := r.conn(t, 1)
	if _, err := srvFresh.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, fresh, 2); got != "hi" {
		t.Fatalf("new client read %q", got)
	}
	// The replies have come back, so the requests, written before them,
	// had every chance to arrive; give them a little more.
	expectOnly(t, r, srvOld, "a", 200*time.Millisecond)
	expectOnly(t, r, srvFresh, "", 0)

	p.Heal()
	expectClosed(t, old, 2*time.Second)
	expectClosed(t, fresh, 2*time.Second)
	c := dial(t, p.Addr())
	if _, err := c.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	waitReceived(t, r, r.conn(t, 2), "after")
}

// BlackholeReplies forwards what clients send and holds what the server
// sends, on existing and new connections; Heal closes the connections it
// held.
func TestProxyBlackholeReplies(t *testing.T) {
	r := startRecorder(t)
	p := newTestProxy(t, r.ln.Addr().String())
	old := dial(t, p.Addr())
	srvOld := r.conn(t, 0)
	if _, err := srvOld.Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, old, 1); got != "b" {
		t.Fatalf("client read %q", got)
	}

	p.BlackholeReplies()
	if _, err := srvOld.Write([]byte("lost")); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	waitReceived(t, r, srvOld, "request")
	expectSilence(t, old, 200*time.Millisecond)

	fresh := dial(t, p.Addr())
	if _, err := fresh.Write([]byte("new")); err != nil {
		t.Fatal(err)
	}
	srvFresh := r.conn(t, 1)
	waitReceived(t, r, srvFresh, "new")
	if _, err := srvFresh.Write([]byte("lost too")); err != nil {
		t.Fatal(err)
	}
	expectSilence(t, fresh, 200*time.Millisecond)

	p.Heal()
	expectClosed(t, old, 2*time.Second)
	expectClosed(t, fresh, 2*time.Second)
	c := dial(t, p.Addr())
	srv := r.conn(t, 2)
	if _, err := srv.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, c, 5); got != "after" {
		t.Fatalf("after Heal: client read %q", got)
	}
}

// The election proxy's hello rewrites the address in a server's initial
// election message and keeps the rest; other first messages pass as they
// are.
func TestElectionHello(t *testing.T) {
	msg := func(version, sid int64, addr string) []byte {
		var b []byte
		b = binary.BigEndian.AppendUint64(b, uint64(version))
		b = binary.BigEndian.AppendUint64(b, uint64(sid))
		b = binary.BigEndian.AppendUint32(b, uint32(len(addr)))
		return append(b, addr...)
	}
	hello := electionHello("127.0.0.1:4242")
	for _, v := range []int64{electionProtocolV1, electionProtocolV2} {
		in := append(msg(v, 3, "127.0.0.1:39001"), "rest"...)
		r := bytes.NewReader(in)
		got, err := hello(r)
		if err != nil {
			t.Fatal(err)
		}
		if want := msg(v, 3, "127.0.0.1:4242"); !bytes.Equal(got, want) {
			t.Errorf("version %d: rewritten to %x, want %x", v, got, want)
		}
		if rest, _ := io.ReadAll(r); string(rest) != "rest" {
			t.Errorf("version %d: hello consumed past the message, %q left", v, rest)
		}
	}
	old := binary.BigEndian.AppendUint64(nil, 2) // a bare server id
	if got, err := hello(bytes.NewReader(append(old, "x"...))); err != nil || !bytes.Equal(got, old) {
		t.Errorf("old-style message: %x, %v", got, err)
	}
	if _, err := hello(bytes.NewReader(msg(electionProtocolV1, 1, string(make([]byte, 4096))))); err == nil {
		t.Error("an oversized address was accepted")
	}
}

// A proxy with redial (the quorum links') keeps a client's connection while
// its target does not listen yet, and connects it once it does; a plain
// proxy closes it at once.
func TestProxyRedial(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now

	plain := newTestProxy(t, addr)
	expectClosed(t, dial(t, plain.Addr()), 2*time.Second)

	p := newTestProxy(t, addr)
	p.mu.Lock()
	p.redial = true
	p.mu.Unlock()
	c := dial(t, p.Addr())
	if _, err := c.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	expectSilence(t, c, 200*time.Millisecond) // still waiting, not closed
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("could not listen on %s again: %v", addr, err)
	}
	accepted := make(chan string, 1)
	go func() {
		s, err := l.Accept()
		if err != nil {
			accepted <- err.Error()
			return
		}
		defer s.Close()
		buf := make([]byte, 5)
		_, _ = io.ReadFull(s, buf)
		accepted <- string(buf)
	}()
	defer l.Close()
	select {
	case got := <-accepted:
		if got != "early" {
			t.Fatalf("target got %q", got)
		}
	case <-time.After(proxyDialLimit):
		t.Fatal("the proxy did not connect once the target listened")
	}
}
