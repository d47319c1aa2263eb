package zktest

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// A gated proxy (an Ensemble's or a Link's) forwards every first frame
// intact, four-letter words included, and holds the connections that
// resume a session being expired until it is released.
func TestGatedProxyHoldsResumesOfAHeldSession(t *testing.T) {
	b := startBackend(t, echo)
	p, err := newGatedProxy(b.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })

	// Not a ConnectRequest: passed on as it is.
	c := dial(t, p.Addr())
	if got, err := roundTrip(c, "srvr", 2*time.Second); err != nil || got != "srvr" {
		t.Fatalf("four-letter word through a gated proxy: %q, %v", got, err)
	}

	connect := func(id int64) []byte {
		return connectRequest{TimeOut: 4000, SessionID: id, Passwd: bytes.Repeat([]byte{7}, 16)}.encode()
	}
	release := p.holdSession(42)

	// Another session's resume and a new session go through.
	for _, id := range []int64{7, 0} {
		c := dial(t, p.Addr())
		if got, err := roundTrip(c, string(connect(id)), 2*time.Second); err != nil || got != string(connect(id)) {
			t.Fatalf("ConnectRequest for session %d while 42 is held: %v", id, err)
		}
	}

	// The held session's resume waits, then goes through intact.
	held := dial(t, p.Addr())
	if _, err := held.Write(connect(42)); err != nil {
		t.Fatal(err)
	}
	expectSilence(t, held, 200*time.Millisecond)
	waitFor(t, 2*time.Second, "the held connection to be known to carry session 42", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for c := range p.conns {
			if c.sessionID == 42 {
				return true
			}
		}
		return false
	})
	release()
	release() // idempotent
	_ = held.SetReadDeadline(time.Now().Add(2 * time.Second))
	got := make([]byte, len(connect(42)))
	if _, err := io.ReadFull(held, got); err != nil || !bytes.Equal(got, connect(42)) {
		t.Fatalf("held ConnectRequest after release: %x, %v", got, err)
	}

	// A held connection that is dropped (as ExpireSession drops the
	// session's connections) is closed, not forwarded. The first one goes
	// first, so that the only connection carrying session 42 is the new one.
	held.Close()
	waitFor(t, 2*time.Second, "the released connection to go", func() bool { return p.connCount() == 3 })
	release = p.holdSession(42)
	defer release()
	dropped := dial(t, p.Addr())
	if _, err := dropped.Write(connect(42)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the second held connection, known to carry session 42", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for c := range p.conns {
			if c.sessionID == 42 {
				return true
			}
		}
		return false
	})
	p.dropSession(42)
	expectClosed(t, dropped, 2*time.Second)
}
