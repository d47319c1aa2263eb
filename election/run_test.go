package election

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// runCalls records when Run called its function, and with which term.
type runCalls struct {
	mu    sync.Mutex
	at    []time.Time
	terms []*Term
	ctxs  []context.Context
}

func (r *runCalls) add(ctx context.Context, t *Term) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at = append(r.at, time.Now())
	r.terms = append(r.terms, t)
	r.ctxs = append(r.ctxs, ctx)
	return len(r.at)
}

func (r *runCalls) n() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.at)
}

func (r *runCalls) get(i int) (time.Time, *Term, context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.at[i], r.terms[i], r.ctxs[i]
}

func waitCalls(t *testing.T, r *runCalls, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for r.n() < n {
		if time.Now().After(deadline) {
			t.Fatalf("Run called its function %d times in %v, want %d", r.n(), d, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A function that returns nil at once is not run in a tight loop: Run
// campaigns again no sooner than a pause after the term began, 100 ms,
// then twice as long after each term shorter than the pause. Each call
// comes at least that pause after the previous term began (a timer never
// fires early), whatever the machine's speed.
func TestRunBacksOffBetweenTerms(t *testing.T) {
	needZK(t)
	p := electionPath()
	s := connect(t, ens.Addrs())
	e, _ := New(s, p, WithID("quick"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls runCalls
	done := make(chan error, 1)
	go func() {
		done <- e.Run(ctx, func(lead context.Context, term *Term) error {
			calls.add(lead, term)
			return nil
		})
	}()
	const n = 6
	waitCalls(t, &calls, n, 30*time.Second)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	pause := runBackoffMin
	var gaps []string
	first, _, _ := calls.get(0)
	for i := 1; i < n; i++ {
		_, pt, _ := calls.get(i - 1)
		at, _, _ := calls.get(i)
		gap := at.Sub(pt.start)
		gaps = append(gaps, gap.Round(time.Millisecond).String())
		if gap < pause {
			t.Errorf("call %d came %v after term %d began, sooner than the pause %v", i+1, gap, i, pause)
		}
		if !errors.Is(pt.Err(), ErrResigned) {
			t.Errorf("term %d ended with %v, want ErrResigned", i, pt.Err())
		}
		pause = min(2*pause, runBackoffMax)
	}
	// The count the spinning Run was caught by: at most 5 calls in 2 s
	// (the 6th comes at least 100+200+400+800+1600 ms after the 1st began).
	last, _, _ := calls.get(n - 1)
	if d := last.Sub(first); d < 2*time.Second {
		t.Errorf("%d calls within %v; want at most %d in 2s", n, d, n-1)
	}
	t.Logf("%d calls in %v, each after the previous term began: %v (a spinning Run made 1,175 in 2s)", n, last.Sub(first).Round(time.Millisecond), gaps)
	waitChildren(t, s, p, 0, 10*time.Second)
}

// A term at least as long as the pause resets it: calls 1-3 return at once
// (the pause grows to 800 ms), call 4 works for 900 ms, so the pause is
// 100 ms again and call 6 comes about 100 ms after call 5 began, not 1.6 s
// as it would without the reset. A function that works longer than the
// pause is called again at once.
func TestRunBackoffResetsAfterALongTerm(t *testing.T) {
	needZK(t)
	s := connect(t, ens.Addrs())
	e, _ := New(s, electionPath(), WithID("reset"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls runCalls
	const work = 900 * time.Millisecond
	done := make(chan error, 1)
	go func() {
		done <- e.Run(ctx, func(lead context.Context, term *Term) error {
			if calls.add(lead, term) == 4 {
				time.Sleep(work)
			}
			return nil
		})
	}()
	waitCalls(t, &calls, 6, 30*time.Second)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
	_, t4, _ := calls.get(3)
	a5, t5, _ := calls.get(4)
	a6, _, _ := calls.get(5)
	noReset := 16 * runBackoffMin
	gap := a6.Sub(t5.start)
	if gap >= noReset || gap < runBackoffMin {
		t.Errorf("call 6 came %v after term 5 began; want the reset pause %v (without the reset: at least %v)", gap, runBackoffMin, noReset)
	}
	t.Logf("after a %v term: call 5 %v after it ended, call 6 %v after term 5 began (pause %v; %v without the reset)",
		work, a5.Sub(t4.start.Add(work)).Round(time.Millisecond), gap.Round(time.Millisecond), runBackoffMin, noReset)
}

// A function that fails while its term lasts ends Run: once, with fn's
// error wrapped in the election's terms, and the term resigned.
func TestRunReturnsTheLeaderFunctionsError(t *testing.T) {
	needZK(t)
	p := electionPath()
	s := connect(t, ens.Addrs())
	e, _ := New(s, p, WithID("failing"))
	errBoom := errors.New("boom")
	var calls runCalls
	err := e.Run(ctxT(t, time.Minute), func(lead context.Context, term *Term) error {
		calls.add(lead, term)
		return fmt.Errorf("writing: %w", errBoom)
	})
	if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), `"failing"`) {
		t.Fatalf("Run returned %v, want boom naming %s and the participant", err, p)
	}
	if n := calls.n(); n != 1 {
		t.Fatalf("Run called a failing function %d times, want 1", n)
	}
	_, term, _ := calls.get(0)
	if !errors.Is(term.Err(), ErrResigned) {
		t.Errorf("the term of a failed function ended with %v, want ErrResigned", term.Err())
	}
	if _, ok := e.Leading(); ok {
		t.Error("Leading() after Run returned")
	}
	waitChildren(t, s, p, 0, 10*time.Second)
}

// A panic in the function is recovered: Run resigns and returns an error
// wrapping ErrLeaderPanicked, once.
func TestRunRecoversAPanic(t *testing.T) {
	needZK(t)
	p := electionPath()
	s := connect(t, ens.Addrs())
	e, _ := New(s, p, WithID("panicky"))
	var calls runCalls
	err := e.Run(ctxT(t, time.Minute), func(lead context.Context, term *Term) error {
		calls.add(lead, term)
		panic("leader function blew up")
	})
	if !errors.Is(err, ErrLeaderPanicked) || !strings.Contains(err.Error(), "leader function blew up") || !strings.Contains(err.Error(), p) {
		t.Fatalf("Run returned %v, want ErrLeaderPanicked with the panic's value", err)
	}
	if n := calls.n(); n != 1 {
		t.Fatalf("Run called a panicking function %d times, want 1", n)
	}
	_, term, _ := calls.get(0)
	if !errors.Is(term.Err(), ErrResigned) {
		t.Errorf("the term of a panicking function ended with %v, want ErrResigned", term.Err())
	}
	waitChildren(t, s, p, 0, 10*time.Second)
}

// A function that returns, even with an error, because its term was lost
// does not end Run: Run campaigns again on the new session and calls it
// again. Cancelling Run's context while it leads resigns and returns
// context.Canceled, and the function's context says so.
func TestRunCampaignsAgainAfterALoss(t *testing.T) {
	needZK(t)
	restore(t)
	p := electionPath()
	s := connect(t, ens.Addrs())
	e, _ := New(s, p, WithID("survivor"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls runCalls
	done := make(chan error, 1)
	go func() {
		done <- e.Run(ctx, func(lead context.Context, term *Term) error {
			calls.add(lead, term)
			<-lead.Done()
			return context.Cause(lead) // an error, but the term's end
		})
	}()
	waitCalls(t, &calls, 1, 20*time.Second)
	_, first, _ := calls.get(0)
	sid := s.SessionID()
	if err := ens.ExpireSession(ctxT(t, 30*time.Second), sid); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, &calls, 2, 60*time.Second)
	if !errors.Is(first.Err(), ErrTermLost) {
		t.Errorf("first term ended with %v, want ErrTermLost", first.Err())
	}
	_, second, lead := calls.get(1)
	if second.Token() <= first.Token() {
		t.Errorf("second term's token %d not above the first's %d", second.Token(), first.Token())
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned %v after a lost term", err)
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	if !errors.Is(context.Cause(lead), context.Canceled) {
		t.Errorf("the function's context ended with %v, want context.Canceled", context.Cause(lead))
	}
	if !errors.Is(second.Err(), ErrResigned) {
		t.Errorf("cancelled Run's term ended with %v, want ErrResigned", second.Err())
	}
	waitChildren(t, s, p, 0, 20*time.Second)
}

// Closing the session under Run ends the term as resigned and Run
// returns ErrClosed, in the election's terms, not the internal node's.
func TestRunSessionClosed(t *testing.T) {
	needZK(t)
	p := electionPath()
	s, err := resilience.Connect(ctxT(t, 30*time.Second), ens.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e, _ := New(s, p, WithID("closer"))
	var calls runCalls
	done := make(chan error, 1)
	go func() {
		done <- e.Run(context.Background(), func(lead context.Context, term *Term) error {
			calls.add(lead, term)
			<-lead.Done()
			return context.Cause(lead)
		})
	}()
	waitCalls(t, &calls, 1, 20*time.Second)
	s.Close()
	var rerr error
	select {
	case rerr = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after the session closed")
	}
	if !errors.Is(rerr, ErrClosed) || errors.Is(rerr, ErrTermLost) {
		t.Errorf("Run returned %v, want ErrClosed", rerr)
	}
	if msg := rerr.Error(); strings.Contains(msg, "latch-") || strings.Contains(msg, resilience.ProtectedPrefix) ||
		!strings.Contains(msg, p) || !strings.Contains(msg, `"closer"`) {
		t.Errorf("Run's error %q should name election %s and participant closer, not the candidate node", msg, p)
	}
	_, term, lead := calls.get(0)
	if !errors.Is(term.Err(), ErrResigned) || errors.Is(term.Err(), ErrTermLost) {
		t.Errorf("term ended with %v, want ErrResigned", term.Err())
	}
	if msg := term.Err().Error(); !strings.Contains(msg, p) || !strings.Contains(msg, `"closer"`) {
		t.Errorf("term's error %q does not name election %s and participant closer", msg, p)
	}
	if !errors.Is(context.Cause(lead), ErrResigned) {
		t.Errorf("the function's context ended with %v, want ErrResigned", context.Cause(lead))
	}
	if n := calls.n(); n != 1 {
		t.Errorf("Run called its function %d times", n)
	}
}

// Run hands its function the term: a fencing token, Guarded writes, and
// the same term Leading and WaitLeading report.
func TestRunGivesTheTerm(t *testing.T) {
	needZK(t)
	p := electionPath()
	s := connect(t, ens.Addrs())
	obs := connect(t, ens.Addrs())
	e, _ := New(s, p, WithID("runner"))
	ctx, cancel := context.WithCancel(ctxT(t, time.Minute))
	defer cancel()
	if term, ok := e.Leading(); ok || term != nil {
		t.Fatalf("Leading() before any campaign: %v, %v", term, ok)
	}
	waited := make(chan *Term, 1)
	go func() {
		term, err := e.WaitLeading(ctx)
		if err != nil {
			t.Error(err)
		}
		waited <- term
	}()
	data := p + "-data"
	type got struct {
		term    *Term
		leading *Term
		err     error
	}
	inside := make(chan got, 1)
	done := make(chan error, 1)
	go func() {
		done <- e.Run(ctx, func(lead context.Context, term *Term) error {
			l, _ := e.Leading()
			_, err := term.Guarded(lead, &zk.CreateRequest{Path: data, Data: []byte("by the leader"), Acl: zk.WorldACL(zk.PermAll)})
			inside <- got{term, l, err}
			<-lead.Done()
			return nil
		})
	}()
	g := <-inside
	if g.err != nil {
		t.Fatalf("Guarded inside Run: %v", g.err)
	}
	t.Cleanup(func() { _ = obs.Delete(context.Background(), data, -1) })
	if g.term == nil || g.term.Token() <= 0 || g.leading != g.term {
		t.Fatalf("Run's term %v, Leading() %v; want a term with a token, the same", g.term, g.leading)
	}
	if w := <-waited; w != g.term {
		t.Errorf("WaitLeading returned %v, Run's term is %v", w, g.term)
	}
	if err := znode.Settle(ctx, obs); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := obs.Exists(ctx, data); err != nil || !ok {
		t.Errorf("the guarded write is not there: %v, %v", ok, err)
	}
	// Once the term is over, Guarded refuses and Leading is false.
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
	if _, err := g.term.Guarded(context.Background(), &zk.SetDataRequest{Path: data, Data: []byte("late"), Version: -1}); !errors.Is(err, ErrTermLost) {
		t.Errorf("Guarded after the term: %v, want ErrTermLost", err)
	}
	if term, ok := e.Leading(); ok || term != nil {
		t.Errorf("Leading() after Run returned: %v, %v", term, ok)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer wcancel()
	if _, err := e.WaitLeading(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitLeading while nobody campaigns: %v, want context.DeadlineExceeded", err)
	}
}

// Leading and WaitLeading follow terms won by Campaign too.
func TestLeadingFollowsCampaign(t *testing.T) {
	needZK(t)
	p := electionPath()
	e, _ := New(connect(t, ens.Addrs()), p, WithID("a"))
	ctx := ctxT(t, time.Minute)
	waited := make(chan *Term, 1)
	go func() {
		term, _ := e.WaitLeading(ctx)
		waited <- term
	}()
	term, err := e.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if w := <-waited; w != term {
		t.Errorf("WaitLeading returned %v, want Campaign's term %v", w, term)
	}
	if l, ok := e.Leading(); !ok || l != term {
		t.Errorf("Leading() = %v, %v; want Campaign's term", l, ok)
	}
	if err := term.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if l, ok := e.Leading(); ok {
		t.Errorf("Leading() after Resign = %v", l)
	}
	if err := term.Resign(ctx); !errors.Is(err, ErrResigned) {
		t.Errorf("second Resign: %v, want ErrResigned", err)
	}
}
