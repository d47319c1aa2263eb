// Package election is leader election on ZooKeeper with no two leaders,
// ever.
//
// Candidates queue as ephemeral sequential nodes (Curator LeaderLatch's
// format, "_c_<uuid>-latch-NNNNNNNNNN" holding the participant id, so Go
// and Java participants form one election); the lowest leads. Leadership is
// declared only after the candidate's node is confirmed to belong to the
// current session (its EphemeralOwner): Curator's LeaderLatch once declared
// two leaders when an old session's node was still visible after expiry.
//
// # Terms
//
// A leadership Term is a context, cancelled the moment leadership can no
// longer be trusted, per the resilience.LossPolicy (resilience.LoseOnSuspend
// by default: at the first sign of a dead link, before the ensemble can
// expire the session and elect someone else). Under
// resilience.LoseOnSessionLoss a term survives suspensions, and after each
// reconnect leadership is re-confirmed the same way, never assumed. Every
// term carries a fencing token, the czxid of its node (see package fence).
// A term ends as resigned (its Err wraps ErrResigned) by Term.Resign, by
// Run giving it up, or by closing the session; any other end is a loss
// (ErrTermLost). The term's context keeps the values and the trace span of
// the context its campaign was called with.
//
// # Leading
//
// Campaign blocks until this participant leads and returns the term. Run is
// the service loop (Curator's LeaderSelector with auto-requeue): it
// campaigns, calls a function with the term while leading, steps down, and
// campaigns again; its error policy is on Run. Leading says whether this
// participant leads now, and WaitLeading waits until it does, whichever of
// Campaign and Run won the term.
//
// # Observers
//
// New without WithID gives an observer: Leader, Participants and Subscribe
// need no candidacy. Campaign, Run and WaitLeading need a participant id
// (WithID) and fail with ErrInvalidArgument without one.
//
// # Errors
//
// Errors are tested with errors.Is against this package's sentinels. Their
// text names the election's path and the participant id; the internal
// candidate node appears only next to them. Once the session is closed,
// Campaign, Run and WaitLeading return an error wrapping ErrClosed.
//
// # Interoperating with Curator
//
// A Go participant and Curator LeaderLatch participants share one
// election: each sees the other's candidates in line. A Go participant leads only while its own node, of its current session, is
// first in line, but it cannot stop a Java participant from leading when it
// should not: the election is only as safe as its Curator version. Curator
// 5.4's LeaderLatch itself leads twice after a whole-ensemble outage
// (CURATOR-696; reproduced with Curator 5.4 participants alone, two of them
// leading at once for 19 s), and a LeaderLatch that wrongly believes it leads
// does so next to a Go leader too. The bug is fixed in Curator 5.7. In a
// mixed election, run Curator 5.7 or later on every Java participant; where
// an older Curator must stay, fence every write a leader makes with its
// token (Term.Token on the Go side, the czxid of the latch's node on the
// Java side; see package fence), so that a store refuses a superseded leader's writes even
// while two processes believe they lead.
//
// # Telemetry
//
// Spans: zkrecipes.election.campaign (one per Campaign, a child of the
// caller's span, with zkrecipes.outcome and, on failure, error.type) and
// zkrecipes.election.term (one per term, also a child of the caller's span,
// carried by the term's context so spans made while leading nest under it,
// ended with zkrecipes.end = released or lost). Metrics:
// zkrecipes.election.campaign.duration (by zkrecipes.outcome and
// error.type), zkrecipes.election.leading (terms in progress) and
// zkrecipes.election.term.duration (by zkrecipes.end). Spans also carry
// zkrecipes.path and zkrecipes.election.id (and the term's node and token);
// metrics carry no per-election attribute.
package election
