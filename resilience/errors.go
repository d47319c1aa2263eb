package resilience

import (
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/go-zookeeper/zk"
)

// Sentinel errors. Errors returned by a Session wrap one of these, or one of
// go-zookeeper/zk's (zk.ErrNoNode, zk.ErrNodeExists, zk.ErrBadVersion, ...),
// so callers test them with errors.Is.
var (
	// ErrClosed is returned by every call made after Close.
	ErrClosed = errors.New("resilience: session closed")
	// ErrSessionLost means the ZooKeeper session an operation or a holder
	// depended on is gone: its ephemeral nodes and watches no longer exist.
	ErrSessionLost = errors.New("resilience: session lost")
	// ErrNoServers is returned by Connect when the server list is empty.
	ErrNoServers = errors.New("resilience: no ZooKeeper servers given")
	// ErrInvalidServer is returned by Connect for a malformed server address.
	ErrInvalidServer = errors.New("resilience: invalid server address")
	// ErrInvalidPath is returned for a znode path ZooKeeper would reject.
	ErrInvalidPath = errors.New("resilience: invalid znode path")
	// ErrDataTooLarge is returned when a request would exceed ZooKeeper's
	// default packet limit (jute.maxbuffer, 1 MiB).
	ErrDataTooLarge = errors.New("resilience: data too large")
	// ErrInvalidOption is returned by Connect for a bad option value: out of
	// range, malformed, or nil where a value is needed.
	ErrInvalidOption = errors.New("resilience: invalid option")
	// ErrOutcomeUnknown means a write's request or its reply was lost with
	// the connection and what happened cannot be proved: the write may or
	// may not have been applied, and another client may have acted on the
	// same node meanwhile. A Session reports success after such a loss only
	// when it can show that this call's effect is in place and is not
	// another client's; it repeats a write only when it can show that the
	// first request was not applied. Each operation's documentation says
	// what it checks. The error's text says what was found.
	ErrOutcomeUnknown = errors.New("resilience: outcome unknown after connection loss")
)

// isConnLoss reports whether err means the request may not have reached the
// ensemble, or its reply was lost, because the connection (not the
// operation) failed. go-zookeeper/zk hands the raw socket error ("write:
// broken pipe", a reset, a timeout) to the request it was writing when the
// connection broke, so network errors count too: that request may have
// been written in part or in whole.
func isConnLoss(err error) bool {
	var opErr *net.OpError
	return errors.Is(err, zk.ErrConnectionClosed) ||
		errors.Is(err, zk.ErrNoServer) ||
		errors.Is(err, zk.ErrSessionExpired) ||
		errors.Is(err, zk.ErrSessionMoved) ||
		errors.Is(err, zk.ErrClosing) ||
		errors.As(err, &opErr) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed)
}
