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
