// Package chaos runs every recipe together against a 3-node ensemble while
// a seeded fault schedule injects every kind of fault in turn (connection
// drops, partitions shorter and longer than the session timeout, one-way
// partitions of a client's link in either direction, server kills and
// restarts, server pauses (SIGSTOP), a follower partitioned from its
// peers, leader kills, quorum loss, latency, and lost writes
// (one counter client's compare-and-set loses its request or its reply and
// its reconnect is held while another client adds), then checks from
// recorded intervals (one clock) that no two lock holders or leaders ever
// overlapped, that the semaphore never exceeded its size, that every
// registration came back after each fault, that the cache converged on the
// registrations' contents, that no znode was left behind, neither while the
// sessions are alive nor after they closed, and that the shared counter
// holds exactly its start plus every successful Add plus some of the Adds
// whose outcome was reported unknown. The lock lane's holders write to one
// fenced store (fence.Store) with their lease's token as they begin, every
// 75 ms and as they end: no stale write may be accepted (one with a token
// below that of a holder who had already written), and the store's
// refusals are counted. No session may be lost to a fault that left a
// quorum reachable from its client (lossExpected states the rule per
// kind). The summary gives, per fault kind, the overlaps, stale writes
// accepted and refused, sessions lost with a quorum reachable and in all,
// and the smallest step-down margin.
//
// The workloads hold for durations drawn from a mix: short holdings and a
// good share long enough to span a fault, some longer than the session
// timeout, so a holder that does not step down when told is seen
// overlapping its successor. Handoff volume comes from a lane of its own:
// three more clients contend for a second mutex (its own path), holding
// 1–20 ms and never longer, tens of handoffs a second, under the same
// exclusion check and a progress floor of their own; the summary counts
// holdings per lane. Every run writes a timeline (chaos-timeline.html and
// .svg) of holdings, session states, faults and violations.
//
//	go test ./chaos -run 'TestChaos$' -v -args -chaos.duration=10m -chaos.seed=7
//
// -chaos.bug=lock,semaphore,term makes the workloads' long holdings ignore
// their loss signal, to watch the checker catch holders that do not step
// down in a full run (short-lock makes one short-lane client lock a path
// of its own); the TestCheckerCatches tests give the checker one failing
// input of every kind.
package chaos

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/timeline"
	"github.com/zkrecipes/zkrecipes/zktest"
)

var (
	duration = flag.Duration("chaos.duration", 40*time.Second, "how long to inject faults (at least one full cycle of every kind is injected)")
	seed     = flag.Uint64("chaos.seed", 1, "seed of the fault schedule")
	outDir   = flag.String("chaos.out", "", "directory for chaos-timeline.html and chaos-timeline.svg (default: os.TempDir()/zkrecipes-chaos-<seed>)")
	kindFlag = flag.String("chaos.kinds", "", "inject only these fault kinds (comma-separated; default every kind), to chase one kind's failure")
	bugFlag  = flag.String("chaos.bug", "", "make workloads ignore their loss signal on long holdings (lock, semaphore, term) or one short-lane client lock a path of its own (short-lock), to watch the checker catch it: comma-separated")
)

var ens *zktest.Ensemble

// childMain, set on Linux by paused_child_test.go, runs this binary as the
// paused client of TestPausedClientIsFenced when that test started it, and
// returns the exit code; -1 when this is not such a child.
var childMain func() int

func TestMain(m *testing.M) {
	if childMain != nil {
		if code := childMain(); code >= 0 {
			os.Exit(code)
		}
	}
	testkit.Main(m, &ens, 3)
}

// sessionTimeout is T, every client's session timeout.
const sessionTimeout = 1500 * time.Millisecond

func TestChaos(t *testing.T) {
	testkit.NeedZK(t)
	dir := *outDir
	if dir == "" {
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("zkrecipes-chaos-%d", *seed))
	}
	var files []string
	// Registered first, so it runs last of the cleanups: the paths are the
	// last lines the test prints.
	t.Cleanup(func() {
		for _, f := range files {
			fmt.Printf("timeline: %s\n", f)
		}
	})
	testkit.Restore(t, ens)
	cfg := config{
		duration: *duration,
		seed:     *seed,
		coverage: true,
	}
	for _, k := range strings.Split(*kindFlag, ",") {
		if k = strings.TrimSpace(k); k == "" {
			continue
		}
		if !slices.Contains(faultKinds, k) {
			t.Fatalf("-chaos.kinds: unknown %q (want some of %s)", k, strings.Join(faultKinds, ", "))
		}
		cfg.kinds = append(cfg.kinds, k)
	}
	for _, b := range strings.Split(*bugFlag, ",") {
		switch strings.TrimSpace(b) {
		case "":
		case resLock:
			cfg.bugs.lockIgnoresLoss = true
		case resSemaphore:
			cfg.bugs.semIgnoresLoss = true
		case resTerm:
			cfg.bugs.leaderIgnoresLoss = true
		case resShort:
			cfg.bugs.shortAstray = true
		default:
			t.Fatalf("-chaos.bug: unknown %q (want lock, semaphore, term, short-lock)", b)
		}
	}
	res := run(t, cfg)
	var err error
	if files, err = writeTimeline(res.tl, dir); err != nil {
		t.Errorf("writing the timeline: %v", err)
	}
	for _, k := range violationKinds {
		if list := res.violations[k]; len(list) > 0 {
			t.Errorf("%s: %d, first: %s", k, len(list), list[0])
		}
	}
	for _, f := range res.unmet {
		t.Errorf("not exercised: %s", f)
	}
	if t.Failed() {
		keepServerLogs(t, dir)
	}
}

// keepServerLogs copies each server's whole log into dir, where it
// outlives the ensemble's work directory: a failed run's last log lines
// rarely tell a real session expiry from a stale answer.
func keepServerLogs(t *testing.T, dir string) {
	for _, srv := range ens.Servers() {
		data, err := os.ReadFile(srv.LogPath())
		if err != nil {
			t.Logf("server %d log: %v", srv.ID(), err)
			continue
		}
		dst := filepath.Join(dir, fmt.Sprintf("server-%d.log", srv.ID()))
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Logf("server %d log: %v", srv.ID(), err)
			continue
		}
		t.Logf("server %d log: %s", srv.ID(), dst)
	}
}

// writeTimeline writes tl as dir/chaos-timeline.html and .svg and returns
// the paths written.
func writeTimeline(tl *timeline.Timeline, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	for _, name := range []string{"chaos-timeline.html", "chaos-timeline.svg"} {
		p := filepath.Join(dir, name)
		if err := tl.WriteFile(p); err != nil {
			return files, err
		}
		files = append(files, p)
	}
	return files, nil
}
