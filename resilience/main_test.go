package resilience

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zkrecipes/zkrecipes/zktest"
)

// ens is the package's shared 3-node ensemble; tests isolate themselves by
// path and put back whatever servers and proxies they disturb.
var ens *zktest.Ensemble

// UseExampleServers, set by the examples (package resilience_test), is
// given the ensemble's addresses once it runs: the examples connect to it.
var UseExampleServers func(addrs []string)

// TestMain starts the ensemble, unless -short. The examples need it and,
// unlike tests, cannot skip themselves, so under -short they are left out
// of the run (added to -test.skip): -short runs never start ZooKeeper.
func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv("ZKRECIPES_QUIET") != "" { // scripts/bench.sh: results on clean lines
		slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
	code := func() int {
		if testing.Short() {
			if err := skipExamples(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var err error
			ens, err = zktest.Start(ctx, zktest.WithServers(3))
			if err != nil {
				fmt.Fprintln(os.Stderr, "resilience tests need ZooKeeper:", err)
				return 1
			}
			defer ens.Close()
			if UseExampleServers != nil {
				UseExampleServers(ens.Addrs())
			}
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

// skipExamples adds the examples to -test.skip. A -skip pattern of one's
// own with a '/' (a subtest pattern) cannot be combined and is refused.
func skipExamples() error {
	f := flag.Lookup("test.skip")
	if f == nil {
		return errors.New("resilience tests: no -test.skip flag to keep the examples out of -short")
	}
	pat := "^Example"
	if old := f.Value.String(); old != "" {
		if strings.Contains(old, "/") {
			return fmt.Errorf("resilience tests: -short with -skip %q: the examples cannot be skipped too; drop the '/' or -short", old)
		}
		pat = "(?:" + old + ")|" + pat
	}
	if testing.Verbose() {
		fmt.Fprintln(os.Stderr, "resilience: -short: the examples need ZooKeeper and are not run")
	}
	return f.Value.Set(pat)
}

func needZK(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs ZooKeeper; skipped under -short")
	}
}

// restore puts the ensemble back as it was: all proxies healed, all servers
// running and serving.
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

// testPath returns a fresh persistent parent path for t.
func testPath(t testing.TB, s *Session) string {
	t.Helper()
	p := fmt.Sprintf("/test-%s-%d", sanitize(t.Name()), time.Now().UnixNano())
	if _, err := s.Create(ctxT(t, 10*time.Second), p, nil, 0, nil); err != nil {
		t.Fatalf("create test path: %v", err)
	}
	return p
}

func sanitize(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// connect opens a session for a test and closes it at cleanup.
func connect(t testing.TB, servers []string, opts ...Option) *Session {
	t.Helper()
	s, err := Connect(ctxT(t, 30*time.Second), servers, opts...)
	if err != nil {
		t.Fatalf("connect %v: %v", servers, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// recorder keeps every transition a session makes, via a listener.
type recorder struct {
	mu     sync.Mutex
	trs    []Transition
	signal chan struct{}
}

func record(s *Session) *recorder {
	r := &recorder{signal: make(chan struct{})}
	s.AddListener(func(t Transition) {
		r.mu.Lock()
		r.trs = append(r.trs, t)
		close(r.signal)
		r.signal = make(chan struct{})
		r.mu.Unlock()
	})
	return r
}

func (r *recorder) all() []Transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Transition(nil), r.trs...)
}

// waitFor waits until some recorded transition satisfies pred and returns it.
func (r *recorder) waitFor(t testing.TB, d time.Duration, what string, pred func(Transition) bool) Transition {
	t.Helper()
	deadline := time.After(d)
	for {
		r.mu.Lock()
		trs, sig := append([]Transition(nil), r.trs...), r.signal
		r.mu.Unlock()
		for _, tr := range trs {
			if pred(tr) {
				return tr
			}
		}
		select {
		case <-sig:
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s; transitions so far: %v", d, what, r.all())
		}
	}
}

func to(st State) func(Transition) bool { return func(t Transition) bool { return t.To == st } }

func states(trs []Transition) []State {
	out := make([]State, len(trs))
	for i, t := range trs {
		out[i] = t.To
	}
	return out
}

// serverOf returns the ensemble server a session is connected to.
func serverOf(t testing.TB, s *Session) *zktest.Server {
	t.Helper()
	for _, srv := range ens.Servers() {
		if srv.Addr() == s.Server() {
			return srv
		}
	}
	t.Fatalf("session server %q is none of %v", s.Server(), ens.Addrs())
	return nil
}

// waitGone waits, watching from obs, until p no longer exists.
func waitGone(t testing.TB, obs *Session, p string, d time.Duration) {
	t.Helper()
	ctx := ctxT(t, d)
	for {
		ok, _, ch, err := obs.ExistsW(ctx, p)
		if err != nil {
			t.Fatalf("waiting for %s to go: %v", p, err)
		}
		if !ok {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("%s still exists after %v", p, d)
		}
	}
}
