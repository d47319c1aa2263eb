package chaos

import (
	"time"

	"github.com/zkrecipes/zkrecipes/resilience"
)

// catchable counts the lost holdings in hs whose successor started before
// their planned end. Had such a holder ignored its loss and held on as
// planned, it would have overlapped its successor: the chances a run gave
// the checker to see a holder not stepping down.
func catchable(hs []holding, capacity int) int {
	n := 0
	for _, m := range margins(hs, capacity) {
		if m.next.start.Before(m.h.start.Add(m.h.planned)) {
			n++
		}
	}
	return n
}

// topUp gives the checker its chance at every resource the schedule left
// untested: while a resource has no lost holding taken over before its
// planned end, it drops the connections of that resource's longest holder
// (a drop ends a holding at once; the next holder starts as soon as the
// reconnect has removed its node), a few times at most. Seeded schedules
// of a short run do not always aim a fault at a holding with time to go.
func (su *suite) topUp(obs *resilience.Session) {
	for i, r := range []struct {
		res      string
		capacity int
	}{{resLock, 1}, {resSemaphore, semSize}, {resTerm, 1}} {
		for try := 0; try < 6 && su.ctx.Err() == nil && catchable(su.led.of(r.res), r.capacity) == 0; try++ {
			su.aimed = i // victim aims at lock, semaphore, term in this order
			su.inject("drop", su.victim("drop"))
			su.awaitRecovery("drop", obs)
			// Let the successor's holding end, so the ledger has it.
			sleep(su.ctx, time.Duration(1500+su.rng.IntN(1000))*time.Millisecond)
		}
	}
}
