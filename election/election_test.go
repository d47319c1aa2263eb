package election

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
	"github.com/zkrecipes/zkrecipes/zktest"
)

var ens *zktest.Ensemble

func TestMain(m *testing.M) { testkit.Main(m, &ens, 3) }

var (
	needZK       = testkit.NeedZK
	ctxT         = testkit.Ctx
	connect      = testkit.Connect
	children     = testkit.Children
	waitChildren = testkit.WaitChildren
)

func restore(t testing.TB) { testkit.Restore(t, ens) }

func electionPath() string { return testkit.Path("/electiontest") }

func TestCampaignResignAndFailover(t *testing.T) {
	needZK(t)
	p := electionPath()
	ctx := ctxT(t, time.Minute)
	var es []*Election
	var sessions []*resilience.Session
	for i := 0; i < 3; i++ {
		s := connect(t, ens.Addrs())
		e, err := New(s, p, WithID(fmt.Sprintf("node-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		es, sessions = append(es, e), append(sessions, s)
	}
	t0, err := es[0].Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type won struct {
		i    int
		term *Term
	}
	terms := make(chan won, 2)
	for i, e := range es[1:] {
		go func() {
			term, err := e.Campaign(ctx)
			if err != nil {
				t.Error(err)
			}
			terms <- won{i + 1, term}
		}()
	}
	names := waitChildren(t, sessions[0], p, 3, 10*time.Second)
	for _, n := range names {
		if !strings.HasPrefix(n, resilience.ProtectedPrefix) || !strings.Contains(n, "-latch-") {
			t.Errorf("candidate %q is not LeaderLatch's format", n)
		}
	}
	if id, err := es[2].Leader(ctx); err != nil || id != "node-0" {
		t.Fatalf("Leader() = %q, %v", id, err)
	}
	// sessions[1] may not have applied sessions[2]'s create yet.
	if err := znode.Settle(ctx, sessions[1]); err != nil {
		t.Fatal(err)
	}
	ps, err := es[1].Participants(ctx)
	if err != nil || len(ps) != 3 || !ps[0].Leader || ps[0].ID != "node-0" || ps[1].Leader {
		t.Fatalf("Participants() = %+v, %v", ps, err)
	}
	select {
	case <-terms:
		t.Fatal("a second leader while the first leads")
	case <-time.After(200 * time.Millisecond):
	}

	// Resign hands over to the next in line.
	if err := t0.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(t0.Err(), ErrResigned) {
		t.Errorf("resigned term's cause: %v", t0.Err())
	}
	w1 := <-terms
	t1 := w1.term
	if t1 == nil {
		t.FailNow()
	}
	if t1.Token() <= t0.Token() {
		t.Errorf("token did not increase: %d then %d", t0.Token(), t1.Token())
	}
	// Closing the leader's session hands over too, and ends its term as
	// resigned: the close is the holder's own doing.
	sessions[w1.i].Close()
	t2 := (<-terms).term
	if t2 == nil {
		t.FailNow()
	}
	if !errors.Is(t1.Err(), ErrResigned) || errors.Is(t1.Err(), ErrTermLost) {
		t.Errorf("term of a closed session: %v, want ErrResigned", t1.Err())
	}
	if t2.Token() <= t1.Token() {
		t.Errorf("token did not increase: %d then %d", t1.Token(), t2.Token())
	}
	_ = t2.Resign(ctx)
	waitChildren(t, sessions[0], p, 0, 10*time.Second)
	if _, err := es[0].Leader(ctx); !errors.Is(err, ErrNoLeader) {
		t.Errorf("Leader() with no candidates: %v", err)
	}
}

// After the leader's session expires, the next candidate leads; the old
// term has ended (lost) before the new one begins, on one clock, and the
// new one does not begin before the ensemble could have expired the old
// session.
func TestFailoverAfterExpiry(t *testing.T) {
	needZK(t)
	restore(t)
	p := electionPath()
	ctx := ctxT(t, time.Minute)
	timeout := 2 * time.Second
	ls := connect(t, []string{ens.Server(0).Addr()}, resilience.WithSessionTimeout(timeout))
	ws := connect(t, []string{ens.Server(1).Addr(), ens.Server(2).Addr()})
	le, _ := New(ls, p, WithID("leader"))
	we, _ := New(ws, p, WithID("waiter"))
	lt, err := le.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The moment the old term's context ends, on this process's clock.
	ended := make(chan time.Time, 1)
	go func() {
		<-lt.Done()
		ended <- time.Now()
	}()
	type camp struct {
		term *Term
		at   time.Time // just after Campaign returned
		err  error
	}
	got := make(chan camp, 1)
	go func() {
		term, err := we.Campaign(ctx)
		got <- camp{term, time.Now(), err}
	}()
	waitChildren(t, ws, p, 2, 10*time.Second)
	cut := time.Now()
	ens.Server(0).Proxy().Blackhole()
	// A generous deadline (expiry needs the timeout, plus the ensemble's
	// tick rounding and the waiter's notification): it only stops a hang.
	limit := 10 * timeout
	var c camp
	select {
	case c = <-got:
	case <-time.After(limit):
		t.Fatalf("no new leader %v after the partition (session timeout %v)", limit, timeout)
	}
	if c.err != nil {
		t.Fatalf("waiter's Campaign: %v", c.err)
	}
	defer func() { _ = c.term.Resign(ctx) }()
	var endedAt time.Time
	select {
	case endedAt = <-ended:
	case <-time.After(limit):
		t.Fatalf("the old term has not ended %v after the partition, and a new leader began %v after it", limit, c.at.Sub(cut))
	}
	if !endedAt.Before(c.at) {
		t.Errorf("old term ended at +%v, not before the new term began at +%v (after the partition)", endedAt.Sub(cut), c.at.Sub(cut))
	}
	if !errors.Is(lt.Err(), ErrTermLost) {
		t.Errorf("old term's cause: %v, want ErrTermLost", lt.Err())
	}
	// The ensemble expires a session a timeout after it last heard from
	// it; the client pings every third of the timeout, so no expiry, and
	// no failover, can come sooner than two thirds of it after the cut.
	if d := c.at.Sub(cut); d < timeout*2/3 {
		t.Errorf("new leader %v after the partition, sooner than the old session (timeout %v) could have expired", d, timeout)
	}
	t.Logf("old term ended %v and the new one began %v after the partition (session timeout %v)", endedAt.Sub(cut), c.at.Sub(cut), timeout)
}

// No two leaders: over repeated faults on the leader (a partition past the
// session timeout, its server stopped past the timeout and restarted, quorum
// loss), each term ends before any later one begins, under both policies.
func TestNoTwoLeaders(t *testing.T) {
	for _, pol := range []resilience.LossPolicy{resilience.LoseOnSuspend, resilience.LoseOnSessionLoss} {
		t.Run(pol.String(), func(t *testing.T) {
			needZK(t)
			restore(t)
			noTwoLeaders(t, pol)
		})
	}
}

func noTwoLeaders(t *testing.T, pol resilience.LossPolicy) {
	p := electionPath()
	timeout := 1500 * time.Millisecond
	var chk testkit.Checker
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type participant struct {
		id      string
		proxy   *zktest.Proxy
		server  *zktest.Server
		leading atomic.Bool
	}
	var ps []*participant
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		srv := ens.Server(i)
		px, err := zktest.NewProxy(srv.DirectAddr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { px.Close() })
		part := &participant{id: fmt.Sprintf("p%d", i), proxy: px, server: srv}
		ps = append(ps, part)
		s := connect(t, []string{px.Addr()}, resilience.WithSessionTimeout(timeout))
		e, _ := New(s, p, WithID(part.id), WithLossPolicy(pol))
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = e.Run(ctx, func(lead context.Context, _ *Term) error {
				start := time.Now()
				part.leading.Store(true)
				<-lead.Done()
				part.leading.Store(false)
				end := time.Now()
				chk.Add(part.id, start, end)
				t.Logf("%s led %s..%s (session %#x): %v", part.id, start.Format("05.000"), end.Format("05.000"), s.SessionID(), context.Cause(lead))
				return nil
			})
		}()
	}
	leader := func() *participant {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			for _, part := range ps {
				if part.leading.Load() {
					return part
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatal("no leader within 30s")
		return nil
	}
	terms := func() int { return chk.Len() }
	waitTerms := func(n int) {
		deadline := time.Now().Add(30 * time.Second)
		for terms() < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d terms ended, want %d", terms(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	faults := []struct {
		name string
		do   func(l *participant)
	}{
		{"partition past the timeout", func(l *participant) {
			l.proxy.Blackhole()
			time.Sleep(2 * timeout)
			l.proxy.Heal()
		}},
		{"leader's server stopped past the timeout, then restarted", func(l *participant) {
			_ = l.server.Stop()
			time.Sleep(2 * timeout)
			_ = l.server.Start(ctx)
			_ = l.server.WaitServing(ctx)
		}},
		{"quorum loss", func(l *participant) {
			for _, o := range ens.Servers() {
				if o != l.server {
					_ = o.Stop()
				}
			}
			time.Sleep(2 * timeout)
			for _, o := range ens.Servers() {
				if !o.Running() {
					_ = o.Start(ctx)
				}
			}
			_ = ens.WaitServing(ctx)
		}},
	}
	for _, f := range faults {
		l := leader()
		before := terms()
		t.Logf("%s: leader %s", f.name, l.id)
		f.do(l)
		if pol == resilience.LoseOnSuspend || f.name != "quorum loss" {
			waitTerms(before + 1) // the faulted leader's term ended
		}
		leader() // someone leads again
	}
	cancel()
	wg.Wait()
	if v := chk.Violations(1); len(v) > 0 {
		t.Fatalf("two leaders at once: %v\n%s", v, chk.String())
	}
	t.Logf("%d terms, none overlapping", chk.Len())
	obs := connect(t, ens.Addrs())
	waitChildren(t, obs, p, 0, 20*time.Second)
}

// Subscribe needs no participant id; its first value is the current
// leader (none here), then each change.
func TestSubscribe(t *testing.T) {
	needZK(t)
	p := electionPath()
	ctx, cancel := context.WithCancel(ctxT(t, time.Minute))
	defer cancel()
	obsS := connect(t, ens.Addrs())
	obs, err := New(obsS, p)
	if err != nil {
		t.Fatal(err)
	}
	changes := obs.Subscribe(ctx)
	next := func() LeaderChange {
		t.Helper()
		select {
		case c := <-changes:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("no leader change observed")
		}
		return LeaderChange{}
	}
	if c := next(); c.ID != "" || c.Node != "" || c.At.IsZero() {
		t.Fatalf("first value %+v, want no leader", c)
	}
	a, _ := New(connect(t, ens.Addrs()), p, WithID("a"))
	b, _ := New(connect(t, ens.Addrs()), p, WithID("b"))
	ta, err := a.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := next(); c.ID != "a" || c.Node != path.Base(ta.Path()) {
		t.Fatalf("observed %+v, want a (%s)", c, path.Base(ta.Path()))
	}
	// A second subscriber starts with the current leader.
	late := obs.Subscribe(ctx)
	select {
	case c := <-late:
		if c.ID != "a" {
			t.Fatalf("a late subscriber's first value %+v, want a", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a late subscriber got no first value")
	}
	go func() {
		if tb, err := b.Campaign(ctx); err == nil {
			<-ctx.Done()
			_ = tb.Resign(context.Background())
		}
	}()
	waitChildren(t, obsS, p, 2, 10*time.Second)
	_ = ta.Resign(ctx)
	if c := next(); c.ID != "b" {
		t.Fatalf("observed %+v, want b", c)
	}
	cancel()
	for range changes {
	}
	for range late {
	}
}

// Subscribe on an election that exists but has no candidates starts with
// "nobody leads"; its channel closes when the session closes.
func TestSubscribeClosesWithTheSession(t *testing.T) {
	needZK(t)
	s, err := resilience.Connect(ctxT(t, 30*time.Second), ens.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := electionPath()
	other := connect(t, ens.Addrs())
	// An empty election: a candidate came and went, its parents stay.
	e, _ := New(other, p, WithID("gone"))
	term, err := e.Campaign(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := term.Resign(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := znode.Settle(ctxT(t, 10*time.Second), s); err != nil {
		t.Fatalf("the election %s should exist: %v", p, err)
	}
	obs, _ := New(s, p)
	changes := obs.Subscribe(context.Background())
	select {
	case c := <-changes:
		if c.ID != "" || c.Node != "" {
			t.Fatalf("first value %+v, want nobody leading", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no first value for an election without candidates")
	}
	s.Close()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-changes:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("Subscribe's channel still open 10s after the session closed")
		}
	}
}

func TestBadInput(t *testing.T) {
	if _, err := New(nil, "/e", WithID("id")); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("nil session: %v", err)
	}
	if testing.Short() {
		return
	}
	s := connect(t, ens.Addrs())
	for _, id := range []string{"", "\xff"} {
		if _, err := New(s, "/e", WithID(id)); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("WithID(%q): %v, want ErrInvalidOption", id, err)
		}
	}
	for _, pol := range []resilience.LossPolicy{-1, 2, 99} {
		if _, err := New(s, "/e", WithID("id"), WithLossPolicy(pol)); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("WithLossPolicy(%d): %v, want ErrInvalidOption", pol, err)
		}
	}
	for _, pol := range []resilience.LossPolicy{resilience.LoseOnSuspend, resilience.LoseOnSessionLoss} {
		if _, err := New(s, "/e", WithID("id"), WithLossPolicy(pol)); err != nil {
			t.Errorf("WithLossPolicy(%s): %v", pol, err)
		}
	}
	for _, p := range []string{"", "e", "/", "/e/", "/a//b"} {
		_, err := New(s, p, WithID("id"))
		if !errors.Is(err, resilience.ErrInvalidPath) || !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("New(%q) = %v, want ErrInvalidArgument and resilience.ErrInvalidPath", p, err)
		}
	}

	// An observer cannot campaign.
	obs, err := New(s, electionPath())
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 10*time.Second)
	if _, err := obs.Campaign(ctx); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Campaign without an id: %v, want ErrInvalidArgument", err)
	}
	ran := false
	if err := obs.Run(ctx, func(context.Context, *Term) error { ran = true; return nil }); !errors.Is(err, ErrInvalidArgument) || ran {
		t.Errorf("Run without an id: %v (ran %v), want ErrInvalidArgument", err, ran)
	}
	if _, err := obs.WaitLeading(ctx); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("WaitLeading without an id: %v, want ErrInvalidArgument", err)
	}
	if term, ok := obs.Leading(); ok || term != nil {
		t.Errorf("an observer leads: %v", term)
	}
	if _, err := obs.Leader(ctx); !errors.Is(err, ErrNoLeader) {
		t.Errorf("Leader() of a new election: %v, want ErrNoLeader", err)
	}

	// After the session's close: ErrClosed, naming the election.
	p := electionPath()
	e, _ := New(s, p, WithID("id"))
	s.Close()
	for name, err := range map[string]error{
		"Campaign": func() error { _, err := e.Campaign(ctx); return err }(),
		"Run":      e.Run(ctx, func(context.Context, *Term) error { return nil }),
		"WaitLeading": func() error {
			_, err := e.WaitLeading(ctx)
			return err
		}(),
	} {
		if !errors.Is(err, ErrClosed) || !errors.Is(err, resilience.ErrClosed) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s after Close: %v, want ErrClosed naming %s", name, err, p)
		}
	}
}
