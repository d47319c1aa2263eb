package losstest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/election"
	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/lock"
	"github.com/zkrecipes/zkrecipes/resilience"
	"github.com/zkrecipes/zkrecipes/zktest"
)

// A contender takes the one exclusive holding of a recipe: a Mutex lease
// or a leadership term.
type contender struct {
	name    string
	acquire func(ctx context.Context, s *resilience.Session, path, id string, p resilience.LossPolicy) (*holding, error)
}

// holding is what a test needs of a lease or a term: when it ended, as
// seen on this process's clock.
type holding struct {
	done    <-chan struct{}
	err     func() error
	release func(context.Context) error
}

var contenders = []contender{
	{"mutex", func(ctx context.Context, s *resilience.Session, path, _ string, p resilience.LossPolicy) (*holding, error) {
		m, err := lock.NewMutex(s, path, lock.WithLossPolicy(p))
		if err != nil {
			return nil, err
		}
		l, err := m.Lock(ctx)
		if err != nil {
			return nil, err
		}
		return &holding{l.Done(), l.Err, l.Release}, nil
	}},
	{"election", func(ctx context.Context, s *resilience.Session, path, id string, p resilience.LossPolicy) (*holding, error) {
		e, err := election.New(s, path, election.WithID(id), election.WithLossPolicy(p))
		if err != nil {
			return nil, err
		}
		t, err := e.Campaign(ctx)
		if err != nil {
			return nil, err
		}
		return &holding{t.Done(), t.Err, t.Resign}, nil
	}},
}

var policies = []resilience.LossPolicy{resilience.LoseOnSuspend, resilience.LoseOnSessionLoss}

// client is a session through its own link, started on server start; with
// only, it can reach no other server afterwards either.
func client(t *testing.T, start int, only bool) (*resilience.Session, *zktest.Link) {
	t.Helper()
	link, err := ens.NewLink()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { link.Close() })
	for i := range ens.Servers() {
		if i != start {
			link.Proxy(i).Reject()
		}
	}
	s := testkit.Connect(t, link.Addrs(), resilience.WithSessionTimeout(timeout))
	if s.Server() != link.Proxy(start).Addr() {
		t.Fatalf("session on %s, want server %d", s.Server(), start)
	}
	if !only {
		link.Heal()
	}
	return s, link
}

// race is one run: h holds, the challenger waits, the fault strikes. It
// returns when the holder's holding ended, when the challenger acquired,
// and when the fault struck (zero times for what did not happen within
// wait).
type outcome struct {
	struck, holderEnded, challengerHeld time.Time
	holderErr                           error
}

func race(t *testing.T, c contender, p resilience.LossPolicy, hs, cs *resilience.Session, strike func(), wait time.Duration) outcome {
	t.Helper()
	path := testkit.Path("/losstest")
	h, err := c.acquire(testkit.Ctx(t, 10*time.Second), hs, path, "holder", p)
	if err != nil {
		t.Fatalf("holder: %v", err)
	}
	var mu sync.Mutex
	var out outcome
	ended := make(chan struct{})
	go func() {
		<-h.done
		mu.Lock()
		out.holderEnded, out.holderErr = time.Now(), h.err()
		mu.Unlock()
		close(ended)
	}()
	cctx, cancel := context.WithCancel(context.Background())
	acquired := make(chan struct{})
	go func() {
		defer close(acquired)
		ch, err := c.acquire(cctx, cs, path, "challenger", resilience.LoseOnSuspend)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				t.Errorf("challenger: %v", err)
			}
			return
		}
		mu.Lock()
		out.challengerHeld = time.Now()
		mu.Unlock()
		_ = ch.release(context.Background())
	}()
	// The challenger is queued behind the holder before the fault.
	testkit.WaitFor(t, 10*time.Second, "the challenger queued", func() bool {
		return len(testkit.Children(t, cs, path)) == 2
	})
	out.struck = time.Now()
	strike()
	select {
	case <-acquired:
	case <-time.After(wait):
	}
	cancel()
	<-acquired
	select {
	case <-ended:
	default:
		_ = h.release(testkit.Ctx(t, 5*time.Second))
		<-ended
		mu.Lock()
		out.holderEnded = time.Time{} // ended by the test, not by the fault
		mu.Unlock()
	}
	mu.Lock()
	defer mu.Unlock()
	return out
}

// check asserts the one property that matters: if the challenger acquired,
// the holder had stepped down first. It reports the margin.
func check(t *testing.T, o outcome) {
	t.Helper()
	ms := func(a time.Time) string {
		if a.IsZero() {
			return "never"
		}
		return a.Sub(o.struck).Round(time.Millisecond).String()
	}
	t.Logf("after the fault: holder ended %s (%v), challenger acquired %s", ms(o.holderEnded), o.holderErr, ms(o.challengerHeld))
	if o.challengerHeld.IsZero() {
		return
	}
	if o.holderEnded.IsZero() || !o.holderEnded.Before(o.challengerHeld) {
		t.Fatalf("two holders: the challenger acquired at +%s while the holder's holding ended at %s",
			ms(o.challengerHeld), ms(o.holderEnded))
	}
	t.Logf("step-down margin %v", o.challengerHeld.Sub(o.holderEnded).Round(time.Millisecond))
}

// A follower cut off from its leader keeps answering its clients' pings
// for syncLimit x tickTime (3 s here), while the leader may expire their
// sessions after the 2 s timeout. The holder on that follower must step
// down before a client on the majority side acquires: under both policies,
// for a lock and an election, whether the holder can reach another server
// (it fails over; the session lives on) or only the cut-off follower (its
// session expires at the leader).
func TestFollowerCutFromLeader(t *testing.T) {
	testkit.NeedZK(t)
	for _, only := range []bool{true, false} {
		for _, c := range contenders {
			for _, p := range policies {
				name := fmt.Sprintf("%s/%s/only-follower=%v", c.name, p, only)
				t.Run(name, func(t *testing.T) {
					testkit.Restore(t, ens)
					if err := ens.WaitServing(testkit.Ctx(t, time.Minute)); err != nil {
						t.Fatal(err)
					}
					leader, err := ens.Leader(testkit.Ctx(t, 10*time.Second))
					if err != nil {
						t.Fatal(err)
					}
					f, other := -1, -1
					for i, srv := range ens.Servers() {
						switch {
						case srv == leader:
						case f < 0:
							f = i
						default:
							other = i
						}
					}
					t.Cleanup(func() {
						if err := ens.Server(f).RejoinPeers(); err != nil {
							t.Error(err)
						}
					})
					hs, _ := client(t, f, only)
					cs, _ := client(t, other, false)
					id := hs.SessionID()
					o := race(t, c, p, hs, cs, func() {
						if err := ens.Server(f).IsolateFromPeers(); err != nil {
							t.Fatal(err)
						}
					}, 3*timeout+syncTicks*tick)
					check(t, o)
					switch {
					case only && o.challengerHeld.IsZero():
						t.Fatal("the challenger never acquired: the holder's session should have expired at the leader")
					case !only && p == resilience.LoseOnSessionLoss:
						// The holder fails over and keeps its session: it
						// rightly keeps holding.
						if !o.challengerHeld.IsZero() {
							t.Fatal("the challenger acquired although the holder's session lived on")
						}
						if hs.SessionID() != id {
							t.Fatalf("holder's session %#x, want %#x kept", hs.SessionID(), id)
						}
					case !only && o.holderEnded.IsZero():
						t.Fatal("under resilience.LoseOnSuspend the holder did not step down")
					}
				})
			}
		}
	}
}

// A holder whose link goes silent while it is writing megabytes: its send
// blocks on a full socket buffer, which held back go-zookeeper/zk's own
// disconnect until the write deadline. It must step down before another
// client acquires, under both policies.
func TestBlockedSendStepsDown(t *testing.T) {
	testkit.NeedZK(t)
	for _, c := range contenders {
		for _, p := range policies {
			t.Run(fmt.Sprintf("%s/%s", c.name, p), func(t *testing.T) {
				testkit.Restore(t, ens)
				hs, hl := client(t, 0, false)
				cs, _ := client(t, 1, false)
				dataPath := fmt.Sprintf("/losstest-data-%d", time.Now().UnixNano())
				if _, err := cs.Create(testkit.Ctx(t, 10*time.Second), dataPath, nil, 0, nil); err != nil {
					t.Fatal(err)
				}
				stop := make(chan struct{})
				var writers sync.WaitGroup
				blob := make([]byte, 900<<10)
				var writes sync.WaitGroup
				o := race(t, c, p, hs, cs, func() {
					// Six writers keep about 5 MB in flight; then the link
					// goes silent.
					for range 6 {
						writers.Add(1)
						writes.Add(1)
						go func() {
							defer writers.Done()
							first := true
							for {
								select {
								case <-stop:
									return
								default:
								}
								ctx, cancel := context.WithTimeout(context.Background(), 2*timeout)
								_, err := hs.Set(ctx, dataPath, blob, -1)
								cancel()
								if first {
									writes.Done()
									first = false
								}
								if err != nil {
									return
								}
							}
						}()
					}
					writes.Wait()
					// One way: nothing the holder sends arrives any more
					// (its writes pile up unread and its send blocks),
					// while the replies to what arrived before the cut
					// keep coming for a while, and with them
					// go-zookeeper/zk's read deadline.
					hl.BlackholeRequests()
				}, 3*timeout)
				close(stop)
				hl.Heal()
				writers.Wait()
				check(t, o)
				if o.challengerHeld.IsZero() {
					t.Fatal("the challenger never acquired: the holder's session should have expired")
				}
			})
		}
	}
}
