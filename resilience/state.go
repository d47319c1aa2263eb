package resilience

import (
	"fmt"
	"time"
)

// State is the state of a Session as its users see it.
type State int32

// The states of a Session; see the package documentation for the diagram.
const (
	// Connecting: no session has been established yet.
	Connecting State = iota
	// Connected: a session is established (the first one, or a new one
	// after Lost).
	Connected
	// Suspended: the connection is down; the session may still be alive on
	// the ensemble. Holders under LoseOnSuspend must assume they lost.
	Suspended
	// Reconnected: the connection came back with the same session id;
	// ephemeral nodes and watches survived.
	Reconnected
	// Lost: the session is gone (the ensemble said it expired, or it was
	// presumed expired). Its ephemeral nodes and watches are gone. A new
	// session follows.
	Lost
	// Closed: Close was called. Final.
	Closed
)

var stateNames = [...]string{"Connecting", "Connected", "Suspended", "Reconnected", "Lost", "Closed"}

// String returns the state's name.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// HasSession reports whether requests can be served in this state
// (Connected or Reconnected).
func (s State) HasSession() bool { return s == Connected || s == Reconnected }

// Cause says why a transition happened.
type Cause int

// Causes of transitions.
const (
	// CauseSessionEstablished: the ensemble granted a session (first or new).
	CauseSessionEstablished Cause = iota + 1
	// CauseConnectionLost: the TCP connection closed, or go-zookeeper/zk
	// gave up reading from it.
	CauseConnectionLost
	// CauseSessionResumed: the client reconnected with its session intact.
	CauseSessionResumed
	// CauseExpired: the ensemble answered that the session had expired.
	CauseExpired
	// CausePresumedExpired: the client was suspended for longer than the
	// presumed-expiry fraction of the negotiated timeout.
	CausePresumedExpired
	// CauseClosed: Close was called.
	CauseClosed
	// CauseUnresponsive: the server answered none of the session's
	// liveness probes (syncs, which pass through the ensemble's leader) for
	// 5/12 of the session timeout: a silent link, a hung server, a blocked
	// send, or a server cut off from its leader. The session cuts the
	// connection and tries the next server.
	CauseUnresponsive
	// CauseCurrent marks the first value a Subscribe channel delivers: not
	// a change but the state the session is in (From == To).
	CauseCurrent
)

var causeNames = [...]string{"", "session_established", "connection_lost", "session_resumed", "expired", "presumed_expired", "closed", "unresponsive", "current"}

// String returns a short snake_case name, suitable for attributes.
func (c Cause) String() string {
	if c > 0 && int(c) < len(causeNames) {
		return causeNames[c]
	}
	return fmt.Sprintf("cause(%d)", int(c))
}

// Transition is one change of a Session's state.
type Transition struct {
	From, To State
	// OldSessionID is the session id before the transition, SessionID the
	// one after (they differ only when a new session was established).
	OldSessionID, SessionID int64
	// Server is the server the client was or is connected to.
	Server string
	// Time is when the session layer observed the change.
	Time time.Time
	// Cause says why.
	Cause Cause
	// Timeout is the session timeout negotiated with the ensemble.
	Timeout time.Duration
}

// subject is the session the transition concerns: the one after it, or,
// when there is none (Lost, Closed), the one before.
func (t Transition) subject() int64 {
	if t.SessionID != 0 {
		return t.SessionID
	}
	return t.OldSessionID
}

// String formats the transition for humans (the session's own log record
// carries the same facts as attributes).
func (t Transition) String() string {
	return fmt.Sprintf("%s -> %s (%s) session 0x%x -> 0x%x via %s", t.From, t.To, t.Cause, t.OldSessionID, t.SessionID, t.Server)
}
