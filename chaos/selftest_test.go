package chaos

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/wirefault"
	"github.com/zkrecipes/zkrecipes/registry"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// The self-tests run the same suite (workloads, checker) with one failing
// input each, a shorter schedule and, where it takes one, a fault aimed at
// the misbehaving actor, and require the checker to report that kind of
// violation and no other.

// selfTest runs cfg and returns what it found after asserting that want,
// and only want, was reported.
func selfTest(t *testing.T, cfg config, want string) *result {
	t.Helper()
	testkit.NeedZK(t)
	testkit.Restore(t, ens)
	cfg.seed = 1
	res := run(t, cfg)
	if len(res.violations[want]) == 0 {
		t.Fatalf("the checker missed it: no %q reported", want)
	}
	for _, k := range violationKinds {
		if k != want && len(res.violations[k]) > 0 {
			t.Errorf("also reported %s: %d, first: %s", k, len(res.violations[k]), res.violations[k][0])
		}
	}
	t.Logf("caught %s: %s", want, res.violations[want][0])
	return res
}

// aimAtLongHolding is a schedule that waits for a holding of res that
// ignores its loss and has at least 2 s still to go (longer than it takes
// the ensemble to expire a partitioned session and hand the resource on),
// partitions its holder for 2T, and waits for the registrations to recover.
func aimAtLongHolding(t *testing.T, res string) func(su *suite, ctx context.Context) {
	return func(su *suite, ctx context.Context) {
		for ctx.Err() == nil {
			for who, a := range su.led.holders() {
				if a.res == res && a.lossIgnored && time.Until(a.plannedEnd) >= 2*time.Second {
					su.inject("long-blackhole", su.byName[who])
					su.awaitRecovery("long-blackhole", su.obs)
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Errorf("no %s holding of 2 s or more to aim at within the schedule", res)
	}
}

func TestCheckerCatchesBrokenLock(t *testing.T) {
	res := selfTest(t, config{
		duration: 30 * time.Second, // the cap of the wait for a long holding
		bugs:     bugs{lockIgnoresLoss: true},
		schedule: aimAtLongHolding(t, resLock),
	}, vLock)
	// The fenced store refused the ignoring holder's writes once its
	// successor had written (selfTest saw no stale write accepted).
	if res.refused == 0 {
		t.Errorf("the fenced store refused no write: the holder ignoring its loss was never fenced off")
	}
	t.Logf("fenced store: %d writes refused as stale, %d stale accepted", res.refused, len(res.violations[vStale]))

	// The run's timeline, written as TestChaos writes it, shows it.
	files, err := writeTimeline(res.tl, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("timeline files %v, want the .html and the .svg", files)
	}
	for _, p := range files {
		name := filepath.Base(p)
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		marks, err := violationElements(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", name, err)
		}
		if marks == 0 {
			t.Errorf("%s has no element of class \"violation\"", name)
		}
		t.Logf("%s: %d violation elements", name, marks)
	}
}

// violationElements parses r as XML and counts the elements whose class
// list holds "violation".
func violationElements(r io.Reader) (int, error) {
	d := xml.NewDecoder(r)
	d.Strict = true
	d.Entity = xml.HTMLEntity
	n := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if se, ok := tok.(xml.StartElement); ok {
			for _, a := range se.Attr {
				if a.Name.Local == "class" && contains(strings.Fields(a.Value), "violation") {
					n++
				}
			}
		}
	}
}

func TestCheckerCatchesBrokenSemaphore(t *testing.T) {
	selfTest(t, config{
		duration: 30 * time.Second,
		bugs:     bugs{semIgnoresLoss: true},
		schedule: aimAtLongHolding(t, resSemaphore),
	}, vSem)
}

func TestCheckerCatchesTwoLeaders(t *testing.T) {
	selfTest(t, config{
		duration: 30 * time.Second,
		bugs:     bugs{leaderIgnoresLoss: true},
		schedule: aimAtLongHolding(t, resTerm),
	}, vLeaders)
}

// One short-lane client locks a path of its own, so nothing excludes it:
// its 1–20 ms holdings overlap the others' in the lane's busy queue, which
// the lane's exclusion check must report (and nothing else: its nodes are
// outside the checked queues).
func TestCheckerCatchesShortLockOverlap(t *testing.T) {
	res := selfTest(t, config{
		duration: 3 * time.Second,
		bugs:     bugs{shortAstray: true},
		schedule: func(su *suite, ctx context.Context) { sleep(ctx, time.Hour) },
	}, vShort)
	t.Logf("%d short-lane holdings, %d overlaps", len(res.su.led.of(resShort)), len(res.violations[vShort]))
}

// The first service's registry is closed behind its registration's back;
// once its session expires nothing brings the node back.
func TestCheckerCatchesLostRegistration(t *testing.T) {
	selfTest(t, config{
		duration: 20 * time.Second,
		bugs:     bugs{registryClosed: true},
		schedule: func(su *suite, ctx context.Context) {
			su.inject("long-blackhole", su.regs[0].c)
			su.awaitRecovery("long-blackhole", su.obs)
		},
	}, vRecovery)
}

// A live session no client records makes a protected node in the lock's
// queue, as a leftover from a crashed acquisition would be; it is closed
// after the live check, so only that check can see it.
func TestCheckerCatchesOrphan(t *testing.T) {
	var intruder *resilience.Session
	selfTest(t, config{
		duration: 2 * time.Second,
		schedule: func(su *suite, ctx context.Context) { sleep(ctx, time.Hour) },
		beforeLiveCheck: func(su *suite) {
			intruder = testkit.Connect(t, ens.Addrs())
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := intruder.CreateProtected(ctx, su.base+"/lock/lock-", nil, zk.FlagEphemeralSequential, nil); err != nil {
				t.Fatal(err)
			}
		},
		afterLiveCheck: func(su *suite) { intruder.Close() },
	}, vOrphans)
}

// frozen is a cache that stopped following: a snapshot.
type frozen []registry.Instance

func (f frozen) Instances() []registry.Instance { return f }

func TestCheckerCatchesStuckCache(t *testing.T) {
	selfTest(t, config{
		duration:  3 * time.Second,
		schedule:  func(su *suite, ctx context.Context) { sleep(ctx, time.Hour) },
		cacheView: func(c *registry.Cache) instanceView { return frozen(c.Instances()) },
	}, vCache)
}

// The adders record an Add whose outcome is unknown as a success. Every
// lost write loses the request, with another adder's Add before the
// reconnect: the victim's Add is unknown and was not applied, so the
// counter ends below the start plus the recorded successes.
func TestCheckerCatchesCountedUnknown(t *testing.T) {
	res := selfTest(t, config{
		duration:      3 * time.Second,
		bugs:          bugs{unknownAsSuccess: true},
		lostWriteMode: wirefault.LoseRequest,
		schedule: func(su *suite, ctx context.Context) {
			for i := 0; i < 3; i++ {
				su.inject("lost-write", su.adders[i%len(su.adders)].c)
				su.awaitRecovery("lost-write", su.obs)
			}
		},
	}, vCounter)
	if ct := res.counter; ct.lostWrites == 0 {
		t.Errorf("no lost write was injected (%d did not fire)", ct.notInjected)
	}
}

// The verdict on hand-made records: within bounds passes; a lost, a
// doubled and a twice-returned increment are each reported.
func TestCounterVerdict(t *testing.T) {
	for _, c := range []struct {
		name         string
		start, final int32
		ok, maybe    int
		values       []int32
		want         string // "" for no violation, else a substring of the first
	}{
		{"exact", 10, 13, 3, 0, []int32{11, 12, 13}, ""},
		{"unknown applied", 10, 14, 3, 2, []int32{11, 13, 14}, ""},
		{"unknown not applied", 10, 13, 3, 2, []int32{11, 12, 13}, ""},
		{"lost", 10, 12, 3, 0, []int32{11, 12}, "an increment lost"},
		{"doubled", 10, 16, 3, 2, []int32{11, 12, 13}, "an increment doubled"},
		{"returned twice", 10, 13, 3, 0, []int32{11, 12, 12}, "two Adds returned 12"},
		{"returned beyond final", 10, 13, 3, 0, []int32{11, 12, 14}, "outside (10, 13]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := counterVerdict(c.start, c.final, c.ok, c.maybe, c.values)
			switch {
			case c.want == "" && len(bad) > 0:
				t.Errorf("reported %q", bad)
			case c.want != "" && len(bad) == 0:
				t.Errorf("nothing reported, want %q", c.want)
			case c.want != "" && !strings.Contains(strings.Join(bad, "; "), c.want):
				t.Errorf("reported %q, want %q", bad, c.want)
			}
		})
	}
}
