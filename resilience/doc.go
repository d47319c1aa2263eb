// Package resilience owns a ZooKeeper session and keeps the two kinds of
// trouble a ZooKeeper client meets apart:
//
//   - Connection loss: the TCP link broke, a server restarted, or the server
//     lost quorum. The session may still be alive on the ensemble, with its
//     ephemeral nodes and watches. An operation that was in flight may or may
//     not have been applied. The Session waits for the reconnect and then
//     verifies what happened instead of blindly retrying.
//   - Session expiry: the ensemble dropped the session, deleting its
//     ephemeral nodes and watches. The Session reports Lost, opens a new
//     session, and runs every registered rebuild step on it.
//
// A Session moves through the states Connecting, Connected, Suspended,
// Reconnected, Lost and Closed:
//
//	            first session                 TCP lost / no reply for readTimeout
//	Connecting ───────────────► Connected ─────────────────────────────► Suspended
//	                               ▲   ▲                                   │   │
//	                               │   └──── Reconnected (same session id) ◄┘   │
//	                               │                                            │ expired, or suspended
//	                               └──── new session established ◄──── Lost ◄───┘ longer than the timeout
//	Close() from any state ──► Closed
//
// Every Transition reaches every subscriber in order and without loss (see
// Session.Subscribe and Session.AddListener). Operations take a context
// first and return when it ends; on connection loss they wait for the
// session to come back and verify their outcome, reporting success only
// when they can prove it and ErrOutcomeUnknown when they cannot (see
// docs/state-machine.md). Operations bound to one session (ephemeral creates)
// fail with an error wrapping ErrSessionLost when that session is lost.
//
// Higher-level recipes (locks, elections, service registration) are built on
// Session in sibling packages and never touch the *zk.Conn directly.
package resilience
