package election

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// faultTimeout is the faulted client's session timeout in the fault matrix.
const faultTimeout = 2 * time.Second

// exclusive checks that an election never has two leaders. Every new
// leader is checked, at the moment it starts leading, against every earlier
// one: each earlier term's context must already have ended. The check is on
// one clock without timestamps: a term's context is cancelled before its
// node can be deleted, so it is done by the time a successor's Campaign
// returns.
type exclusive struct {
	mu   sync.Mutex
	live []leader
	bad  []string
}

type leader struct {
	who string
	ctx context.Context
}

// lead records that who leads from now on, for as long as ctx lasts.
func (x *exclusive) lead(who string, ctx context.Context) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, l := range x.live {
		if l.ctx.Err() == nil {
			x.bad = append(x.bad, fmt.Sprintf("%s leads at %s while %s still does", who, time.Now().Format("15:04:05.000000"), l.who))
		}
	}
	x.live = append(x.live, leader{who, ctx})
}

func (x *exclusive) violations() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]string(nil), x.bad...)
}

type won struct {
	term *Term
	err  error
}

// campaign runs e.Campaign in the background, recording the leadership in x
// the moment it is won.
func campaign(ctx context.Context, e *Election, x *exclusive) <-chan won {
	out := make(chan won, 1)
	go func() {
		term, err := e.Campaign(ctx)
		if err == nil {
			x.lead(e.ID()+"@"+term.Path(), term.Context())
		}
		out <- won{term, err}
	}()
	return out
}

// wait returns the campaign's outcome, failing t after d.
func wait(t *testing.T, ch <-chan won, d time.Duration, what string) *Term {
	t.Helper()
	select {
	case w := <-ch:
		if w.err != nil {
			t.Fatalf("%s: campaign failed: %v", what, w.err)
		}
		return w.term
	case <-time.After(d):
		t.Fatalf("%s: no leadership after %v", what, d)
	}
	return nil
}

// notYet fails t if the campaign has already returned.
func notYet(t *testing.T, ch <-chan won, what string) {
	t.Helper()
	select {
	case w := <-ch:
		t.Fatalf("%s: campaign returned (%v) while another participant still leads", what, w.err)
	default:
	}
}

// nodesOf returns the candidates of the election at p that belong to
// session sid, as a synced observer sees them.
func nodesOf(t *testing.T, obs *resilience.Session, p string, sid int64) []string {
	t.Helper()
	var out []string
	for _, n := range children(t, obs, p) {
		if testkit.OwnedBy(t, obs, path.Join(p, n), sid) {
			out = append(out, n)
		}
	}
	return out
}

// TestFaultMatrix runs every election role on one faulted client per fault
// kind, with counterparts on unfaulted clients, and checks each promise:
//
//   - A, a LoseOnSuspend leader: every fault that suspends ends its term
//     before the waiter elsewhere leads; a fault that does not leaves it
//     leading. After heal the waiter leads, the faulted client has no node
//     left, and it can lead again.
//   - B, a LoseOnSessionLoss leader: if the session was kept, the term
//     survives (its node still the session's) and nobody else led; if it
//     was lost, the term ended before the waiter led (except on a forced
//     expiry, which the package documents as a gap: the holder can hear of
//     it after the takeover).
//   - C, a candidate waiting on the faulted client: after heal it has
//     exactly one node, of its current session; Participants and Leader
//     (after a sync) say so; it leads once the leader resigns, and never
//     next to it.
//   - D, Run on the faulted client: it steps down on loss, campaigns again
//     on its own (after its pause) and leads again once the other runner
//     yields; never two leaders; cancelling Run resigns.
//   - E, Subscribe on the faulted client: a leader change made by other
//     clients during the fault is what it reports after heal.
func TestFaultMatrix(t *testing.T) {
	needZK(t)
	testkit.ForEachFault(t, ens, faultTimeout, func(t *testing.T, f testkit.Fault) {
		ctx := ctxT(t, 3*time.Minute)
		base := electionPath()
		pA, pB, pC, pD, pE := base+"/suspend", base+"/sessionloss", base+"/waiter", base+"/run", base+"/observe"
		c := testkit.NewClient(t, ens, resilience.WithSessionTimeout(faultTimeout))
		o1, o2, obs := connect(t, ens.Addrs()), connect(t, ens.Addrs()), connect(t, ens.Addrs())
		robust := WithLossPolicy(resilience.LoseOnSessionLoss) // the unfaulted counterparts'
		mk := func(s *resilience.Session, p, id string, opts ...Option) *Election {
			t.Helper()
			if id != "" { // "": an observer
				opts = append([]Option{WithID(id)}, opts...)
			}
			e, err := New(s, p, opts...)
			if err != nil {
				t.Fatal(err)
			}
			return e
		}
		var suspended, pastSafe atomic.Bool
		var safe atomic.Pointer[time.Time]
		stop := c.S.AddListener(func(tr resilience.Transition) {
			if tr.To == resilience.Suspended || tr.To == resilience.Lost {
				suspended.Store(true)
			}
			switch tr.To {
			case resilience.Suspended:
				at := c.S.SafeUntil()
				safe.Store(&at)
			case resilience.Reconnected:
				// A LoseOnSessionLoss term ends once a suspension
				// outlasts SafeUntil, even if the session survives.
				if at := safe.Load(); at != nil && tr.Time.After(*at) {
					pastSafe.Store(true)
				}
			}
		})
		defer stop()

		// A: c leads under LoseOnSuspend, o1 waits.
		var xA, xB, xC, xD exclusive
		eA := mk(c.S, pA, "c", WithLossPolicy(resilience.LoseOnSuspend))
		tA := wait(t, campaign(ctx, eA, &xA), 20*time.Second, "A: c")
		wA := campaign(ctx, mk(o1, pA, "o1", robust), &xA)
		// B: c leads under LoseOnSessionLoss, o1 waits.
		eB := mk(c.S, pB, "c", WithLossPolicy(resilience.LoseOnSessionLoss))
		tB := wait(t, campaign(ctx, eB, &xB), 20*time.Second, "B: c")
		wB := campaign(ctx, mk(o1, pB, "o1", robust), &xB)
		// C: o2 leads, c waits.
		tC := wait(t, campaign(ctx, mk(o2, pC, "o2", robust), &xC), 20*time.Second, "C: o2")
		eC := mk(c.S, pC, "c")
		wC := campaign(ctx, eC, &xC)
		// D: c and o1 run; c leads first. o1's first term lasts until it
		// is told to yield.
		runCtx, stopRuns := context.WithCancel(ctx)
		defer stopRuns()
		var cTerms, oTerms atomic.Int32
		var cLead atomic.Pointer[context.Context]
		yield := make(chan struct{}, 1)
		runs := make(chan error, 2)
		eD := mk(c.S, pD, "c")
		go func() {
			runs <- eD.Run(runCtx, func(lead context.Context, _ *Term) error {
				xD.lead(fmt.Sprintf("c#%d", cTerms.Load()+1), lead)
				cLead.Store(&lead)
				cTerms.Add(1)
				<-lead.Done()
				return nil
			})
		}()
		testkit.WaitFor(t, 20*time.Second, "D: c leads", func() bool { return cTerms.Load() == 1 })
		oD := mk(o1, pD, "o1", robust)
		go func() {
			runs <- oD.Run(runCtx, func(lead context.Context, _ *Term) error {
				xD.lead(fmt.Sprintf("o1#%d", oTerms.Load()+1), lead)
				oTerms.Add(1)
				select {
				case <-lead.Done():
				case <-yield:
				}
				return nil
			})
		}()
		// E: o1 leads, o2 waits, c observes.
		tE1 := wait(t, campaign(ctx, mk(o1, pE, "o1", robust), &exclusive{}), 20*time.Second, "E: o1")
		wE2 := campaign(ctx, mk(o2, pE, "o2", robust), &exclusive{})
		obsCtx, stopObs := context.WithCancel(ctx)
		defer stopObs()
		var latest atomic.Pointer[LeaderChange]
		changes := mk(c.S, pE, "").Subscribe(obsCtx)
		observed := make(chan struct{})
		go func() {
			defer close(observed)
			for ch := range changes {
				latest.Store(&ch)
			}
		}()
		defer func() { stopObs(); <-observed }()
		for _, p := range []string{pA, pB, pC, pD, pE} {
			waitChildren(t, obs, p, 2, 20*time.Second)
		}
		testkit.WaitFor(t, 20*time.Second, "E: c observes o1", func() bool {
			l := latest.Load()
			return l != nil && l.ID == "o1"
		})

		sid := c.S.SessionID()
		faulted := time.Now()
		heal := f.Inject(t, c)
		// During the fault another client changes E's leader. Under quorum
		// loss nobody can write until the heal.
		during := func() error { return tE1.Resign(ctx) }
		if f.Name == "quorum-loss" {
			done := make(chan error, 1)
			go func() { done <- during() }()
			heal()
			if err := <-done; err != nil {
				t.Fatalf("E: o1 resigning: %v", err)
			}
		} else {
			if err := during(); err != nil {
				t.Fatalf("E: o1 resigning: %v", err)
			}
			heal()
		}
		if err := c.S.WaitState(ctx, resilience.Connected, resilience.Reconnected); err != nil {
			t.Fatal(err)
		}
		now := c.S.SessionID()
		kept, susp := now == sid, suspended.Load()
		t.Logf("%s: session kept %v, suspended %v (past SafeUntil %v), healed %v after the fault began", f.Name, kept, susp, pastSafe.Load(), time.Since(faulted).Round(time.Millisecond))
		if f.Expires && kept {
			t.Fatalf("%s: session 0x%x kept", f.Name, sid)
		}

		// A: LoseOnSuspend.
		if susp {
			testkit.WaitFor(t, 5*time.Second, "A: term ended after a suspension", func() bool { return tA.Err() != nil })
			if !errors.Is(tA.Err(), ErrTermLost) {
				t.Errorf("A: term ended with %v, want ErrTermLost", tA.Err())
			}
		} else {
			if err := tA.Err(); err != nil {
				t.Errorf("A: term ended (%v) with no suspension", err)
			}
			notYet(t, wA, "A: o1")
			if err := tA.Resign(ctx); err != nil {
				t.Fatalf("A: resign: %v", err)
			}
		}
		toA := wait(t, wA, 30*time.Second, "A: o1 after c's term")
		if got := children(t, obs, pA); len(got) != 1 || got[0] != path.Base(toA.Path()) {
			t.Errorf("A: candidates %v, want only o1's %s", got, path.Base(toA.Path()))
		}
		if err := znode.Settle(ctx, c.S); err != nil {
			t.Fatal(err)
		}
		if id, err := eA.Leader(ctx); err != nil || id != "o1" {
			t.Errorf("A: Leader() on c = %q, %v; want o1", id, err)
		}
		// c can lead again.
		again := campaign(ctx, eA, &xA)
		waitChildren(t, obs, pA, 2, 20*time.Second)
		notYet(t, again, "A: c again")
		if err := toA.Resign(ctx); err != nil {
			t.Fatal(err)
		}
		tA2 := wait(t, again, 20*time.Second, "A: c again")
		if !testkit.OwnedBy(t, obs, tA2.Path(), c.S.SessionID()) {
			t.Errorf("A: c's new term's node %s is not of its current session", tA2.Path())
		}
		_ = tA2.Resign(ctx)

		// B: LoseOnSessionLoss.
		if kept && !pastSafe.Load() {
			if err := tB.Err(); err != nil {
				t.Errorf("B: term ended (%v) though the session was kept", err)
			}
			if !testkit.OwnedBy(t, obs, tB.Path(), sid) {
				t.Errorf("B: the surviving term's node %s is not of session 0x%x", tB.Path(), sid)
			}
			notYet(t, wB, "B: o1")
			if err := tB.Resign(ctx); err != nil {
				t.Fatalf("B: resign: %v", err)
			}
		} else {
			testkit.WaitFor(t, 5*time.Second, "B: term ended with the session, or at SafeUntil", func() bool { return tB.Err() != nil })
			if !errors.Is(tB.Err(), ErrTermLost) {
				t.Errorf("B: term ended with %v, want ErrTermLost", tB.Err())
			}
		}
		toB := wait(t, wB, 30*time.Second, "B: o1 after c's term")
		if got := children(t, obs, pB); len(got) != 1 || got[0] != path.Base(toB.Path()) {
			t.Errorf("B: candidates %v, want only o1's %s", got, path.Base(toB.Path()))
		}
		_ = toB.Resign(ctx)

		// C: the waiter keeps exactly one node, of its current session.
		testkit.WaitFor(t, 30*time.Second, "C: c's candidacy on its current session", func() bool {
			return len(nodesOf(t, obs, pC, c.S.SessionID())) == 1 || len(wC) == 1
		})
		if tC.Err() == nil {
			notYet(t, wC, "C: c")
			if err := znode.Settle(ctx, c.S); err != nil {
				t.Fatal(err)
			}
			ps, err := eC.Participants(ctx)
			if err != nil || len(ps) != 2 || ps[0].ID != "o2" || !ps[0].Leader || ps[1].ID != "c" || ps[1].Leader {
				t.Errorf("C: Participants() on c = %+v, %v; want o2 leading, then c", ps, err)
			}
			if id, err := eC.Leader(ctx); err != nil || id != "o2" {
				t.Errorf("C: Leader() on c = %q, %v; want o2", id, err)
			}
			if err := tC.Resign(ctx); err != nil {
				t.Fatal(err)
			}
		}
		tc := wait(t, wC, 30*time.Second, "C: c after o2 resigned")
		if got := children(t, obs, pC); len(got) != 1 || got[0] != path.Base(tc.Path()) ||
			!testkit.OwnedBy(t, obs, tc.Path(), c.S.SessionID()) {
			t.Errorf("C: candidates %v, want only c's term node %s of session 0x%x", got, path.Base(tc.Path()), c.S.SessionID())
		}
		_ = tc.Resign(ctx)

		// D: Run steps down on loss, campaigns again, leads again.
		first := *cLead.Load()
		if susp {
			testkit.WaitFor(t, 5*time.Second, "D: c's first term ended after a suspension", func() bool { return first.Err() != nil })
		}
		if first.Err() != nil {
			testkit.WaitFor(t, 30*time.Second, "D: o1 leads after c's term", func() bool { return oTerms.Load() >= 1 })
			testkit.WaitFor(t, 30*time.Second, "D: c's Run queued again on its current session", func() bool {
				return len(nodesOf(t, obs, pD, c.S.SessionID())) == 1
			})
			yield <- struct{}{}
			testkit.WaitFor(t, 30*time.Second, "D: c leads again", func() bool { return cTerms.Load() >= 2 })
		} else if oTerms.Load() != 0 {
			t.Errorf("D: o1 led while c's first term lasts")
		}
		if got := nodesOf(t, obs, pD, c.S.SessionID()); len(got) != 1 {
			t.Errorf("D: c has candidates %v of its current session, want one", got)
		}
		// o1's Run, its term given up, queues again after its pause.
		testkit.WaitFor(t, 30*time.Second, "D: candidates of c and o1", func() bool { return len(children(t, obs, pD)) == 2 })
		stopRuns()
		for i := 0; i < 2; i++ {
			if err := <-runs; !errors.Is(err, context.Canceled) {
				t.Errorf("D: Run returned %v, want context.Canceled", err)
			}
		}
		waitChildren(t, obs, pD, 0, 20*time.Second)

		// E: the observer reports the leader chosen during the fault.
		tE2 := wait(t, wE2, 30*time.Second, "E: o2 after o1 resigned")
		want := path.Base(tE2.Path())
		testkit.WaitFor(t, 30*time.Second, "E: the observer on c reports o2 ("+want+")", func() bool {
			l := latest.Load()
			return l != nil && l.Node == want && l.ID == "o2"
		})
		_ = tE2.Resign(ctx)

		for name, x := range map[string]*exclusive{"A": &xA, "B": &xB, "C": &xC, "D": &xD} {
			if v := x.violations(); len(v) > 0 {
				if name == "B" && f.Name == "expire" {
					// Documented: under LoseOnSessionLoss a holder hears of
					// a forced expiry only when its client does.
					t.Logf("B: %s: overlap on a forced expiry (documented gap of resilience.LoseOnSessionLoss): %v", f.Name, v)
					continue
				}
				t.Errorf("%s: two leaders: %v", name, v)
			}
		}
		for _, p := range []string{pA, pB, pC, pE} {
			waitChildren(t, obs, p, 0, 20*time.Second)
		}
	})
}

// TestCancellationMatrix: a Campaign whose context is already cancelled,
// cancelled while it waits, or cancelled at any point of its first steps
// fails with context.Canceled and leaves no node; Run whose context is
// cancelled while it leads or while it waits resigns and leaves no node.
func TestCancellationMatrix(t *testing.T) {
	needZK(t)
	ctx := ctxT(t, 2*time.Minute)
	p := electionPath()
	cl := testkit.NewClient(t, ens)
	s, other, obs := cl.S, connect(t, ens.Addrs()), connect(t, ens.Addrs())
	e, _ := New(s, p, WithID("c"))
	rival, _ := New(other, p, WithID("rival"))

	// Already cancelled: nothing is created.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.Campaign(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Campaign with a cancelled context: %v, want context.Canceled", err)
	}
	if got := children(t, obs, p); len(got) != 0 {
		t.Fatalf("cancelled Campaign left %v", got)
	}

	// Cancelled at points through its first steps (join, check, wait),
	// with and without a leader ahead.
	won, cancelled := 0, 0
	for _, contended := range []bool{false, true} {
		var lead *Term
		if contended {
			var err error
			if lead, err = rival.Campaign(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range []time.Duration{0, 50 * time.Microsecond, 200 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond} {
			cctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(d, cancel)
			term, err := e.Campaign(cctx)
			cancel()
			if _, _, err := s.Exists(ctx, p); err != nil { // after any create in flight
				t.Fatal(err)
			}
			switch {
			case err == nil && !contended:
				won++
				_ = term.Resign(ctx) // won before the cancel
			case err == nil:
				t.Fatalf("Campaign won while the rival leads")
			case !errors.Is(err, context.Canceled):
				t.Fatalf("Campaign cancelled after %v: %v, want context.Canceled", d, err)
			default:
				cancelled++
			}
			// A create the cancel overtook completes on the ensemble and is
			// then removed by the session: wait for that, with a deadline.
			testkit.WaitFor(t, 10*time.Second, fmt.Sprintf("Campaign cancelled after %v (contended %v) leaves no node", d, contended), func() bool {
				return len(nodesOf(t, obs, p, s.SessionID())) == 0
			})
		}
		if lead != nil {
			_ = lead.Resign(ctx)
		}
	}
	t.Logf("campaigns cancelled part way: %d failed with context.Canceled, %d won first", cancelled, won)

	// Cancelled while waiting behind a leader.
	lead, err := rival.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Cancelled with its create in flight: the client's link delays every
	// chunk by 200ms, so the create reaches the ensemble after the caller
	// gave up at 100ms. The session removes the node it made.
	setLatency := func(d time.Duration) {
		for i := range cl.Link.Addrs() {
			cl.Link.Proxy(i).SetLatency(d)
		}
	}
	setLatency(200 * time.Millisecond)
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = e.Campaign(cctx)
	cancel()
	setLatency(0)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Campaign cancelled with its create in flight: %v, want context.Canceled", err)
	}
	// A later request of the same session is answered after the create was
	// applied: only then can its node be looked for.
	if _, _, err := s.Exists(ctx, p); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "Campaign cancelled with its create in flight leaves no node", func() bool {
		return len(nodesOf(t, obs, p, s.SessionID())) == 0
	})

	cctx, cancel = context.WithCancel(ctx)
	waiting := make(chan error, 1)
	go func() { _, err := e.Campaign(cctx); waiting <- err }()
	waitChildren(t, obs, p, 2, 10*time.Second)
	cancel()
	if err := <-waiting; !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting Campaign cancelled: %v, want context.Canceled", err)
	}
	if got := nodesOf(t, obs, p, s.SessionID()); len(got) != 0 {
		t.Fatalf("cancelled waiting Campaign left %v", got)
	}

	// Run cancelled while waiting, then while leading: it resigns.
	for _, leading := range []bool{false, true} {
		rctx, cancel := context.WithCancel(ctx)
		var led atomic.Bool
		var term context.Context
		var mu sync.Mutex
		ran := make(chan error, 1)
		go func() {
			ran <- e.Run(rctx, func(l context.Context, _ *Term) error {
				mu.Lock()
				term = l
				mu.Unlock()
				led.Store(true)
				<-l.Done()
				return nil
			})
		}()
		if leading {
			testkit.WaitFor(t, 10*time.Second, "Run leads", led.Load)
		} else {
			waitChildren(t, obs, p, 2, 10*time.Second)
		}
		cancel()
		if err := <-ran; !errors.Is(err, context.Canceled) {
			t.Fatalf("Run cancelled (leading %v): %v, want context.Canceled", leading, err)
		}
		if leading {
			mu.Lock()
			if !errors.Is(context.Cause(term), context.Canceled) {
				t.Errorf("cancelled Run's leader context ended with %v", context.Cause(term))
			}
			mu.Unlock()
		} else if led.Load() {
			t.Fatal("Run led while the rival leads")
		}
		if got := nodesOf(t, obs, p, s.SessionID()); len(got) != 0 {
			t.Fatalf("cancelled Run (leading %v) left %v", leading, got)
		}
		if !leading {
			if err := lead.Resign(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitChildren(t, obs, p, 0, 10*time.Second)
}
