// Package chaos runs every recipe together against a 3-node ensemble while
// a seeded, reproducible fault schedule injects connection drops,
// partitions shorter and longer than the session timeout, server kills and
// restarts, leader kills, quorum loss and latency, then checks from
// recorded intervals (one clock) that no two lock holders or leaders ever
// overlapped, that the semaphore never exceeded its size, that every
// registration came back after each fault, that caches converged, and that
// no znode was left behind.
//
//	go test ./chaos -run TestChaos -args -chaos.duration=10m -chaos.seed=7
package chaos

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/zkrecipes/zkrecipes/election"
	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/lock"
	"github.com/zkrecipes/zkrecipes/registry"
	"github.com/zkrecipes/zkrecipes/resilience"
	"github.com/zkrecipes/zkrecipes/zktest"
)

var (
	duration = flag.Duration("chaos.duration", 40*time.Second, "how long to inject faults")
	seed     = flag.Uint64("chaos.seed", 1, "seed of the fault schedule")
)

var ens *zktest.Ensemble

func TestMain(m *testing.M) { testkit.Main(m, &ens, 3) }

const sessionTimeout = 1500 * time.Millisecond

// client is one process's worth of ZooKeeper use: a session behind a proxy
// of its own, so faults can hit it alone.
type client struct {
	name  string
	proxy *zktest.Proxy
	s     *resilience.Session
}

type suite struct {
	t      *testing.T
	ctx    context.Context
	rng    *rand.Rand
	base   string
	locks  testkit.Checker
	sems   testkit.Checker
	terms  testkit.Checker
	faults map[string]int
	fmu    sync.Mutex

	handoffs, semLeases, termCount atomic.Int64
	maxRecovery                    atomic.Int64 // nanoseconds
	recoveryViolations             []string
	clients                        []*client
	regs                           []owned

	// broken makes lock holders ignore their lease (the self-test).
	broken bool
}

func (su *suite) newClient(name string, server int) *client {
	t := su.t
	p, err := zktest.NewProxy(ens.Server(server).DirectAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	s := testkit.Connect(t, []string{p.Addr()}, resilience.WithSessionTimeout(sessionTimeout))
	c := &client{name: name, proxy: p, s: s}
	su.clients = append(su.clients, c)
	return c
}

func (su *suite) fault(kind string) {
	su.fmu.Lock()
	su.faults[kind]++
	su.fmu.Unlock()
}

// lockers contend for one mutex; each holding is recorded from acquisition
// to the moment the holder learns it lost or starts releasing.
func (su *suite) lockers(wg *sync.WaitGroup, n int) {
	for i := 0; i < n; i++ {
		c := su.newClient(fmt.Sprintf("locker%d", i), i%3)
		m, err := lock.NewMutex(c.s, su.base+"/lock")
		if err != nil {
			su.t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for su.ctx.Err() == nil {
				l, err := m.Lock(su.ctx)
				if err != nil {
					continue
				}
				start := time.Now()
				hold := time.Duration(5+rand.IntN(20)) * time.Millisecond
				if su.broken {
					time.Sleep(4 * sessionTimeout) // ignores l.Done(): the bug
				} else {
					select {
					case <-l.Done():
					case <-time.After(hold):
					}
				}
				end := time.Now()
				su.locks.Add(c.name, start, end)
				su.handoffs.Add(1)
				_ = l.Release(context.WithoutCancel(su.ctx))
			}
		}()
	}
}

func (su *suite) semaphores(wg *sync.WaitGroup, n, size int) {
	for i := 0; i < n; i++ {
		c := su.newClient(fmt.Sprintf("sem%d", i), (i+1)%3)
		sem, err := lock.NewSemaphore(c.s, su.base+"/sem", size)
		if err != nil {
			su.t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for su.ctx.Err() == nil {
				l, err := sem.Acquire(su.ctx)
				if err != nil {
					continue
				}
				start := time.Now()
				select {
				case <-l.Done():
				case <-time.After(time.Duration(10+rand.IntN(30)) * time.Millisecond):
				}
				su.sems.Add(c.name, start, time.Now())
				su.semLeases.Add(1)
				_ = l.Release(context.WithoutCancel(su.ctx))
			}
		}()
	}
}

func (su *suite) electors(wg *sync.WaitGroup, n int) {
	for i := 0; i < n; i++ {
		c := su.newClient(fmt.Sprintf("elector%d", i), (i+2)%3)
		e, err := election.New(c.s, su.base+"/election", c.name)
		if err != nil {
			su.t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = e.Run(su.ctx, func(lead context.Context) error {
				start := time.Now()
				select {
				case <-lead.Done():
				case <-time.After(time.Duration(200+rand.IntN(400)) * time.Millisecond):
				}
				su.terms.Add(c.name, start, time.Now())
				su.termCount.Add(1)
				return nil
			})
		}()
	}
}

// owned is a registration and the session that should own its node.
type owned struct {
	reg *registry.Registration
	s   *resilience.Session
}

// recovered counts the registrations whose node exists and belongs to its
// client's current session, as obs sees the ensemble after a sync. (Counting
// visible instances would also count a node of an old session that has not
// expired yet, which says nothing about the rebuild.)
func (su *suite) recovered(ctx context.Context, obs *resilience.Session) int {
	if err := obs.Sync(ctx, su.base+"/services"); err != nil {
		return 0
	}
	n := 0
	for _, o := range su.regs {
		p, sid := o.reg.Path(), o.s.SessionID()
		if p == "" || sid == 0 {
			continue
		}
		if ok, st, err := obs.Exists(ctx, p); err == nil && ok && st.EphemeralOwner == sid {
			n++
		}
	}
	return n
}

// registrations registers instances; returns them for the checks.
func (su *suite) registrations(n int) []*registry.Registration {
	var regs []*registry.Registration
	for i := 0; i < n; i++ {
		c := su.newClient(fmt.Sprintf("service%d", i), i%3)
		r, err := registry.New(c.s, su.base+"/services")
		if err != nil {
			su.t.Fatal(err)
		}
		su.t.Cleanup(r.Close)
		reg, err := r.Register(su.ctx, registry.Instance{Name: "api", ID: c.name, Address: "10.0.0.1", Port: registry.Int(8000 + i)})
		if err != nil {
			su.t.Fatal(err)
		}
		regs = append(regs, reg)
		su.regs = append(su.regs, owned{reg, c.s})
	}
	return regs
}

// injectFaults runs the seeded schedule until ctx ends. After each fault it
// heals and measures how long until every registration's node is back and
// owned by its client's current session.
func (su *suite) injectFaults(ctx context.Context, obs *resilience.Session, want int) {
	kinds := []string{"drop", "short-blackhole", "long-blackhole", "server-restart", "leader-kill", "quorum-loss", "latency"}
	for ctx.Err() == nil {
		kind := kinds[su.rng.IntN(len(kinds))]
		victim := su.clients[su.rng.IntN(len(su.clients))]
		srv := ens.Server(su.rng.IntN(3))
		su.fault(kind)
		switch kind {
		case "drop":
			victim.proxy.DropConnections()
		case "short-blackhole":
			victim.proxy.Blackhole()
			sleep(ctx, sessionTimeout/3)
			victim.proxy.Heal()
		case "long-blackhole":
			victim.proxy.Blackhole()
			sleep(ctx, 2*sessionTimeout)
			victim.proxy.Heal()
		case "server-restart":
			_ = srv.Kill()
			sleep(ctx, sessionTimeout)
			_ = srv.Start(context.Background())
		case "leader-kill":
			if l, err := ens.Leader(ctx); err == nil {
				_ = l.Kill()
				sleep(ctx, sessionTimeout)
				_ = l.Start(context.Background())
			}
		case "quorum-loss":
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
		case "latency":
			victim.proxy.SetLatency(time.Duration(50+su.rng.IntN(200)) * time.Millisecond)
			sleep(ctx, sessionTimeout)
			victim.proxy.Heal()
		}
		// Recovery: every registration rebuilt on its live session.
		healed := time.Now()
		wctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_ = ens.WaitServing(wctx)
		cancel()
		bound := sessionTimeout + 15*time.Second // one more expiry cycle plus a restart
		for {
			ictx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			n := su.recovered(ictx, obs)
			cancel()
			if n == want {
				break
			}
			if time.Since(healed) > bound {
				su.recoveryViolations = append(su.recoveryViolations, fmt.Sprintf("after %s: %d of %d registrations rebuilt after %v", kind, n, want, bound))
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if d := int64(time.Since(healed)); d > su.maxRecovery.Load() {
			su.maxRecovery.Store(d)
		}
		sleep(ctx, time.Duration(500+su.rng.IntN(1500))*time.Millisecond)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func TestChaos(t *testing.T) {
	testkit.NeedZK(t)
	testkit.Restore(t, ens)
	su := &suite{t: t, rng: rand.New(rand.NewPCG(*seed, 42)), base: testkit.Path("/chaos"), faults: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	su.ctx = ctx
	var wg sync.WaitGroup
	su.lockers(&wg, 4)
	su.semaphores(&wg, 3, 2)
	su.electors(&wg, 3)
	regs := su.registrations(3)
	obsS := testkit.Connect(t, ens.Addrs())
	observer, _ := registry.New(obsS, su.base+"/services")
	defer observer.Close()
	cacheS := su.newClient("cache", 0)
	cr, _ := registry.New(cacheS.s, su.base+"/services")
	defer cr.Close()
	cache, err := cr.NewCache(ctx, "api")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range cache.Events() {
		}
	}()

	fctx, stop := context.WithTimeout(ctx, *duration)
	defer stop()
	su.injectFaults(fctx, obsS, len(regs))
	cancel()
	wg.Wait()

	// The cache converges on the truth, read once the observer's server has
	// applied every registration's latest write.
	if err := obsS.Sync(context.Background(), su.base+"/services"); err != nil {
		t.Fatal(err)
	}
	truth, err := observer.Instances(context.Background(), "api")
	if err != nil {
		t.Fatal(err)
	}
	converged := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if len(cache.Instances()) == len(truth) {
			converged = true
			break
		}
	}
	cache.Close()

	// Close every client, then look for orphans.
	for _, c := range su.clients {
		c.s.Close()
	}
	// (A session presumed lost at the very end may linger on the ensemble
	// until its timeout: allow for that.)
	var orphans []string
	for _, p := range []string{"/lock", "/sem/leases", "/sem/locks", "/election", "/services/api"} {
		var left []string
		for deadline := time.Now().Add(2*sessionTimeout + 5*time.Second); ; time.Sleep(50 * time.Millisecond) {
			if left = testkit.Children(t, obsS, su.base+p); len(left) == 0 || time.Now().After(deadline) {
				break
			}
		}
		for _, n := range left {
			orphans = append(orphans, su.base+p+"/"+n)
		}
	}

	v := map[string][]string{
		"lock holders overlapping":     su.locks.Violations(1),
		"semaphore over its size":      su.sems.Violations(2),
		"leaders overlapping":          su.terms.Violations(1),
		"registrations not recovered":  su.recoveryViolations,
		"orphaned znodes":              orphans,
		"cache not converged on truth": map[bool][]string{false: {fmt.Sprintf("cache %d, truth %d", len(cache.Instances()), len(truth))}}[converged],
	}
	su.report(v)
	for what, list := range v {
		if len(list) > 0 {
			t.Errorf("%s: %d, first: %s", what, len(list), list[0])
		}
	}
	if su.handoffs.Load() == 0 || su.termCount.Load() == 0 || su.semLeases.Load() == 0 {
		t.Errorf("a workload made no progress: handoffs %d, terms %d, semaphore leases %d",
			su.handoffs.Load(), su.termCount.Load(), su.semLeases.Load())
	}
}

func (su *suite) report(v map[string][]string) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "\nchaos run: seed %d, %v of faults, session timeout %v\n", *seed, *duration, sessionTimeout)
	var kinds []string
	total := 0
	for k, n := range su.faults {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
		total += n
	}
	sort.Strings(kinds)
	fmt.Fprintf(w, "faults injected\t%d\t(%s)\n", total, strings.Join(kinds, ", "))
	fmt.Fprintf(w, "lock handoffs\t%d\n", su.handoffs.Load())
	fmt.Fprintf(w, "semaphore leases (N=2)\t%d\n", su.semLeases.Load())
	fmt.Fprintf(w, "leadership terms\t%d\n", su.termCount.Load())
	fmt.Fprintf(w, "max registration recovery\t%v\n", time.Duration(su.maxRecovery.Load()).Round(time.Millisecond))
	var names []string
	for k := range v {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(w, "violations: %s\t%d\n", k, len(v[k]))
	}
	w.Flush()
}

// The checker can fail: lock holders that ignore their lease's loss are
// caught overlapping once a holder is partitioned past its session timeout.
func TestCheckerCatchesBrokenLock(t *testing.T) {
	testkit.NeedZK(t)
	testkit.Restore(t, ens)
	su := &suite{t: t, rng: rand.New(rand.NewPCG(1, 1)), base: testkit.Path("/chaos-selftest"), faults: map[string]int{}, broken: true}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	su.ctx = ctx
	var wg sync.WaitGroup
	su.lockers(&wg, 2)
	// Partition whichever client holds the lock.
	obs := testkit.Connect(t, ens.Addrs())
	var holder *client
	for deadline := time.Now().Add(20 * time.Second); holder == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		names := testkit.Children(t, obs, su.base+"/lock")
		if len(names) == 0 {
			continue
		}
		for _, c := range su.clients {
			if ok, st, err := obs.Exists(ctx, su.base+"/lock/"+firstByName(names)); err == nil && ok && st.EphemeralOwner == c.s.SessionID() {
				holder = c
			}
		}
	}
	if holder == nil {
		t.Fatal("no holder found")
	}
	holder.proxy.Blackhole()
	deadline := time.Now().Add(30 * time.Second)
	for len(su.locks.Violations(1)) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	holder.proxy.Heal()
	cancel()
	wg.Wait()
	if len(su.locks.Violations(1)) == 0 {
		t.Fatal("the checker missed two holders of a lock that ignores its loss policy")
	}
	t.Logf("caught: %s", su.locks.Violations(1)[0])
}

func firstByName(names []string) string {
	sorted := append([]string(nil), names...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i][len(sorted[i])-10:] < sorted[j][len(sorted[j])-10:] })
	return sorted[0]
}
