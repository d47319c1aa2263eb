package zktest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTB is a testing.TB whose failure, log and cleanups the test controls;
// everything else goes to the real test.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	failed   bool
	logs     []string
	cleanups []func()
	once     sync.Once
}

func newFakeTB(t *testing.T) *fakeTB {
	f := &fakeTB{TB: t}
	t.Cleanup(f.runCleanups)
	return f
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

func (f *fakeTB) fail() {
	f.mu.Lock()
	f.failed = true
	f.mu.Unlock()
}

func (f *fakeTB) Log(args ...any) {
	f.mu.Lock()
	f.logs = append(f.logs, fmt.Sprint(args...))
	f.mu.Unlock()
}

func (f *fakeTB) Logf(format string, args ...any) { f.Log(fmt.Sprintf(format, args...)) }

func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	f.cleanups = append(f.cleanups, fn)
	f.mu.Unlock()
}

// runCleanups runs the cleanups registered so far, last first, once.
func (f *fakeTB) runCleanups() {
	f.once.Do(func() {
		f.mu.Lock()
		fns := f.cleanups
		f.mu.Unlock()
		for i := len(fns) - 1; i >= 0; i-- {
			fns[i]()
		}
	})
}

func (f *fakeTB) logged() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.logs...)
}

// tw writes to a tailBuffer as an io.Writer.
type tw struct{ b *tailBuffer }

func (w tw) Write(p []byte) (int, error) { w.b.Write(p); return len(p), nil }

// fakeEnsemble is an Ensemble of n servers that were never started, whose
// logs the test writes itself.
func fakeEnsemble(t *testing.T, n int, opts ...Option) *Ensemble {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	e := &Ensemble{cfg: cfg, ownsDir: true, closing: make(chan struct{})}
	for id := 1; id <= n; id++ {
		e.servers = append(e.servers, &Server{ens: e, id: id, proxy: newTestProxy(t, "127.0.0.1:1"), tail: newTailBuffer(64 << 10)})
	}
	return e
}

// serverBlock returns the lines fl shows for server id (between its header
// and the next one).
func serverBlock(t *testing.T, fl string, id int) (header string, lines []string) {
	t.Helper()
	start := strings.Index(fl, fmt.Sprintf("--- server %d ", id))
	if start < 0 {
		t.Fatalf("no block for server %d in:\n%s", id, fl)
	}
	rest := fl[start:]
	header, rest, _ = strings.Cut(rest, "\n")
	if end := strings.Index(rest, "--- "); end >= 0 {
		rest = rest[:end]
	}
	for l := range strings.Lines(rest) {
		lines = append(lines, strings.TrimSuffix(l, "\n"))
	}
	return header, lines
}

// A failed test is shown the last n lines each server wrote after
// LogOnFailure, each cut to maxLogLine bytes; a passing test nothing.
func TestLogOnFailureShowsTheTestsLastLines(t *testing.T) {
	e := fakeEnsemble(t, 2, WithFailureLogLines(5))
	for i := range 40 {
		fmt.Fprintf(tw{e.servers[0].tail}, "before %d\n", i)
		fmt.Fprintf(tw{e.servers[1].tail}, "before %d\n", i)
	}
	passing, failing := newFakeTB(t), newFakeTB(t)
	e.LogOnFailure(passing)
	e.LogOnFailure(failing)
	for i := range 30 {
		fmt.Fprintf(tw{e.servers[0].tail}, "during %d\n", i)
	}
	long := strings.Repeat("x", 1000)
	fmt.Fprintf(tw{e.servers[0].tail}, "long %s\n", long)

	passing.runCleanups()
	if got := passing.logged(); len(got) != 0 {
		t.Fatalf("a passing test was shown %d logs: %q", len(got), got)
	}
	failing.fail()
	failing.runCleanups()
	got := failing.logged()
	if len(got) != 1 {
		t.Fatalf("a failed test was shown %d logs, want 1: %q", len(got), got)
	}
	header, lines := serverBlock(t, got[0], 1)
	want := []string{"during 26", "during 27", "during 28", "during 29", "long " + long[:maxLogLine-len("long ")] + "... (705 bytes cut)"}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") || !strings.Contains(header, "last 5 lines") {
		t.Errorf("server 1: header %q, lines\n%s\nwant\n%s", header, strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if header, lines := serverBlock(t, got[0], 2); len(lines) != 0 || !strings.Contains(header, "no output") {
		t.Errorf("server 2, silent during the test: header %q, lines %q", header, lines)
	}
	if strings.Contains(got[0], "before") {
		t.Errorf("lines written before LogOnFailure shown:\n%s", got[0])
	}
	t.Logf("what a failed test is shown:\n%s", got[0])

	// WithFailureLogLines(0) shows nothing.
	quiet := fakeEnsemble(t, 1, WithFailureLogLines(0))
	f := newFakeTB(t)
	quiet.LogOnFailure(f)
	fmt.Fprintln(tw{quiet.servers[0].tail}, "during")
	f.fail()
	f.runCleanups()
	if got := f.logged(); len(got) != 0 {
		t.Errorf("WithFailureLogLines(0): shown %q", got)
	}
}

// What was written after a mark survives in the tail buffer as far as it
// holds; a line the buffer cut is dropped whole.
func TestTailBufferSince(t *testing.T) {
	tb := newTailBuffer(16)
	tb.Write([]byte("old\n"))
	m := tb.mark()
	if s, cut := tb.since(m); s != "" || cut {
		t.Errorf("since(mark) at once = %q, %v", s, cut)
	}
	tb.Write([]byte("new\n"))
	if s, cut := tb.since(m); s != "new\n" || cut {
		t.Errorf("since(mark) = %q, %v, want \"new\\n\"", s, cut)
	}
	for i := range 20 {
		fmt.Fprintf(tw{tb}, "line-%02d\n", i)
	}
	s, cut := tb.since(m)
	if !cut || strings.Contains(s, "new") || !strings.HasSuffix(s, "line-19\n") || !strings.HasPrefix(s, "line-") {
		t.Errorf("since(mark) after the buffer dropped the start = %q, %v", s, cut)
	}
	tb.reset() // as a start with fresh ports does
	if s, _ := tb.since(m); s != "" {
		t.Errorf("since(mark) after reset = %q", s)
	}
}

// ZKTEST_LOGS must say yes or no; any other value is an invalid option.
func TestLogsEnvIsValidated(t *testing.T) {
	for _, v := range []string{"", "0", "1", "true", "false", "ON", "off"} {
		if _, err := parseLogsEnv(v); err != nil {
			t.Errorf("ZKTEST_LOGS=%q: %v", v, err)
		}
	}
	t.Setenv(logsEnv, "verbose")
	e, err := Start(context.Background())
	if err == nil {
		e.Close()
	}
	if !errors.Is(err, ErrInvalidOption) || !strings.HasPrefix(err.Error(), "zktest: ") || !strings.Contains(err.Error(), "ZKTEST_LOGS") {
		t.Fatalf("Start with ZKTEST_LOGS=verbose: %v, want ErrInvalidOption naming ZKTEST_LOGS", err)
	}
}

// captureStderr points os.Stderr at a pipe while fn runs and returns the
// lines that reached it with the prefix "zk".
func captureStderr(t *testing.T, fn func()) []string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "zk") {
				lines = append(lines, sc.Text())
			}
		}
	}()
	finish := sync.OnceFunc(func() {
		w.Close()
		<-done
		r.Close()
	})
	t.Cleanup(finish) // if fn ends the test
	old := os.Stderr
	os.Stderr = w
	func() {
		defer func() { os.Stderr = old }()
		fn()
	}()
	finish()
	return lines
}

// A server's log reaches the test's output only when asked for
// (ZKTEST_LOGS=1) or, trimmed, when the test fails.
func TestServerLogsOnlyOnRequestOrFailure(t *testing.T) {
	if testing.Short() {
		t.Skip("needs ZooKeeper")
	}
	run := func(env string, fail bool) (streamed, shown []string) {
		t.Setenv(logsEnv, env)
		f := newFakeTB(t)
		streamed = captureStderr(t, func() {
			e := StartEnsemble(f, WithFailureLogLines(7))
			c := connect(t, e.Addrs(), 2*time.Second) // the server logs the session
			if _, _, err := c.Exists("/"); err != nil {
				t.Fatal(err)
			}
			c.Close()
			if fail {
				f.fail()
			}
			f.runCleanups() // the log (if failed), then Close
		})
		return streamed, f.logged()
	}

	streamed, shown := run("", false)
	if len(streamed) != 0 || len(shown) != 0 {
		t.Errorf("passing test, ZKTEST_LOGS unset: %d server lines on stderr, %d logs shown: %q %q", len(streamed), len(shown), truncate(strings.Join(streamed, "\n"), 500), shown)
	}

	streamed, shown = run("", true)
	if len(streamed) != 0 || len(shown) != 1 {
		t.Fatalf("failed test: %d server lines on stderr, %d logs shown, want 0 and 1", len(streamed), len(shown))
	}
	_, lines := serverBlock(t, shown[0], 1)
	if len(lines) == 0 || len(lines) > 7 {
		t.Errorf("failed test shown %d server lines, want 1 to 7:\n%s", len(lines), shown[0])
	}
	for _, l := range lines {
		if len(l) > maxLogLine+len("... (100000 bytes cut)") {
			t.Errorf("line of %d bytes shown: %.80q...", len(l), l)
		}
	}

	streamed, shown = run("1", false)
	if len(streamed) == 0 || len(shown) != 0 {
		t.Errorf("ZKTEST_LOGS=1: %d server lines on stderr, %d logs shown, want some and 0", len(streamed), len(shown))
	}
	for _, l := range streamed {
		if !strings.HasPrefix(l, "zk1| ") {
			t.Errorf("streamed line without the server's prefix: %q", l)
			break
		}
	}
	t.Logf("ZKTEST_LOGS=1 streamed %d lines; a failed test is shown %d", len(streamed), len(lines))
}
