package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/timeline"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/registry"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// The kinds of violation, as the summary names them.
const (
	vLock     = "lock holders overlapping"
	vShort    = "short-lock holders overlapping"
	vSem      = "semaphore over its size"
	vLeaders  = "leaders overlapping"
	vRecovery = "registrations not recovered"
	vOrphans  = "orphaned znodes"
	vCache    = "cache not converged on truth"
	vCounter  = "counter lost or doubled an increment"
	vStale    = "stale fenced writes accepted"
	vLostLive = "sessions lost with a quorum reachable"
)

var violationKinds = []string{vLock, vShort, vSem, vLeaders, vRecovery, vOrphans, vCache, vCounter, vStale, vLostLive}

// result is what one run found.
type result struct {
	violations map[string][]string
	// unmet lists the coverage and progress floors a run did not reach
	// (checked when config.coverage is set).
	unmet []string
	tl    *timeline.Timeline
	su    *suite
	// counter is the counter workload's record and verdict.
	counter *counterTally
	// overlapsByKind counts the overlaps of every resource by the fault
	// each is attributed to; staleByKind the stale fenced writes accepted,
	// refusedByKind those refused, lostByKind the sessions lost with a
	// quorum reachable.
	overlapsByKind, staleByKind, refusedByKind, lostByKind map[string]int
	// refused is how many fenced writes the store refused.
	refused int
}

// queues are the recipe paths whose children are clients' ephemeral nodes,
// with the role of the clients allowed to own them.
var queues = []struct{ path, role string }{
	{"/lock", "locker"},
	{"/short-lock", "short-locker"},
	{"/sem/leases", "sem"},
	{"/sem/locks", "sem"},
	{"/election", "elector"},
	{"/services/api", "service"},
}

// quietTail is how long the workloads run on without faults before the
// end-of-run checks.
const quietTail = 2 * time.Second

// run runs the suite once: every workload, the schedule, then the checks.
func run(t *testing.T, cfg config) *result {
	started := time.Now()
	su := &suite{
		t: t, cfg: cfg,
		rng:    rand.New(rand.NewPCG(cfg.seed, 42)),
		base:   testkit.Path("/chaos"),
		byName: map[string]*client{},
		tl:     &timeline.Timeline{Title: fmt.Sprintf("chaos run %s, seed %d", t.Name(), cfg.seed)},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	su.ctx = ctx
	// Lanes in a fixed order, the locks' first.
	for _, n := range []string{"locker0", "locker1", "locker2", "locker3", "short0", "short1", "short2", "sem0", "sem1", "sem2", "elector0", "elector1", "elector2", "service0", "service1", "service2", "counter0", "counter1", "counter2", "cache"} {
		su.tl.Lanes = append(su.tl.Lanes, timeline.Lane{Name: n})
	}
	var wg sync.WaitGroup
	su.lockers(&wg, 4)
	su.shortLockers(&wg, 3)
	su.semaphores(&wg, 3)
	su.electors(&wg, 3)
	su.registrations(&wg, 3)
	su.counters(&wg, 3)
	obs := testkit.Connect(t, ens.Addrs())
	su.obs = obs
	observer, err := registry.New(obs, su.base+"/services")
	if err != nil {
		t.Fatal(err)
	}
	defer observer.Close()
	cacheC := su.newClient("cache", "cache")
	cr, err := registry.New(cacheC.s, su.base+"/services")
	if err != nil {
		t.Fatal(err)
	}
	defer cr.Close()
	cache, err := cr.NewCache(ctx, "api")
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	go func() {
		for range cache.Events() {
		}
	}()
	var view instanceView = cache
	if cfg.cacheView != nil {
		view = cfg.cacheView(cache)
	}

	faultStart := time.Now()
	fctx, stop := context.WithTimeout(ctx, cfg.duration)
	if cfg.schedule != nil {
		cfg.schedule(su, fctx)
	} else {
		su.cycle(fctx, obs)
		if cfg.coverage {
			su.topUp(obs)
		}
	}
	stop()
	faultEnd := time.Now()

	// Faults have stopped and every registration is back (the schedule
	// waited for it). The workloads run on for a quiet tail, so the
	// registrations change after the caches' last resync; then, with the
	// workloads still running, every node in the recipes'
	// queues must belong to the current session of a client of that queue,
	// at most one per client and queue.
	sleep(ctx, quietTail)
	if cfg.beforeLiveCheck != nil {
		cfg.beforeLiveCheck(su)
	}
	liveAt := time.Now()
	live := su.liveOrphans(obs, 2*sessionTimeout+2*time.Second)
	for _, o := range live {
		su.tl.AddViolation(timeline.Mark{Start: liveAt, End: time.Now(), Label: "orphan (live): " + o})
	}
	if cfg.afterLiveCheck != nil {
		cfg.afterLiveCheck(su)
	}
	// Progress while all was well: a last registration check.
	if missing := su.unrecovered(obs); len(missing) > 0 {
		su.recoveryBad = append(su.recoveryBad, fmt.Sprintf("at the end: %v not on their clients' current sessions", missing))
		for _, m := range missing {
			su.tl.AddViolation(timeline.Mark{Lane: m, Start: faultEnd, End: time.Now(), Label: "registration missing at the end"})
		}
	}

	cancel()
	wg.Wait()
	workEnd := time.Now()

	// The adders have stopped: the counter's final value against their
	// record.
	counter := su.checkCounter(obs)
	if len(counter.bad) > 0 {
		su.tl.AddViolation(timeline.Mark{Start: workEnd, End: time.Now(), Label: "counter: " + counter.bad[0]})
	}

	// The cache converges on the registrations' contents.
	cacheBad := su.cacheDiverges(view, obs, observer, 10*time.Second)
	if len(cacheBad) > 0 {
		su.tl.AddViolation(timeline.Mark{Lane: "cache", Start: workEnd, End: time.Now(), Label: "cache diverges: " + cacheBad[0]})
	}
	cache.Close()

	// Close every client, then nothing may be left. (A session presumed
	// lost at the very end may linger on the ensemble until its timeout:
	// allow for that.)
	for _, c := range su.clients {
		c.s.Close()
	}
	var closed []string
	for _, q := range queues {
		var left []string
		for deadline := time.Now().Add(2*sessionTimeout + 5*time.Second); ; time.Sleep(50 * time.Millisecond) {
			if left = testkit.Children(t, obs, su.base+q.path); len(left) == 0 || time.Now().After(deadline) {
				break
			}
		}
		for _, n := range left {
			closed = append(closed, "after close: "+su.base+q.path+"/"+n)
		}
	}
	for _, o := range closed {
		su.tl.AddViolation(timeline.Mark{Start: workEnd, End: time.Now(), Label: "orphan: " + o})
	}

	res := &result{tl: su.tl, su: su, counter: counter, overlapsByKind: map[string]int{}, staleByKind: map[string]int{}, refusedByKind: map[string]int{}, violations: map[string][]string{
		vRecovery: su.recoveryBad,
		vOrphans:  append(live, closed...),
		vCache:    cacheBad,
		vCounter:  counter.bad,
	}}
	for _, r := range []struct {
		res, kind string
		capacity  int
	}{{resLock, vLock, 1}, {resShort, vShort, 1}, {resSemaphore, vSem, semSize}, {resTerm, vLeaders, 1}} {
		for _, o := range overlaps(su.led.of(r.res), r.res, r.capacity) {
			f := su.attribute(o.start)
			res.overlapsByKind[f]++
			res.violations[r.kind] = append(res.violations[r.kind], fmt.Sprintf("%s (fault %s)", o, f))
			for _, w := range o.who {
				su.tl.AddViolation(timeline.Mark{Lane: w, Start: o.start, End: o.end, Label: fmt.Sprintf("%d %s holders", o.n, r.res)})
			}
		}
	}
	// The fenced store: no stale write accepted; the refused ones counted.
	ws := su.fences.all()
	for _, w := range ws {
		if !w.accepted {
			res.refused++
			res.refusedByKind[su.attribute(w.at)]++
		}
	}
	for _, w := range staleAccepted(ws) {
		f := su.attribute(w.at)
		res.staleByKind[f]++
		res.violations[vStale] = append(res.violations[vStale], fmt.Sprintf("%s (fault %s)", w, f))
		su.tl.AddViolation(timeline.Mark{Lane: w.who, Start: w.at, End: w.done, Label: "stale fenced write accepted"})
	}
	// Sessions lost while a quorum was reachable.
	su.fmu.Lock()
	faults := append([]faultRec(nil), su.faults...)
	su.fmu.Unlock()
	su.lmu.Lock()
	losses := append([]lossRec(nil), su.losses...)
	su.lmu.Unlock()
	var lostBad []string
	res.lostByKind, lostBad = unexpectedLosses(faults, losses)
	res.violations[vLostLive] = lostBad
	su.report(res, started, faultStart, faultEnd, workEnd)
	return res
}

// liveOrphans polls until every node in the queues belongs to the current
// session of a client of that queue, at most one per client and queue, or
// until d has passed (a node of a session the client has given up on may
// linger until the ensemble expires it, within T of its last contact);
// then it returns the offending nodes of the last look.
func (su *suite) liveOrphans(obs *resilience.Session, d time.Duration) []string {
	deadline := time.Now().Add(d)
	for {
		bad := su.orphanLook(obs)
		if len(bad) == 0 || time.Now().After(deadline) {
			return bad
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (su *suite) orphanLook(obs *resilience.Session) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	owners := map[int64]*client{}
	for _, c := range su.clients {
		if sid := c.s.SessionID(); sid != 0 {
			owners[sid] = c
		}
	}
	var bad []string
	for _, q := range queues {
		p := su.base + q.path
		if err := znode.Settle(ctx, obs); err != nil {
			continue // the queue may not exist (yet)
		}
		names, _, err := obs.Children(ctx, p)
		if err != nil {
			continue
		}
		per := map[string][]string{}
		for _, n := range names {
			ok, st, err := obs.Exists(ctx, p+"/"+n)
			if err != nil || !ok {
				continue // gone meanwhile
			}
			c := owners[st.EphemeralOwner]
			switch {
			case c == nil:
				bad = append(bad, fmt.Sprintf("%s/%s: owned by session %#x, no client's current session", p, n, st.EphemeralOwner))
			case c.role != q.role:
				bad = append(bad, fmt.Sprintf("%s/%s: owned by %s, not a %s", p, n, c.name, q.role))
			default:
				per[c.name] = append(per[c.name], n)
			}
		}
		for who, ns := range per {
			if len(ns) > 1 {
				sort.Strings(ns)
				bad = append(bad, fmt.Sprintf("%s: %s has %d nodes %v (%s)", p, who, len(ns), ns, su.doing(who)))
			}
		}
	}
	sort.Strings(bad)
	return bad
}

// doing says what a client is doing now, for the orphan messages.
func (su *suite) doing(who string) string {
	if a, ok := su.led.holders()[who]; ok {
		return fmt.Sprintf("holding %s for %v", a.res, time.Since(a.start).Round(time.Millisecond))
	}
	return "not holding"
}

// cacheDiverges waits up to d for view's instances to equal, field by
// field, the instances as the observer reads them after a sync (read again
// on every look, so a write still landing is no false alarm), and returns
// the differences of the last look.
func (su *suite) cacheDiverges(view instanceView, obs *resilience.Session, observer *registry.Registry, d time.Duration) []string {
	deadline := time.Now().Add(d)
	for {
		diff := func() []string {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := znode.Settle(ctx, obs); err != nil {
				return []string{"sync: " + err.Error()}
			}
			truth, err := observer.Instances(ctx, "api")
			if err != nil {
				return []string{"reading the truth: " + err.Error()}
			}
			return diffInstances(view.Instances(), truth)
		}()
		if len(diff) == 0 || time.Now().After(deadline) {
			return diff
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func diffInstances(got, want []registry.Instance) []string {
	enc := func(list []registry.Instance) map[string]string {
		m := map[string]string{}
		for _, in := range list {
			b, _ := json.Marshal(in)
			m[in.ID] = string(b)
		}
		return m
	}
	g, w := enc(got), enc(want)
	var out []string
	for id, wv := range w {
		switch gv, ok := g[id]; {
		case !ok:
			out = append(out, fmt.Sprintf("%s: missing from the cache (truth %s)", id, wv))
		case gv != wv:
			out = append(out, fmt.Sprintf("%s: cache %s, truth %s", id, gv, wv))
		}
	}
	for id, gv := range g {
		if _, ok := w[id]; !ok {
			out = append(out, fmt.Sprintf("%s: in the cache (%s) but not registered", id, gv))
		}
	}
	sort.Strings(out)
	return out
}

// report prints the summary, adds it to the timeline as notes, and checks
// the coverage floors when the config asks for them.
func (su *suite) report(res *result, started, faultStart, faultEnd, workEnd time.Time) {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "chaos run %s: seed %d, %v of faults (asked %v), session timeout %v, %v in all\n",
		su.t.Name(), su.cfg.seed, faultEnd.Sub(faultStart).Round(time.Second), su.cfg.duration, sessionTimeout, time.Since(started).Round(time.Second))

	perKind := map[string]int{}
	for _, f := range su.faults {
		perKind[f.kind]++
	}
	var kinds []string
	for _, k := range faultKinds {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, perKind[k]))
	}
	fmt.Fprintf(w, "faults injected\t%d\t(%s)\n", len(su.faults), strings.Join(kinds, ", "))
	if su.cfg.coverage {
		kinds := su.cfg.faultKinds()
		floor := max(1, len(su.faults)/len(kinds)-1)
		for _, k := range kinds {
			if perKind[k] < floor {
				res.unmet = append(res.unmet, fmt.Sprintf("fault %s injected %d times, want at least %d", k, perKind[k], floor))
			}
		}
	}

	type prog struct {
		res, role string
		capacity  int
		min       int // holdings in all
		// stepDown: the lane's holdings are meant to test the step-down,
		// so some lost holding must be taken over before its planned end.
		stepDown bool
		// tailMin is the least number of holdings begun after the last
		// fault healed (in the quiet tail): a lane of short holdings that
		// makes none there is stuck.
		tailMin int
	}
	var minMargin *margin
	marginByKind := map[string]time.Duration{}
	workTime := workEnd.Sub(faultStart)
	for _, p := range []prog{
		{resLock, "locker", 1, 20, true, 0},
		{resShort, "short-locker", 1, shortFloor(faultEnd.Sub(faultStart)), false, shortTailFloor},
		{resSemaphore, "sem", semSize, 20, true, 0},
		{resTerm, "elector", 1, 10, true, 0},
	} {
		hs := su.led.of(p.res)
		per := map[string]int{}
		lost, tail := 0, 0
		for _, h := range hs {
			per[h.who]++
			if h.lost {
				lost++
			}
			if h.start.After(faultEnd) {
				tail++
			}
		}
		var whos []string
		for _, c := range su.clients {
			if c.role == p.role {
				whos = append(whos, fmt.Sprintf("%s=%d", c.name, per[c.name]))
				if su.cfg.coverage && per[c.name] == 0 {
					res.unmet = append(res.unmet, fmt.Sprintf("%s never held the %s", c.name, p.res))
				}
			}
		}
		if su.cfg.coverage && len(hs) < p.min {
			res.unmet = append(res.unmet, fmt.Sprintf("%d %s holdings, want at least %d", len(hs), p.res, p.min))
		}
		if su.cfg.coverage && tail < p.tailMin {
			res.unmet = append(res.unmet, fmt.Sprintf("%d %s holdings began after the last fault healed, want at least %d: the lane is stuck", tail, p.res, p.tailMin))
		}
		ms := margins(hs, p.capacity)
		chances := catchable(hs, p.capacity)
		if su.cfg.coverage && p.stepDown && chances == 0 {
			res.unmet = append(res.unmet, fmt.Sprintf("no lost %s holding was taken over before its planned end: nothing tested its step-down", p.res))
		}
		line := fmt.Sprintf("%s holdings\t%d\t(%.1f/s; %s); %d after the faults; lost %d, taken over %d (%d before the planned end)", p.res, len(hs), float64(len(hs))/workTime.Seconds(), strings.Join(whos, ", "), tail, lost, len(ms), chances)
		var low *margin
		for i := range ms {
			m := &ms[i]
			m.fault = su.attribute(m.h.lostAt)
			if low == nil || m.d < low.d {
				low = m
			}
			if d, ok := marginByKind[m.fault]; !ok || m.d < d {
				marginByKind[m.fault] = m.d
			}
		}
		if low != nil {
			line += fmt.Sprintf(", min margin %v (%s lost at %s, %s took over; fault %s)", low.d.Round(time.Millisecond), low.h.who, low.h.lostAt.Format("15:04:05.000"), low.next.who, low.fault)
			if minMargin == nil || low.d < minMargin.d {
				minMargin = low
			}
		}
		fmt.Fprintln(w, line)
	}
	if su.cfg.coverage {
		leaders := map[string]bool{}
		for _, h := range su.led.of(resTerm) {
			leaders[h.who] = true
		}
		if len(leaders) < 2 {
			res.unmet = append(res.unmet, fmt.Sprintf("%d distinct leaders, want at least 2", len(leaders)))
		}
		if minMargin == nil {
			res.unmet = append(res.unmet, "no holding was lost to a fault and followed by another holder: nothing tested a step-down")
		}
	}
	if minMargin != nil {
		var ks []string
		for k := range marginByKind {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		var parts []string
		for _, k := range ks {
			parts = append(parts, fmt.Sprintf("%s %v", k, marginByKind[k].Round(time.Millisecond)))
		}
		fmt.Fprintf(w, "min step-down margin\t%v\t(by fault: %s)\n", minMargin.d.Round(time.Millisecond), strings.Join(parts, ", "))
	} else {
		fmt.Fprintf(w, "min step-down margin\tnone\t(no lost holding was followed by another holder)\n")
	}
	fmt.Fprintf(w, "fenced writes\t%d\t(%d refused as stale)\n", len(su.fences.all()), res.refused)
	allLost := map[string]int{}
	su.fmu.Lock()
	faults := append([]faultRec(nil), su.faults...)
	su.fmu.Unlock()
	su.lmu.Lock()
	for _, l := range su.losses {
		k := "none"
		if ks := explainLoss(faults, l.who, l.at); len(ks) > 0 {
			k = ks[0]
		}
		allLost[k]++
	}
	su.lmu.Unlock()
	fmt.Fprintf(w, "by fault kind\toverlaps\tstale accepted\trefused\tlost, quorum reachable (must be 0)\tlost in all\tmin margin\n")
	for _, k := range append(append([]string(nil), faultKinds...), "none") {
		m := "-"
		if d, ok := marginByKind[k]; ok {
			m = d.Round(time.Millisecond).String()
		}
		must := fmt.Sprint(res.lostByKind[k])
		if k != "none" && lossExpected(k) {
			must = "(may)"
		}
		fmt.Fprintf(w, "  %s\t%d\t%d\t%d\t%s\t%d\t%s\n", k, res.overlapsByKind[k], res.staleByKind[k], res.refusedByKind[k], must, allLost[k], m)
	}
	susp, losses := 0, 0
	for _, c := range su.clients {
		c.mu.Lock()
		susp += c.suspensions
		losses += c.lossCount
		c.mu.Unlock()
	}
	if ct := res.counter; ct != nil {
		fmt.Fprintf(w, "counter\t%d -> %d\t(%d successful Adds, %d unknown + %d interrupted of which %d applied, %d other errors); lost writes %d (%d requests, %d replies; %d with another adder's Add meanwhile), %d not injected\n",
			ct.start, ct.final, ct.ok, ct.unknown, ct.interrupted, ct.applied, ct.other, ct.lostWrites, ct.lostRequests, ct.lostReplies, ct.withConcurrentAdd, ct.notInjected)
		if su.cfg.coverage {
			if ct.ok < 50 {
				res.unmet = append(res.unmet, fmt.Sprintf("%d successful counter Adds, want at least 50", ct.ok))
			}
			if ct.unknown == 0 {
				res.unmet = append(res.unmet, "no counter Add had an unknown outcome: nothing tested the accounting of one")
			}
			if ct.withConcurrentAdd == 0 && slices.Contains(su.cfg.faultKinds(), "lost-write") {
				res.unmet = append(res.unmet, "no lost write had another adder's Add while its reconnect was held")
			}
		}
	}
	fmt.Fprintf(w, "session suspensions / losses\t%d / %d\n", susp, losses)
	fmt.Fprintf(w, "max registration recovery\t%v\n", su.maxRecovery.Round(time.Millisecond))
	for _, k := range violationKinds {
		fmt.Fprintf(w, "violations: %s\t%d\n", k, len(res.violations[k]))
	}
	for _, u := range res.unmet {
		fmt.Fprintf(w, "NOT EXERCISED: %s\n", u)
	}
	w.Flush()
	fmt.Fprintf(os.Stdout, "\n%s", b.String())
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		su.tl.Notes = append(su.tl.Notes, strings.Join(strings.Fields(line), " "))
	}
	for _, k := range violationKinds {
		for i, v := range res.violations[k] {
			if i == 5 {
				su.tl.Notes = append(su.tl.Notes, fmt.Sprintf("%s: %d more", k, len(res.violations[k])-5))
				break
			}
			su.tl.Notes = append(su.tl.Notes, k+": "+v)
		}
	}
}

// shortFloor is the least number of short-lane holdings a run with faults
// injected for d must show: a few a second (the lane managed tens a second
// in measured runs, faults and all).
func shortFloor(d time.Duration) int {
	return max(100, int(5*d.Seconds()))
}

// shortTailFloor is the least number of short-lane holdings begun in the
// quiet tail after the faults (quietTail and the live orphan check: more
// than 2 s, in which the lane makes tens of holdings a second).
const shortTailFloor = 10
