package resilience

import "strconv"

// LossPolicy says when a holding built on a session (a lock lease, a
// leadership term) counts as lost. The lock and election packages take it
// as an option; this is the one place that defines it.
//
// The session suspends itself when its server leaves a liveness probe (a
// sync, which passes through the leader) unanswered for T/4 of the session
// timeout T, and at the latest at SafeUntil, T/20 before the ensemble can
// expire the session (see Session.SafeUntil). Under either policy a
// holding ends before another client can take over, as long as this
// process is not itself paused past that margin; for that case, fence the
// writes the holding protects with its token.
type LossPolicy int

const (
	// LoseOnSuspend ends a holding as soon as its session is suspended:
	// typically T/4, and at least T/20, before the ensemble can expire the
	// session. Every connection blip ends the holding. The default.
	LoseOnSuspend LossPolicy = iota
	// LoseOnSessionLoss keeps a holding through a suspension that ends in
	// time, and ends it when the session is lost, when its node turns out
	// to be gone after a reconnect, or, while still suspended, at the
	// session's SafeUntil. Fewer false step-downs; a lead of only T/20.
	LoseOnSessionLoss
)

// String returns the policy's name.
func (p LossPolicy) String() string {
	switch p {
	case LoseOnSuspend:
		return "lose_on_suspend"
	case LoseOnSessionLoss:
		return "lose_on_session_loss"
	}
	return "LossPolicy(" + strconv.Itoa(int(p)) + ")"
}

// Valid reports whether p is one of the defined policies.
func (p LossPolicy) Valid() bool { return p == LoseOnSuspend || p == LoseOnSessionLoss }
