package chaos

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/zkrecipes/zkrecipes/internal/timeline"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// faultKinds are every kind the schedule injects.
var faultKinds = []string{"drop", "short-blackhole", "long-blackhole", "server-restart", "leader-kill", "quorum-loss", "latency", "lost-write",
	"follower-partition", "server-pause", "oneway-requests", "oneway-replies"}

// clientFault says whether kind hits one client's link only.
func clientFault(kind string) bool {
	switch kind {
	case "drop", "short-blackhole", "long-blackhole", "latency", "lost-write", "oneway-requests", "oneway-replies":
		return true
	}
	return false
}

// victim picks whom a fault hits. For a fault that ends holdings (a drop,
// a long or one-way blackhole, a server restart, pause or partition from
// its peers, quorum loss) it is a holder, of
// the lock, the semaphore and the leadership in turn: preferably one with
// at least 2 s of its holding still to go (waiting up to 2.5 s for one),
// which a partition past the session timeout outlasts, so that a holder
// that did not step down would still hold when the ensemble hands its
// resource on. A follower partitioned from its peers is a holder's server
// that does not lead (the holder of a follower, if any has time to go).
// Faults that seldom end a holding (a short blackhole, latency) hit any
// client (waiters, services, the cache) half the time, and otherwise the
// longest holding of any resource.
func (su *suite) victim(kind string) *client {
	res := ""
	leader := -1 // for a follower partition: the leader's server index
	if kind == "follower-partition" {
		if l := su.leaderIndex(); l >= 0 {
			leader = l
		}
	}
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
			if leader >= 0 && su.byName[who].serverIndex() == leader {
				continue
			}
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

// leaderIndex returns the index of the leader's server, or -1.
func (su *suite) leaderIndex() int {
	lctx, cancel := context.WithTimeout(su.ctx, 10*time.Second)
	defer cancel()
	l, err := ens.Leader(lctx)
	if err != nil {
		return -1
	}
	for i, s := range ens.Servers() {
		if s == l {
			return i
		}
	}
	return -1
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
	if clientFault(kind) {
		rec.victim = v.name
	}
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
	case "follower-partition":
		// The victim's server, a follower (another follower if the victim
		// is on the leader's), cut from its peers while its clients still
		// reach it: it serves them for syncLimit ticks while the leader
		// expires their sessions after T. Held for that and 2T more, so
		// the ensemble has expired and handed on before it heals.
		if l := su.leaderIndex(); l < 0 {
			return // no leader to be cut from: not injected
		} else if i == l {
			i = (l + 1 + su.rng.IntN(len(ens.Servers())-1)) % len(ens.Servers())
			srv = ens.Server(i)
		}
		rec.target = fmt.Sprintf("zk%d (%s's server's follower) from its peers", srv.ID(), v.name)
		if v.serverIndex() == i {
			rec.target = fmt.Sprintf("zk%d (%s's server, a follower) from its peers", srv.ID(), v.name)
		}
		if err := srv.IsolateFromPeers(); err != nil {
			return // not injected
		}
		sleep(ctx, time.Duration(ens.SyncLimit())*ens.TickTime()+2*sessionTimeout)
		_ = srv.RejoinPeers()
	case "server-pause":
		// SIGSTOP past the session timeout: silence, connections open.
		rec.target = fmt.Sprintf("zk%d (%s's server)", srv.ID(), v.name)
		if err := srv.Pause(); err != nil {
			return // not injected
		}
		sleep(ctx, 2*sessionTimeout)
		_ = srv.Resume()
	case "oneway-requests", "oneway-replies":
		// The victim's link loses what it sends (the ensemble hears no
		// pings and expires the session after T while replies and
		// notifications owed still come) or what it is sent (its requests
		// and pings still arrive and keep the session alive on the
		// ensemble while the client hears nothing), to every server, for
		// 2T.
		rec.target = v.name
		if kind == "oneway-requests" {
			v.link.BlackholeRequests()
		} else {
			v.link.BlackholeReplies()
		}
		sleep(ctx, 2*sessionTimeout)
		v.link.Heal()
	default:
		panic("unknown fault " + kind)
	}
	rec.end = time.Now()
	su.fmu.Lock()
	su.faults = append(su.faults, rec)
	su.fmu.Unlock()
	su.tl.AddFault(timeline.Window{Label: kind, Start: rec.start, End: rec.end, Target: rec.target})
}

// faultKinds returns the kinds the seeded cycle injects.
func (c config) faultKinds() []string {
	if len(c.kinds) > 0 {
		return c.kinds
	}
	return faultKinds
}

// cycle is the default schedule: rounds of a seeded shuffle of every kind,
// until ctx ends and at least one full round has been injected.
func (su *suite) cycle(ctx context.Context, obs *resilience.Session) {
	kinds := su.cfg.faultKinds()
	var round []string
	for n := 0; ctx.Err() == nil || n < len(kinds); n++ {
		if len(round) == 0 {
			round = append([]string(nil), kinds...)
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
	if err := znode.Settle(ctx, obs); err != nil {
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
