package chaos

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/resilience"
)

// lossRec is one Lost transition of a client's session.
type lossRec struct {
	who   string
	at    time.Time
	cause resilience.Cause
	sid   int64
}

// lossExpected says whether a fault of kind may cost a session on
// purpose, so a loss it explains is no violation. The rule: a session
// must survive (0 losses) every fault during which a quorum of servers
// stayed reachable from the client both ways, as the ensemble then keeps
// it: a dropped connection, a blackhole shorter than T, latency, a lost
// write (its reconnect held for at most lostWriteHold, below the adders'
// session timeout), a server restarted, paused or cut from its peers, the
// leader killed: the client must move to a healthy server in time. It may
// be lost when the fault cuts the client's whole link for longer than T
// (a long blackhole; a one-way blackhole of its requests, which the
// ensemble then never hears, or of its replies, after which it hears
// nothing from any server) or takes the quorum away (quorum loss, 2T).
func lossExpected(kind string) bool {
	switch kind {
	case "long-blackhole", "oneway-requests", "oneway-replies", "quorum-loss":
		return true
	}
	return false
}

// lossWindow is how long after a fault healed a loss is still blamed on
// it: a client learns its session expired when it reconnects.
const lossWindow = 2*sessionTimeout + 2*time.Second

// explainLoss returns the fault kinds that may explain a loss of who's
// session at t: the faults begun by t and healed at most lossWindow
// before it that hit who's link or a server; the latest first.
func explainLoss(faults []faultRec, who string, t time.Time) []string {
	var cands []faultRec
	for _, f := range faults {
		if f.start.After(t) || !f.end.Add(lossWindow).After(t) {
			continue
		}
		if clientFault(f.kind) && f.victim != who {
			continue
		}
		cands = append(cands, f)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].start.After(cands[j].start) })
	var out []string
	for _, f := range cands {
		out = append(out, f.kind)
	}
	return out
}

// unexpectedLosses splits the losses by the fault blamed (the latest that
// may explain it, or "none") and returns the counts per kind of those no
// fault that may cost a session explains, with a description of each.
func unexpectedLosses(faults []faultRec, losses []lossRec) (perKind map[string]int, bad []string) {
	perKind = map[string]int{}
	for _, l := range losses {
		kinds := explainLoss(faults, l.who, l.at)
		excused := false
		for _, k := range kinds {
			excused = excused || lossExpected(k)
		}
		if excused {
			continue
		}
		blamed := "none"
		if len(kinds) > 0 {
			blamed = kinds[0]
		}
		perKind[blamed]++
		bad = append(bad, fmt.Sprintf("%s lost session %#x at %s (%s) with a quorum reachable (fault %s)", l.who, l.sid, l.at.Format("15:04:05.000"), l.cause, blamed))
	}
	return perKind, bad
}

// The loss rule on hand-made records: a loss after a drop of the client's
// own link or a server fault is reported, one explained by a long blackhole
// of its link or quorum loss is not, nor is one after another client's drop
// reported as that drop's.
func TestUnexpectedLosses(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	faults := []faultRec{
		{kind: "long-blackhole", victim: "x", start: at(0), end: at(3000)},
		{kind: "drop", victim: "y", start: at(3500), end: at(3500)},
		{kind: "server-pause", start: at(10000), end: at(13000)},
		{kind: "quorum-loss", start: at(20000), end: at(23000)},
	}
	losses := []lossRec{
		{who: "x", at: at(3600)},  // the blackhole's, not y's drop
		{who: "y", at: at(3700)},  // y's drop: reported
		{who: "z", at: at(12000)}, // the pause: reported
		{who: "z", at: at(22000)}, // quorum loss: fine
		{who: "z", at: at(60000)}, // nothing: reported
	}
	per, bad := unexpectedLosses(faults, losses)
	if per["drop"] != 1 || per["server-pause"] != 1 || per["none"] != 1 || len(bad) != 3 {
		t.Fatalf("per kind %v, reported %q; want one each for drop, server-pause, none", per, bad)
	}
}
