package chaos

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/zkrecipes/zkrecipes/internal/timeline"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// faultKinds are every kind the schedule injects.
var faultKinds = []string{"drop", "short-blackhole", "long-blackhole", "server-restart", "leader-kill", "quorum-loss", "latency", "lost-write"}

// clientFault says whether kind hits one client's link only.
func clientFault(kind string) bool {
	switch kind {
	case "drop", "short-blackhole", "long-blackhole", "latency", "lost-write":
		return true
	}
	return false
}

// victim picks whom a fault hits. For a fault that ends holdings (a drop,
// a long blackhole, a server restart or quorum loss) it is a holder, of
// the lock, the semaphore and the leadership in turn: preferably one with
// at least 2 s of its holding still to go (waiting up to 2.5 s for one),
// which a partition past the session timeout outlasts, so that a holder
// that did not step down would still hold when the ensemble hands its
// resource on. Faults that seldom end a holding (a short blackhole,
// latency) hit any client (waiters, services, the cache) half the time,
// and otherwise the longest holding of any resource.
func (su *suite) victim(kind string) *client {
	res := ""
	switch kind {
	case "leader-kill": // aims at the leader's server, whoever the victim
		return su.clients[su.rng.IntN(len(su.clients))]
	case "lost-write": // one of the adders
		return su.adders[su.rng.IntN(len(su.adders))].c
	case "short-blackhole", "latency":
		if su.rng.IntN(2) == 0 {
			return su.clients[su.rng.IntN(len(su.clients))]
		}
	default:
		res = []string{resLock, resSemaphore, resTerm}[su.aimed%3]
		su.aimed++
	}
	var best *client
	for deadline := time.Now().Add(2500 * time.Millisecond); su.ctx.Err() == nil; time.Sleep(5 * time.Millisecond) {
		best = nil
		var left time.Duration
		for who, a := range su.led.holders() {
			if l := time.Until(a.plannedEnd); (res == "" || a.res == res) && (best == nil || l > left) {
				best, left = su.byName[who], l
			}
		}
		if left >= 2*time.Second || time.Now().After(deadline) {
			break
		}
	}
	if best == nil {
		best = su.clients[su.rng.IntN(len(su.clients))]
	}
	return best
}

// inject runs one fault of kind (for client faults, against v; for server
// faults, against v's server) and returns once it has healed. Fault lengths
// follow the workloads' context, not the schedule's, so a fault begun near
// the end of the schedule still lasts its time.
func (su *suite) inject(kind string, v *client) {
	ctx := su.ctx
	i := v.serverIndex()
	if i < 0 {
		i = su.rng.IntN(3)
	}
	srv := ens.Server(i)
	rec := faultRec{kind: kind, start: time.Now()}
	switch kind {
	case "drop":
		rec.target = v.name
		v.link.DropConnections()
	case "short-blackhole":
		rec.target = v.name
		v.link.Blackhole()
		sleep(ctx, sessionTimeout/3)
		v.link.Heal()
	case "long-blackhole":
		rec.target = v.name
		v.link.Blackhole()
		sleep(ctx, 2*sessionTimeout)
		v.link.Heal()
	case "latency":
		d := time.Duration(50+su.rng.IntN(200)) * time.Millisecond
		rec.target = fmt.Sprintf("%s (+%v each way)", v.name, d)
		for i := range ens.Servers() {
			v.link.Proxy(i).SetLatency(d)
		}
		sleep(ctx, sessionTimeout)
		v.link.Heal()
	case "server-restart":
		rec.target = fmt.Sprintf("zk%d (%s's server)", srv.ID(), v.name)
		_ = srv.Kill()
		sleep(ctx, sessionTimeout)
		_ = srv.Start(context.Background())
	case "leader-kill":
		rec.target = "leader"
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		l, err := ens.Leader(lctx)
		cancel()
		if err == nil {
			rec.target = fmt.Sprintf("zk%d (leader)", l.ID())
			_ = l.Kill()
			sleep(ctx, sessionTimeout)
			_ = l.Start(context.Background())
		}
	case "quorum-loss":
		rec.target = fmt.Sprintf("all but zk%d (%s's server)", srv.ID(), v.name)
		for _, o := range ens.Servers() {
			if o != srv {
				_ = o.Stop()
			}
		}
		sleep(ctx, 2*sessionTimeout)
		for _, o := range ens.Servers() {
			if !o.Running() {
				_ = o.Start(context.Background())
			}
		}
	case "lost-write":
		if rec.target = su.lostWrite(v); rec.target == "" {
			return // did not fire: not injected
		}
	default:
		panic("unknown fault " + kind)
	}
	rec.end = time.Now()
	su.fmu.Lock()
	su.faults = append(su.faults, rec)
	su.fmu.Unlock()
	su.tl.AddFault(timeline.Window{Label: kind, Start: rec.start, End: rec.end, Target: rec.target})
}

// cycle is the default schedule: rounds of a seeded shuffle of every kind,
// until ctx ends and at least one full round has been injected.
func (su *suite) cycle(ctx context.Context, obs *resilience.Session) {
	var round []string
	for n := 0; ctx.Err() == nil || n < len(faultKinds); n++ {
		if len(round) == 0 {
			round = append([]string(nil), faultKinds...)
			su.rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		}
		kind := round[0]
		round = round[1:]
		su.inject(kind, su.victim(kind))
		su.awaitRecovery(kind, obs)
		sleep(ctx, time.Duration(300+su.rng.IntN(700))*time.Millisecond)
	}
}

// recoveryBound is how long after a fault healed every registration must be
// back on its client's current session: an expiry cycle and a rebuild for a
// client's own fault; a server restart and rejoin on top for the others.
func recoveryBound(kind string) time.Duration {
	if clientFault(kind) {
		return 2*sessionTimeout + 5*time.Second
	}
	return sessionTimeout + 15*time.Second
}

// awaitRecovery waits for the ensemble to serve and for every registration
// to be rebuilt on its live session, recording a violation past the bound.
func (su *suite) awaitRecovery(kind string, obs *resilience.Session) {
	healed := time.Now()
	wctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	_ = ens.WaitServing(wctx)
	cancel()
	bound := recoveryBound(kind)
	for {
		missing := su.unrecovered(obs)
		if len(missing) == 0 {
			break
		}
		if time.Since(healed) > bound {
			su.fmu.Lock()
			su.recoveryBad = append(su.recoveryBad, fmt.Sprintf("after %s: %v not rebuilt on their clients' current sessions %v after the heal", kind, missing, bound))
			su.fmu.Unlock()
			for _, m := range missing {
				su.tl.AddViolation(timeline.Mark{Lane: m, Start: healed, End: time.Now(), Label: "registration not restored after " + kind})
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	su.fmu.Lock()
	su.maxRecovery = max(su.maxRecovery, time.Since(healed))
	su.fmu.Unlock()
}

// unrecovered returns the service clients whose registration node is not
// there owned by the client's current session, as obs sees the ensemble
// after a sync. (Counting visible instances would also count a node of an
// old session that has not expired yet, which says nothing about the
// rebuild.)
func (su *suite) unrecovered(obs *resilience.Session) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var missing []string
	if err := obs.Sync(ctx, su.base+"/services"); err != nil {
		for _, sv := range su.regs {
			missing = append(missing, sv.c.name)
		}
		return missing
	}
	for _, sv := range su.regs {
		p, sid := sv.reg.Path(), sv.c.s.SessionID()
		if ok, st, err := obs.Exists(ctx, p); p == "" || sid == 0 || err != nil || !ok || st.EphemeralOwner != sid {
			missing = append(missing, sv.c.name)
			continue
		}
		now, cur := time.Now(), sv.c.s.SessionID() // not under c.mu, which the session's listener takes
		sv.c.mu.Lock()
		if sv.c.regSince.IsZero() && cur == sid {
			sv.c.regSince = now // for the timeline: seen back
		}
		sv.c.mu.Unlock()
	}
	sort.Strings(missing)
	return missing
}

// attribute names the fault a loss signalled at t is blamed on: the latest
// fault that began before t and healed at most 2T before it.
func (su *suite) attribute(t time.Time) string {
	su.fmu.Lock()
	defer su.fmu.Unlock()
	kind := "none"
	var at time.Time
	for _, f := range su.faults {
		if !f.start.After(t) && f.end.Add(2*sessionTimeout).After(t) && f.start.After(at) {
			kind, at = f.kind, f.start
		}
	}
	return kind
}
