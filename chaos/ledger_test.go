package chaos

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// A holding is one stretch during which a client believed it held a
// resource (a lock lease, a semaphore lease, a leadership term), on the test
// process's one clock: from acquisition to the moment the holder stopped
// acting as holder (before it released).
type holding struct {
	res     string // "lock", "semaphore", "term"
	who     string
	start   time.Time
	end     time.Time
	planned time.Duration // how long the workload meant to hold
	// lost: the holding's loss signal fired before the planned end (the
	// holding ended, or should have ended, because of a loss); lostAt is
	// when it fired.
	lost   bool
	lostAt time.Time
}

// overlap is a window during which more than the resource's capacity held.
type overlap struct {
	res        string
	start, end time.Time
	who        []string // every holder during the window
	n          int      // the most holders at once
}

func (o overlap) String() string {
	return fmt.Sprintf("%d %s holders from %s to %s (%v) [%s]", o.n, o.res,
		o.start.Format("15:04:05.000"), o.end.Format("15:04:05.000"), o.end.Sub(o.start).Round(time.Millisecond), strings.Join(o.who, ", "))
}

// ledger records holdings of every resource.
type ledger struct {
	mu sync.Mutex
	hs []holding
	// active: holdings begun and not yet ended, by client (for aiming faults
	// at holders and for the orphan check's notion of what a client does).
	active map[string]activeHolding
}

type activeHolding struct {
	res         string
	start       time.Time
	plannedEnd  time.Time
	lossIgnored bool
}

func (l *ledger) begin(who, res string, start time.Time, planned time.Duration, ignoring bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active == nil {
		l.active = map[string]activeHolding{}
	}
	l.active[who] = activeHolding{res, start, start.Add(planned), ignoring}
}

func (l *ledger) add(h holding) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.active, h.who)
	l.hs = append(l.hs, h)
}

// holders returns the clients holding something now with the time left of
// their planned holding.
func (l *ledger) holders() map[string]activeHolding {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]activeHolding, len(l.active))
	for k, v := range l.active {
		out[k] = v
	}
	return out
}

func (l *ledger) of(res string) []holding {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []holding
	for _, h := range l.hs {
		if h.res == res {
			out = append(out, h)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start.Before(out[j].start) })
	return out
}

// overlaps returns every window during which more than capacity holdings of
// res were held at once. A holding ending at the instant another starts does
// not overlap it.
func overlaps(hs []holding, res string, capacity int) []overlap {
	type ev struct {
		at    time.Time
		delta int
		who   string
	}
	var evs []ev
	for _, h := range hs {
		evs = append(evs, ev{h.start, +1, h.who}, ev{h.end, -1, h.who})
	}
	sort.SliceStable(evs, func(i, j int) bool {
		if !evs[i].at.Equal(evs[j].at) {
			return evs[i].at.Before(evs[j].at)
		}
		return evs[i].delta < evs[j].delta
	})
	var out []overlap
	var cur *overlap
	held := map[string]int{}
	for _, e := range evs {
		held[e.who] += e.delta
		if held[e.who] == 0 {
			delete(held, e.who)
		}
		n := 0
		for _, c := range held {
			n += c
		}
		switch {
		case n > capacity && cur == nil:
			cur = &overlap{res: res, start: e.at, n: n}
			for w := range held {
				cur.who = append(cur.who, w)
			}
		case n > capacity:
			cur.n = max(cur.n, n)
			for w := range held {
				if !contains(cur.who, w) {
					cur.who = append(cur.who, w)
				}
			}
		case cur != nil:
			cur.end = e.at
			sort.Strings(cur.who)
			out = append(out, *cur)
			cur = nil
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// margin is the step-down margin of one lost holding: how long after the
// holder stopped another client took its place (negative: before it
// stopped, an overlap).
type margin struct {
	h     holding
	next  holding
	d     time.Duration
	fault string // the fault kind the loss is attributed to
}

// margins computes, for every lost holding of a resource of the given
// capacity, the time from its end to the first start of another holding
// that needed its slot: a start after the lost holding began at which the
// other holders (the new one included) already numbered capacity.
// Holdings whose slot was never taken again have no margin.
func margins(hs []holding, capacity int) []margin {
	var out []margin
	for i, l := range hs {
		if !l.lost {
			continue
		}
		for j := range hs {
			s := hs[j]
			if j == i || s.who == l.who || s.start.Before(l.start) {
				continue
			}
			n := 0
			for k, o := range hs {
				if k != i && !o.start.After(s.start) && o.end.After(s.start) {
					n++
				}
			}
			if n >= capacity {
				out = append(out, margin{h: l, next: s, d: s.start.Sub(l.end)})
				break
			}
		}
	}
	return out
}
