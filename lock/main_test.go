package lock

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zkrecipes/zkrecipes/resilience"
	"github.com/zkrecipes/zkrecipes/zktest"
)

// ens is the package's shared 3-node ensemble; tests isolate themselves by
// path and put back what they disturb.
var ens *zktest.Ensemble

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if !testing.Short() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var err error
			if ens, err = zktest.Start(ctx, zktest.WithServers(3)); err != nil {
				fmt.Fprintln(os.Stderr, "lock tests need ZooKeeper:", err)
				return 1
			}
			defer ens.Close()
		}
		return m.Run()
	}()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func needZK(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs ZooKeeper; skipped under -short")
	}
}

func restore(t testing.TB) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, srv := range ens.Servers() {
			srv.Proxy().Heal()
			if !srv.Running() {
				if err := srv.Start(ctx); err != nil {
					t.Errorf("restarting server %d: %v", srv.ID(), err)
				}
			}
		}
		if err := ens.WaitServing(ctx); err != nil {
			t.Errorf("ensemble not serving after test: %v", err)
		}
	})
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func connect(t testing.TB, servers []string, opts ...resilience.Option) *resilience.Session {
	t.Helper()
	s, err := resilience.Connect(ctxT(t, 30*time.Second), servers, opts...)
	if err != nil {
		t.Fatalf("connect %v: %v", servers, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var pathSeq struct {
	sync.Mutex
	n int
}

// lockPath returns a fresh lock path for t.
func lockPath(t testing.TB) string {
	pathSeq.Lock()
	defer pathSeq.Unlock()
	pathSeq.n++
	return fmt.Sprintf("/locktest/%d-%d", time.Now().UnixNano(), pathSeq.n)
}

// children lists p's children, or nil when p does not exist. It syncs
// first: reads are served by the session's own server, which may not yet
// have applied another session's write.
func children(t testing.TB, s *resilience.Session, p string) []string {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	if err := s.Sync(ctx, p); err != nil && !isNoNode(err) {
		t.Fatalf("sync %s: %v", p, err)
	}
	names, _, err := s.Children(ctx, p)
	if err != nil && !isNoNode(err) {
		t.Fatalf("children of %s: %v", p, err)
	}
	return names
}

// waitChildren waits until p has exactly n children.
func waitChildren(t testing.TB, s *resilience.Session, p string, n int, d time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		names := children(t, s, p)
		if len(names) == n {
			return names
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has children %v, want %d", p, names, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// interval is one holding of a lock, on this process's clock.
type interval struct {
	who        string
	start, end time.Time
}

// checker collects holding intervals and finds overlaps.
type checker struct {
	mu  sync.Mutex
	ivs []interval
}

func (c *checker) add(who string, start, end time.Time) {
	c.mu.Lock()
	c.ivs = append(c.ivs, interval{who, start, end})
	c.mu.Unlock()
}

// overlaps returns every pair of intervals that share an instant, when at
// most max may hold at once.
func (c *checker) violations(max int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	type ev struct {
		at    time.Time
		delta int
		who   string
	}
	var evs []ev
	for _, iv := range c.ivs {
		evs = append(evs, ev{iv.start, +1, iv.who}, ev{iv.end, -1, iv.who})
	}
	// Ends sort before starts at the same instant: touching is fine.
	sort.Slice(evs, func(i, j int) bool {
		if !evs[i].at.Equal(evs[j].at) {
			return evs[i].at.Before(evs[j].at)
		}
		return evs[i].delta < evs[j].delta
	})
	var out []string
	n := 0
	for _, e := range evs {
		n += e.delta
		if n > max {
			out = append(out, fmt.Sprintf("%d holders at %s (%s started)", n, e.at.Format("15:04:05.000000"), e.who))
		}
	}
	return out
}
