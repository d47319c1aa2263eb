package chaos

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/zkrecipes/zkrecipes/internal/timeline"
	"github.com/zkrecipes/zkrecipes/internal/wirefault"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/recipes"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// The counter workload: 3 clients add 1 to one recipes.SharedCount in a
// loop, each recording what its Adds answered. An Add that succeeded is in
// the counter exactly once; one that failed with ErrOutcomeUnknown, or was
// interrupted by its deadline, may be in it or not; one that failed with
// any other error is not in it. So at the end (a synced read)
//
//	start + successes <= final <= start + successes + unknowns
//
// and every success returned a value of its own in (start, final]. The
// lost-write fault (a lost request or reply of one adder's compare-and-set,
// its reconnect held while another adder adds) makes the unknowns.

// counterTimeout is the counter clients' session timeout: longer than T, so
// that holding a lost-write victim's reconnect (at most lostWriteHold)
// never expires its session.
const (
	counterTimeout = 4 * time.Second
	lostWriteHold  = time.Second
	addDeadline    = 20 * time.Second
)

// adder is one counter client and its record.
type adder struct {
	c  *client
	in *wirefault.Injector
	sc *recipes.SharedCount

	mu          sync.Mutex
	ok          int
	okValues    []int32     // what the successful Adds returned
	okStarts    []time.Time // when they began
	unknown     int         // wrapping ErrOutcomeUnknown
	interrupted int         // ended by addDeadline: as unknown
	other       int         // any other error: not applied
	otherErrs   []string
}

// okStartedAfter counts successful Adds that began after t.
func (a *adder) okStartedAfter(t time.Time) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, s := range a.okStarts {
		if s.After(t) {
			n++
		}
	}
	return n
}

// counterTally is the counter's record over all adders and the check's
// verdict.
type counterTally struct {
	start, final              int32
	ok, unknown, interrupted  int
	other                     int
	applied                   int // final - start - ok: unknown Adds that took effect
	bad                       []string
	lostWrites, notInjected   int
	withConcurrentAdd         int
	lostRequests, lostReplies int
}

// counters starts n adders on one counter at su.base/counter.
func (su *suite) counters(wg *sync.WaitGroup, n int) {
	su.counterPath = su.base + "/counter"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < n; i++ {
		in := wirefault.New()
		su.t.Cleanup(in.Release)
		c := su.newClientWith(fmt.Sprintf("counter%d", i), "counter", resilience.WithSessionTimeout(counterTimeout), resilience.WithDialer(in.Dial))
		sc, err := recipes.NewSharedCount(ctx, c.s, su.counterPath, 0)
		if err != nil {
			su.t.Fatal(err)
		}
		a := &adder{c: c, in: in, sc: sc}
		su.adders = append(su.adders, a)
		if i == 0 {
			if err := su.readCounter(c.s, &su.counterStart); err != nil {
				su.t.Fatal(err)
			}
		}
		rng := workerRNG(su.cfg.seed, c.name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for su.ctx.Err() == nil {
				sleep(su.ctx, time.Duration(10+rng.IntN(40))*time.Millisecond)
				if su.ctx.Err() != nil {
					return
				}
				su.add(a)
			}
		}()
	}
}

// add makes one Add and records its answer. Its context is not the
// workloads' (which ends the run): an Add in flight at the end finishes,
// and only one taking longer than addDeadline is cut short, counted as
// unknown (its compare-and-set may be in flight still).
func (su *suite) add(a *adder) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(su.ctx), addDeadline)
	defer cancel()
	start := time.Now()
	v, err := a.sc.Add(ctx, 1)
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case err == nil:
		a.ok++
		a.okValues = append(a.okValues, v)
		a.okStarts = append(a.okStarts, start)
	case errors.Is(err, resilience.ErrOutcomeUnknown) && su.cfg.bugs.unknownAsSuccess:
		// The bug: an unknown outcome recorded as a success, with the
		// value it would have had.
		a.ok++
		a.okStarts = append(a.okStarts, start)
	case errors.Is(err, resilience.ErrOutcomeUnknown):
		a.unknown++
		su.tl.AddSpan(a.c.name, timeline.Span{Kind: "add, outcome unknown", Start: start, End: time.Now(), Label: err.Error()})
	case ctx.Err() != nil:
		a.interrupted++
		su.tl.AddSpan(a.c.name, timeline.Span{Kind: "add, outcome unknown", Start: start, End: time.Now(), Label: "interrupted: " + err.Error()})
	default:
		a.other++
		if len(a.otherErrs) < 5 {
			a.otherErrs = append(a.otherErrs, err.Error())
		}
	}
}

// readCounter reads the counter after a sync, through s.
func (su *suite) readCounter(s *resilience.Session, v *int32) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := znode.Settle(ctx, s); err != nil {
		return err
	}
	data, _, err := s.Get(ctx, su.counterPath)
	if err != nil {
		return err
	}
	switch len(data) { // Curator's SharedCount format: a 4-byte big-endian integer
	case 0:
		*v = 0
	case 4:
		*v = int32(binary.BigEndian.Uint32(data))
	default:
		return fmt.Errorf("counter node holds %d bytes, not 4", len(data))
	}
	return nil
}

// checkCounter reads the final value (the adders have stopped) and checks
// it against the record.
func (su *suite) checkCounter(obs *resilience.Session) *counterTally {
	ct := &counterTally{start: su.counterStart}
	var values []int32
	for _, a := range su.adders {
		a.mu.Lock()
		ct.ok += a.ok
		ct.unknown += a.unknown
		ct.interrupted += a.interrupted
		ct.other += a.other
		values = append(values, a.okValues...)
		for _, e := range a.otherErrs {
			su.t.Logf("%s: Add failed: %s", a.c.name, e)
		}
		a.mu.Unlock()
	}
	su.fmu.Lock()
	ct.lostWrites, ct.notInjected, ct.withConcurrentAdd = su.lw.injected, su.lw.notInjected, su.lw.concurrent
	ct.lostRequests, ct.lostReplies = su.lw.requests, su.lw.replies
	su.fmu.Unlock()
	if err := su.readCounter(obs, &ct.final); err != nil {
		ct.bad = append(ct.bad, "reading the final value: "+err.Error())
		return ct
	}
	ct.bad = append(ct.bad, counterVerdict(ct.start, ct.final, ct.ok, ct.unknown+ct.interrupted, values)...)
	ct.applied = int(ct.final-ct.start) - ct.ok
	return ct
}

// counterVerdict checks a final value against the record: ok successful
// Adds of 1 (which returned values), maybe unknown ones that may have
// taken effect, from start.
func counterVerdict(start, final int32, ok, maybe int, values []int32) []string {
	var bad []string
	lo, hi := int64(start)+int64(ok), int64(start)+int64(ok)+int64(maybe)
	if f := int64(final); f < lo || f > hi {
		what := "lost"
		if f > hi {
			what = "doubled"
		}
		bad = append(bad, fmt.Sprintf("final %d, want %d..%d (start %d + %d successful Adds + up to %d unknown): an increment %s", final, lo, hi, start, ok, maybe, what))
	}
	sorted := append([]int32(nil), values...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	for i, v := range sorted {
		if v <= start || v > final {
			bad = append(bad, fmt.Sprintf("an Add returned %d, outside (%d, %d]", v, start, final))
		}
		if i > 0 && sorted[i-1] == v {
			bad = append(bad, fmt.Sprintf("two Adds returned %d: one increment counted twice", v))
		}
	}
	if len(bad) > 5 {
		bad = append(bad[:5], fmt.Sprintf("and %d more", len(bad)-5))
	}
	return bad
}

// lostWrite loses the next compare-and-set of one adder: its request or its
// reply, alternately from a seeded start unless the config fixes the mode.
// The adder's reconnect is held until another adder has made an Add that
// began after the loss (or lostWriteHold has passed). It returns the
// target's description, or "" if the fault did not fire within the
// deadline (it is then disarmed and not counted).
func (su *suite) lostWrite(vc *client) string {
	var v *adder
	for _, a := range su.adders {
		if a.c == vc {
			v = a
		}
	}
	mode := su.cfg.lostWriteMode
	if mode == 0 {
		if su.lw.injected+su.lw.notInjected == 0 {
			su.lw.first = su.rng.IntN(2)
		}
		mode = []wirefault.Mode{wirefault.LoseRequest, wirefault.LoseReply}[(su.lw.first+su.lw.injected+su.lw.notInjected)%2]
	}
	p := su.counterPath
	fired := v.in.Arm(mode, func(r wirefault.Request) bool { return r.Op == wirefault.OpSetData && r.Path == p })
	select {
	case <-fired:
	case <-time.After(3 * time.Second):
		v.in.Arm(mode, func(wirefault.Request) bool { return false })
		// A reply already marked to lose may still be on its way.
		select {
		case <-fired:
		case <-time.After(time.Second):
			// Should the marked reply still come, nobody waits for it:
			// let the reconnect through at once.
			go func() {
				select {
				case <-fired:
					v.in.Release()
				case <-su.ctx.Done():
				}
			}()
			v.in.Release()
			su.fmu.Lock()
			su.lw.notInjected++
			su.fmu.Unlock()
			su.t.Logf("lost-write: %s's %s did not fire (no write of its own within the deadline)", v.c.name, mode)
			return ""
		}
	}
	firedAt := time.Now()
	concurrent := 0
	for deadline := firedAt.Add(lostWriteHold); concurrent == 0 && time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		for _, o := range su.adders {
			if o != v {
				concurrent += o.okStartedAfter(firedAt)
			}
		}
	}
	v.in.Release()
	su.fmu.Lock()
	su.lw.injected++
	if mode == wirefault.LoseRequest {
		su.lw.requests++
	} else {
		su.lw.replies++
	}
	if concurrent > 0 {
		su.lw.concurrent++
	}
	su.fmu.Unlock()
	return fmt.Sprintf("%s (%s, held %v, another adder's Add meanwhile: %t)", v.c.name, mode, time.Since(firedAt).Round(time.Millisecond), concurrent > 0)
}

// lostWrites counts the lost-write faults.
type lostWrites struct {
	first                             int // the seeded first mode
	injected, notInjected, concurrent int
	requests, replies                 int
}
