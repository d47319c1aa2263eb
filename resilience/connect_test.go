package resilience

import (
	"context"
	"errors"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// closedPort returns the address of a local port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// Connect to a closed port names the servers, the wait and the dial error,
// and still wraps the context's error.
func TestConnectErrorNamesLastDialError(t *testing.T) {
	addr := closedPort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := Connect(ctx, []string{addr}, WithSessionTimeout(1500*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Connect = %v, want it to wrap context.DeadlineExceeded", err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("Connect = %v, want it to wrap the dial's ECONNREFUSED", err)
	}
	// The wait named is the context's deadline less the moment Connect
	// began, a little under the 500ms given a busy machine.
	re := regexp.MustCompile(`^resilience: connect to \[` + regexp.QuoteMeta(addr) + `\]: no session within ([0-9.]+ms): last error: dial tcp ` +
		regexp.QuoteMeta(addr) + `: connect: connection refused$`)
	m := re.FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("Connect error %q, want it to match %s", err, re)
	}
	if waited, _ := time.ParseDuration(m[1]); waited <= 400*time.Millisecond || waited > 500*time.Millisecond {
		t.Errorf("Connect error names a wait of %v, want a little under 500ms", waited)
	}
}

// A server that accepts but never answers the handshake is named too.
func TestConnectErrorNamesSilentHandshake(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c // held open, never answered
		}
	}()
	defer func() {
		l.Close()
		for c := range accepted {
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	const timeout = 1500 * time.Millisecond
	_, err = Connect(ctx, []string{l.Addr().String()}, WithSessionTimeout(timeout))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Connect = %v, want it to wrap context.DeadlineExceeded", err)
	}
	want := "last error: handshake with " + l.Addr().String() + ": no answer within " + (timeout / 3).String()
	if !strings.HasSuffix(err.Error(), want) {
		t.Errorf("Connect error %q, want it to end with %q", err, want)
	}
}

// Cancelled rather than timed out, the error says so and wraps Canceled.
func TestConnectErrorCanceled(t *testing.T) {
	addr := closedPort(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	_, err := Connect(ctx, []string{addr})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Connect = %v, want it to wrap context.Canceled and ECONNREFUSED", err)
	}
	if !strings.Contains(err.Error(), "context canceled after ") || !strings.Contains(err.Error(), "without a session: last error: dial tcp") {
		t.Errorf("Connect error %q", err)
	}
}
