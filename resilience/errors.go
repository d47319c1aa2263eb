package resilience

import (
	"errors"

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
	// ErrInvalidOption is returned by Connect for an out-of-range option.
	ErrInvalidOption = errors.New("resilience: invalid option")
	// ErrOutcomeUnknown is returned when the connection broke while a
	// request whose effect cannot be verified afterwards (a plain sequential
	// create) was in flight. Use CreateProtected for sequential nodes.
	ErrOutcomeUnknown = errors.New("resilience: outcome unknown after connection loss")
)

// isConnLoss reports whether err means the request may not have reached the
// ensemble, or its reply was lost, because the connection (not the
// operation) failed.
func isConnLoss(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) ||
		errors.Is(err, zk.ErrNoServer) ||
		errors.Is(err, zk.ErrSessionExpired) ||
		errors.Is(err, zk.ErrSessionMoved) ||
		errors.Is(err, zk.ErrClosing)
}
