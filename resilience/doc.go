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
// Session.Subscribe, whose channel starts with the current state, and
// Session.AddListener). Operations take a context
// first and return when it ends; on connection loss they wait for the
// session to come back and verify their outcome, reporting success only
// when they can prove it and ErrOutcomeUnknown when they cannot (see
// docs/state-machine.md). Operations bound to one session (ephemeral creates)
// fail with an error wrapping ErrSessionLost when that session is lost.
//
// # Logging
//
// The Session logs each transition once, through the slog.Logger given
// with WithLogger (default slog.Default()): at Info, or Warn for Suspended
// and Lost. The message is always "zookeeper session transition"; the
// transition is in structured attributes, so records can be grouped and
// filtered without parsing text:
//
//	state.from           the state before ("Connected")
//	state.to             the state after ("Suspended")
//	cause                why (Cause.String: "connection_lost", "expired", ...)
//	session.id           the session concerned, hex ("0x1000..."); for Lost
//	                     and Closed the session that ended
//	session.previous_id  the session before, when a new one replaced it
//	server               the server the client was or is connected to
//	session.timeout      the negotiated session timeout
//
// Its other records (a rebuild round, a presumed-lost session found alive,
// a failed cleanup) use the same attribute names where they apply, and
// go-zookeeper/zk's own messages come at Debug with component=go-zookeeper.
// Applications should not log transitions themselves (from Subscribe or
// AddListener), or each is logged twice; to take the logging over, give
// the Session a logger that discards them, such as
// slog.New(slog.DiscardHandler), and log from Subscribe.
//
// # Telemetry
//
// The Session traces and measures through the providers given with
// WithTracerProvider and WithMeterProvider (default the global ones),
// under the instrumentation scope ScopeName. Attribute names carry no
// units; durations are histograms in seconds.
//
//   - Span zkrecipes.session.suspension: one per outage, from the first
//     loss of contact (Suspended) until the session is usable again
//     (Reconnected, or Connected on a new session after Lost), or Closed.
//     Attributes server.address, server.port, zkrecipes.session.id,
//     zkrecipes.session.timeout (seconds), zkrecipes.cause (why contact was
//     lost), and at the end zkrecipes.outcome: ok (the session came back),
//     error with error.type session_lost (a new session replaced it; the
//     loss is the event zkrecipes.session.lost with its zkrecipes.cause),
//     or canceled (closed first).
//   - Span zkrecipes.session.rebuild, one per rebuild after a new session,
//     with zkrecipes.session.id, zkrecipes.session.rebuild.steps,
//     zkrecipes.session.rebuild.rounds and zkrecipes.outcome (ok; error
//     with error.type session_lost if the session ended first; canceled if
//     the Session was closed), and a child zkrecipes.session.rebuild.step
//     per step per round with zkrecipes.session.rebuild.step.name and
//     zkrecipes.outcome (ok, error with error.type, or canceled when the
//     step returned its context's error).
//   - Metrics zkrecipes.session.transitions (by zkrecipes.state.from,
//     zkrecipes.state.to, zkrecipes.cause), zkrecipes.session.suspension.duration
//     (the outage, by zkrecipes.outcome and error.type),
//     zkrecipes.session.rebuild.duration (per round, by zkrecipes.outcome
//     and error.type) and zkrecipes.session.rebuild.failures (failed steps,
//     by error.type).
//
// Higher-level recipes (locks, elections, service registration) are built on
// Session in sibling packages and never touch the *zk.Conn directly.
package resilience
