// Package testkit holds what the recipe packages' tests share: a package
// ensemble started in TestMain, sessions that close at cleanup, waiting on
// znode conditions with deadlines, and a checker of holding intervals.
package testkit

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/goleak"

	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
	"github.com/zkrecipes/zkrecipes/zktest"
)

// Main runs a package's tests against a shared ensemble of n servers
// (stored in *ens), started with opts as well, unless -short, and fails if
// a goroutine is left over.
func Main(m *testing.M, ens **zktest.Ensemble, n int, opts ...zktest.Option) {
	flag.Parse()
	quietForBenchmarks()
	code := func() int {
		if testing.Short() {
			skipExamples()
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			e, err := zktest.Start(ctx, append([]zktest.Option{zktest.WithServers(n)}, opts...)...)
			if err != nil {
				fmt.Fprintln(os.Stderr, "these tests need ZooKeeper:", err)
				return 1
			}
			*ens = e
			defer e.Close()
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

// skipExamples leaves the package's Examples out of a -short run, even
// when -run names them: they run against the package's ensemble, which
// -short does not start, and an Example cannot skip itself. It adds them
// to -test.skip (unless that names subtests, whose levels an added
// alternative would not match).
func skipExamples() {
	f := flag.Lookup("test.skip")
	if f == nil {
		return
	}
	switch v := f.Value.String(); {
	case v == "":
		_ = f.Value.Set("^Example")
	case !strings.Contains(v, "/"):
		_ = f.Value.Set(v + "|^Example")
	default:
		return
	}
	fmt.Fprintln(os.Stderr, "testkit: -short: Examples need ZooKeeper and are left out of this run")
}

// NeedZK skips t under -short.
func NeedZK(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs ZooKeeper; skipped under -short")
	}
}

// Restore puts ens back at cleanup: proxies healed, every server running
// and serving.
func Restore(t testing.TB, ens *zktest.Ensemble) {
	t.Helper()
	ens.LogOnFailure(t)
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

// Ctx returns a context that ends after d or at cleanup.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Connect opens a session that closes at cleanup.
func Connect(t testing.TB, servers []string, opts ...resilience.Option) *resilience.Session {
	t.Helper()
	s, err := resilience.Connect(Ctx(t, 30*time.Second), servers, opts...)
	if err != nil {
		t.Fatalf("connect %v: %v", servers, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var seq atomic.Int64

// Path returns a fresh path under base for one test.
func Path(base string) string {
	return fmt.Sprintf("%s/%d-%d", base, time.Now().UnixNano(), seq.Add(1))
}

// Children lists p's children (nil when p does not exist), after
// znode.Settle:
// reads are served by the session's own server, which may not yet have
// applied another session's write.
func Children(t testing.TB, s *resilience.Session, p string) []string {
	t.Helper()
	ctx := Ctx(t, 10*time.Second)
	if err := znode.Settle(ctx, s); err != nil {
		t.Fatalf("settle before listing %s: %v", p, err)
	}
	names, _, err := s.Children(ctx, p)
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		t.Fatalf("children of %s: %v", p, err)
	}
	return names
}

// WaitChildren waits until p has exactly n children and returns them.
func WaitChildren(t testing.TB, s *resilience.Session, p string, n int, d time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		names := Children(t, s, p)
		if len(names) == n {
			return names
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has children %v, want %d", p, names, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Checker collects holding intervals (lock leases, leadership terms) on
// one clock and finds moments with too many holders.
type Checker struct {
	mu  sync.Mutex
	ivs []interval
}

type interval struct {
	who        string
	start, end time.Time
}

// Add records that who held from start to end.
func (c *Checker) Add(who string, start, end time.Time) {
	c.mu.Lock()
	c.ivs = append(c.ivs, interval{who, start, end})
	c.mu.Unlock()
}

// Len returns how many intervals were recorded.
func (c *Checker) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ivs)
}

// Violations describes every moment at which more than max held at once.
// An interval ending at the instant another starts does not overlap it.
func (c *Checker) Violations(max int) []string {
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

// String lists the recorded intervals in start order, for failure messages.
func (c *Checker) String() string {
	c.mu.Lock()
	ivs := append([]interval(nil), c.ivs...)
	c.mu.Unlock()
	sort.Slice(ivs, func(i, j int) bool { return ivs[i].start.Before(ivs[j].start) })
	var b []byte
	for _, iv := range ivs {
		b = fmt.Appendf(b, "%s [%s, %s]\n", iv.who, iv.start.Format("15:04:05.000000"), iv.end.Format("15:04:05.000000"))
	}
	return string(b)
}

// quietForBenchmarks drops the library's logs when ZKRECIPES_QUIET is set
// (scripts/bench.sh sets it), so benchmark results print on clean lines.
func quietForBenchmarks() {
	if os.Getenv("ZKRECIPES_QUIET") != "" {
		slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
}
