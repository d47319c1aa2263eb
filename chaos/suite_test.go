package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/election"
	"github.com/zkrecipes/zkrecipes/fence"
	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/timeline"
	"github.com/zkrecipes/zkrecipes/internal/wirefault"
	"github.com/zkrecipes/zkrecipes/lock"
	"github.com/zkrecipes/zkrecipes/registry"
	"github.com/zkrecipes/zkrecipes/resilience"
	"github.com/zkrecipes/zkrecipes/zktest"
)

// Resources, as holdings name them.
const (
	resLock      = "lock"
	resSemaphore = "semaphore"
	resTerm      = "term"
	// resShort is the short-hold lock lane's mutex, a lock of its own.
	resShort = "short-lock"
)

const semSize = 2

// band is one class of holding durations: a share of the holdings, drawn
// uniformly from [lo, hi).
type band struct {
	share  float64
	lo, hi time.Duration
}

// The holding mixes. Short holdings (55%) keep the handoff volume high
// (queue ordering, many watches firing); the middle band (30%) spans the
// short faults and the detection of a dead link (2/3 T); the long band
// (15%) outlasts the session timeout (T = 1.5 s), so a holder partitioned
// at its start is still holding, if it ignores its loss, when the ensemble
// has expired its session and handed the resource on. Terms are fewer (one
// leader at a time), so their long band is larger (20%) for as many
// chances to catch a leader that does not step down.
var (
	holdMix = []band{{0.55, 5 * time.Millisecond, 50 * time.Millisecond}, {0.30, 300 * time.Millisecond, 1200 * time.Millisecond}, {0.15, 1600 * time.Millisecond, 4 * time.Second}}
	termMix = []band{{0.45, 20 * time.Millisecond, 300 * time.Millisecond}, {0.35, 300 * time.Millisecond, 1200 * time.Millisecond}, {0.20, 1600 * time.Millisecond, 4 * time.Second}}
)

// shortMix is the short-hold lane's: 1–20 ms, never longer, so its three
// contenders hand the lock on tens of times a second (queue ordering,
// watches firing, cancelled acquisitions in a busy queue) while the main
// lock lane's long holdings test the step-down.
var shortMix = []band{{1, time.Millisecond, 20 * time.Millisecond}}

// longHold is where the bugs start: holdings planned at least this long
// ignore their loss signal when a bug is on.
const longHold = 300 * time.Millisecond

func draw(rng *rand.Rand, mix []band) time.Duration {
	x := rng.Float64()
	for _, b := range mix {
		if x < b.share {
			return b.lo + time.Duration(rng.Int64N(int64(b.hi-b.lo)))
		}
		x -= b.share
	}
	b := mix[len(mix)-1]
	return b.lo + time.Duration(rng.Int64N(int64(b.hi-b.lo)))
}

// bugs are the workload misbehaviours the self-tests (and -chaos.bug) turn
// on, each a failing input for one kind of violation.
type bugs struct {
	lockIgnoresLoss, semIgnoresLoss, leaderIgnoresLoss bool
	// registryClosed closes the first service's registry behind its
	// registration's back (and stops its updates): after a new session
	// nothing re-creates its node.
	registryClosed bool
	// unknownAsSuccess makes the adders record an Add whose outcome is
	// unknown as a success.
	unknownAsSuccess bool
	// shortAstray makes the first short-lane client lock a path of its
	// own: nothing excludes it from the other short-lane holders.
	shortAstray bool
}

// instanceView is what the cache check reads.
type instanceView interface{ Instances() []registry.Instance }

// config is one run of the suite.
type config struct {
	duration time.Duration
	seed     uint64
	// coverage asserts the fault kinds and the workloads' progress.
	coverage bool
	bugs     bugs
	// kinds, if set, are the fault kinds the seeded cycle injects (and
	// coverage asks for) instead of every kind.
	kinds []string
	// schedule, if set, replaces the seeded cycle of faults; it must return
	// by the time ctx ends.
	schedule func(su *suite, ctx context.Context)
	// cacheView, if set, substitutes what the cache check reads.
	cacheView func(c *registry.Cache) instanceView
	// beforeLiveCheck and afterLiveCheck run around the check for orphans
	// made while the sessions are alive.
	beforeLiveCheck, afterLiveCheck func(su *suite)
	// lostWriteMode, if set, is the mode of every lost-write fault
	// (otherwise they alternate from a seeded start).
	lostWriteMode wirefault.Mode
}

// client is one process's worth of ZooKeeper use: a session with a network
// path of its own to every server (a zktest.Link), so faults can hit it
// alone, and it can move to another server when its own goes.
type client struct {
	name string
	role string // locker, short-locker, sem, elector, service, counter, cache
	link *zktest.Link
	s    *resilience.Session

	mu                     sync.Mutex
	suspendedAt, lostAt    time.Time
	regSince               time.Time // a service's node known present on its current session since
	suspensions, lossCount int
}

// serverIndex returns the index of the server c is (or was last) connected
// to, or -1.
func (c *client) serverIndex() int {
	addr := c.s.Server()
	for i, a := range c.link.Addrs() {
		if a == addr {
			return i
		}
	}
	return -1
}

type suite struct {
	t    *testing.T
	cfg  config
	ctx  context.Context // the workloads'
	rng  *rand.Rand      // the schedule's
	base string
	led  ledger
	tl   *timeline.Timeline

	obs     *resilience.Session // an observer outside the faults
	clients []*client
	byName  map[string]*client
	regs    []*service
	adders  []*adder

	counterPath  string
	counterStart int32
	lw           lostWrites // under fmu

	// fstore is the fenced store the lock lane's holders and the leaders
	// write to (a resource each), fences the record of their writes.
	fstore fence.Store
	fences fenceLog
	// losses are the clients' Lost transitions, under lmu.
	lmu    sync.Mutex
	losses []lossRec

	aimed       int // faults aimed at holders so far
	fmu         sync.Mutex
	faults      []faultRec
	recoveryBad []string
	maxRecovery time.Duration
}

type faultRec struct {
	kind, target string
	victim       string // the client whose link a client fault hit
	start, end   time.Time
}

func (su *suite) newClient(name, role string) *client {
	return su.newClientWith(name, role, resilience.WithSessionTimeout(sessionTimeout))
}

// newClientWith is newClient with the session options opts.
func (su *suite) newClientWith(name, role string, opts ...resilience.Option) *client {
	t := su.t
	l, err := ens.NewLink()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s := testkit.Connect(t, l.Addrs(), opts...)
	c := &client{name: name, role: role, link: l, s: s}
	s.AddListener(func(tr resilience.Transition) { su.sessionState(c, tr) })
	su.clients = append(su.clients, c)
	su.byName[name] = c
	return c
}

// sessionState draws a client's session on its lane: suspended from
// Suspended to Reconnected or Lost, lost from Lost to the next session.
func (su *suite) sessionState(c *client, tr resilience.Transition) {
	c.mu.Lock()
	defer c.mu.Unlock()
	endSuspended := func() {
		if !c.suspendedAt.IsZero() {
			su.tl.AddSpan(c.name, timeline.Span{Kind: timeline.KindSuspended, Start: c.suspendedAt, End: tr.Time, Label: "until " + tr.To.String()})
			c.suspendedAt = time.Time{}
		}
	}
	endRegistered := func() {
		if !c.regSince.IsZero() {
			su.tl.AddSpan(c.name, timeline.Span{Kind: timeline.KindRegistered, Start: c.regSince, End: tr.Time, Label: "until " + tr.To.String()})
			c.regSince = time.Time{}
		}
	}
	switch tr.To {
	case resilience.Suspended:
		c.suspendedAt = tr.Time
		c.suspensions++
	case resilience.Reconnected:
		endSuspended()
	case resilience.Lost:
		endSuspended()
		endRegistered()
		c.lostAt = tr.Time
		c.lossCount++
		su.lmu.Lock()
		su.losses = append(su.losses, lossRec{who: c.name, at: tr.Time, cause: tr.Cause, sid: tr.OldSessionID})
		su.lmu.Unlock()
	case resilience.Connected, resilience.Closed:
		endSuspended()
		if tr.To == resilience.Closed {
			endRegistered()
		}
		if !c.lostAt.IsZero() {
			su.tl.AddSpan(c.name, timeline.Span{Kind: timeline.KindLost, Start: c.lostAt, End: tr.Time, Label: fmt.Sprintf("%s (%s), then %s", tr.Cause, fmt.Sprintf("%#x", tr.OldSessionID), tr.To)})
			c.lostAt = time.Time{}
		}
	}
}

// hold is one holding by c of res: it lasts planned, or until its loss
// signal (done) fires, unless the holder ignores it; or until the run ends.
// It is recorded from acquisition to the moment the holder stops. With a
// token (not 0) the holder writes to the fenced store with it as it
// begins, every fenceEvery while it holds, and once as it ends.
func (su *suite) hold(c *client, res string, lctx context.Context, lostErr error, planned time.Duration, ignoring bool, token int64) {
	start := time.Now()
	var lostAt atomic.Int64
	stop := context.AfterFunc(lctx, func() { lostAt.Store(time.Now().UnixNano()) })
	su.led.begin(c.name, res, start, planned, ignoring)
	timer := time.NewTimer(planned)
	var tick <-chan time.Time
	if token != 0 {
		su.fencedWrite(c.name, res, token)
		tk := time.NewTicker(fenceEvery)
		defer tk.Stop()
		tick = tk.C
	}
	lost := lctx.Done()
	if ignoring {
		lost = nil
	}
wait:
	for {
		select {
		case <-timer.C:
			break wait
		case <-lost:
			break wait
		case <-su.ctx.Done():
			break wait
		case <-tick:
			su.fencedWrite(c.name, res, token)
		}
	}
	if token != 0 {
		su.fencedWrite(c.name, res, token)
	}
	end := time.Now()
	timer.Stop()
	stop()
	h := holding{res: res, who: c.name, start: start, end: end, planned: planned}
	if lctx.Err() != nil && errors.Is(context.Cause(lctx), lostErr) {
		h.lost = true
		h.lostAt = end
		if ns := lostAt.Load(); ns != 0 && ns < end.UnixNano() {
			h.lostAt = time.Unix(0, ns)
		}
		if !ignoring {
			// A holder that heeds its loss stops when told; of the two
			// goroutines that hear of it (this one and the AfterFunc),
			// the first to run is the closer record of that moment. Both
			// run after the cancellation, so a late loss signal still
			// shows.
			h.end = h.lostAt
		}
	}
	su.led.add(h)
	label := fmt.Sprintf("planned %v", planned.Round(time.Millisecond))
	if h.lost {
		label += fmt.Sprintf("; loss signalled after %v, stopped %v later", h.lostAt.Sub(start).Round(time.Millisecond), end.Sub(h.lostAt).Round(time.Millisecond))
	}
	su.tl.AddSpan(c.name, timeline.Span{Kind: map[string]string{resLock: timeline.KindLock, resShort: timeline.KindLock, resSemaphore: timeline.KindSemaphore, resTerm: timeline.KindTerm}[res], Start: start, End: h.end, Label: label})
}

func workerRNG(seed uint64, name string) *rand.Rand {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(name); i++ {
		h = (h ^ uint64(name[i])) * 1099511628211
	}
	return rand.New(rand.NewPCG(seed, h))
}

// acquireCtx is the context of one acquisition: one in four gives up after
// 20–400 ms (a cancelled acquisition must leave no node in the queue, which
// the live orphan check sees), the others wait as long as the run lasts.
func (su *suite) acquireCtx(rng *rand.Rand) (context.Context, context.CancelFunc) {
	if rng.IntN(4) == 0 {
		return context.WithTimeout(su.ctx, time.Duration(20+rng.IntN(380))*time.Millisecond)
	}
	return context.WithCancel(su.ctx)
}

// lockers contend for one mutex.
func (su *suite) lockers(wg *sync.WaitGroup, n int) {
	for i := 0; i < n; i++ {
		c := su.newClient(fmt.Sprintf("locker%d", i), "locker")
		m, err := lock.NewMutex(c.s, su.base+"/lock")
		if err != nil {
			su.t.Fatal(err)
		}
		rng := workerRNG(su.cfg.seed, c.name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for su.ctx.Err() == nil {
				actx, cancel := su.acquireCtx(rng)
				l, err := m.Lock(actx)
				cancel()
				if err != nil {
					continue
				}
				d := draw(rng, holdMix)
				su.hold(c, resLock, l.Context(), lock.ErrLeaseLost, d, su.cfg.bugs.lockIgnoresLoss && d >= longHold, l.Token())
				_ = l.Release(context.WithoutCancel(su.ctx))
			}
		}()
	}
}

// shortLockers contend for the short-hold lane's mutex, a lock of its own
// (its own path and clients), holding 1–20 ms and never ignoring a loss.
func (su *suite) shortLockers(wg *sync.WaitGroup, n int) {
	for i := 0; i < n; i++ {
		c := su.newClient(fmt.Sprintf("short%d", i), "short-locker")
		path := su.base + "/short-lock"
		if i == 0 && su.cfg.bugs.shortAstray {
			path = su.base + "/short-lock-astray" // the bug
		}
		m, err := lock.NewMutex(c.s, path)
		if err != nil {
			su.t.Fatal(err)
		}
		rng := workerRNG(su.cfg.seed, c.name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for su.ctx.Err() == nil {
				actx, cancel := su.acquireCtx(rng)
				l, err := m.Lock(actx)
				cancel()
				if err != nil {
					continue
				}
				su.hold(c, resShort, l.Context(), lock.ErrLeaseLost, draw(rng, shortMix), false, 0)
				_ = l.Release(context.WithoutCancel(su.ctx))
			}
		}()
	}
}

func (su *suite) semaphores(wg *sync.WaitGroup, n int) {
	for i := 0; i < n; i++ {
		c := su.newClient(fmt.Sprintf("sem%d", i), "sem")
		sem, err := lock.NewSemaphore(c.s, su.base+"/sem", semSize)
		if err != nil {
			su.t.Fatal(err)
		}
		rng := workerRNG(su.cfg.seed, c.name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for su.ctx.Err() == nil {
				actx, cancel := su.acquireCtx(rng)
				l, err := sem.Acquire(actx)
				cancel()
				if err != nil {
					continue
				}
				d := draw(rng, holdMix)
				su.hold(c, resSemaphore, l.Context(), lock.ErrLeaseLost, d, su.cfg.bugs.semIgnoresLoss && d >= longHold, 0)
				_ = l.Release(context.WithoutCancel(su.ctx))
			}
		}()
	}
}

func (su *suite) electors(wg *sync.WaitGroup, n int) {
	for i := 0; i < n; i++ {
		c := su.newClient(fmt.Sprintf("elector%d", i), "elector")
		e, err := election.New(c.s, su.base+"/election", election.WithID(c.name))
		if err != nil {
			su.t.Fatal(err)
		}
		rng := workerRNG(su.cfg.seed, c.name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = e.Run(su.ctx, func(lead context.Context, t *election.Term) error {
				d := draw(rng, termMix)
				su.hold(c, resTerm, lead, election.ErrTermLost, d, su.cfg.bugs.leaderIgnoresLoss && d >= longHold, t.Token())
				return nil
			})
		}()
	}
}

// service is a registration and the client whose current session should
// own its node.
type service struct {
	c   *client
	r   *registry.Registry
	reg *registry.Registration
}

// registrations registers one instance per service client and, but for
// the last, keeps updating its payload, so the registrations' contents
// change under the cache.
func (su *suite) registrations(wg *sync.WaitGroup, n int) {
	for i := 0; i < n; i++ {
		c := su.newClient(fmt.Sprintf("service%d", i), "service")
		r, err := registry.New(c.s, su.base+"/services")
		if err != nil {
			su.t.Fatal(err)
		}
		su.t.Cleanup(func() { _ = r.Close() })
		reg, err := r.Register(su.ctx, registry.Instance{Name: "api", ID: c.name, Address: "10.0.0.1", Port: registry.Int(8000 + i), Payload: json.RawMessage(`{"seq":0}`)})
		if err != nil {
			su.t.Fatal(err)
		}
		su.regs = append(su.regs, &service{c, r, reg})
		c.mu.Lock()
		c.regSince = time.Now()
		c.mu.Unlock()
		if i == 0 && su.cfg.bugs.registryClosed {
			_ = r.Close() // the bug: nothing keeps this registration any more
			continue
		}
		if i == n-1 {
			// The last one is never updated: an Update re-creates a missing
			// node, which would hide a rebuild that does not happen.
			continue
		}
		rng := workerRNG(su.cfg.seed, c.name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 1; ; seq++ {
				sleep(su.ctx, time.Duration(200+rng.IntN(600))*time.Millisecond)
				if su.ctx.Err() != nil {
					return
				}
				in := reg.Instance()
				in.Payload = json.RawMessage(fmt.Sprintf(`{"seq":%d}`, seq))
				_ = reg.Update(su.ctx, in)
			}
		}()
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
