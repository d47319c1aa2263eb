package chaos

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/fence"
)

// The lock lane's holders and the leaders write to one fenced store
// (fence.Store), each lane to its own resource, with their lease's or
// term's token: once as their holding begins, every fenceEvery while it
// lasts, and once as it ends (at its planned end or at its loss: a write
// in flight as the holding goes). A holder that ignores its loss keeps
// writing; the store must refuse it once the next holder has written.

// fenceResource is a resource of the store used by tests outside the
// run's lanes.
const fenceResource = "guarded"

// fenceEvery is how often a lock holder writes while it holds.
const fenceEvery = 75 * time.Millisecond

// fenceWrite is one write to the fenced store, on the one clock: at is
// when the call was made, done when it returned.
type fenceWrite struct {
	who, res string
	token    int64
	at, done time.Time
	accepted bool
}

// fenceLog records every write to the suite's fenced store.
type fenceLog struct {
	mu sync.Mutex
	ws []fenceWrite
}

func (l *fenceLog) all() []fenceWrite {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]fenceWrite(nil), l.ws...)
}

// fencedWrite makes one write of who's with token to the suite's store and
// records it. A refusal must be for a stale token.
func (su *suite) fencedWrite(who, res string, token int64) {
	at := time.Now()
	err := su.fstore.Write(res, token, []byte(who))
	done := time.Now()
	if err != nil && !errors.Is(err, fence.ErrStaleToken) {
		su.t.Errorf("fenced write by %s: %v, want nil or fence.ErrStaleToken", who, err)
	}
	su.fences.mu.Lock()
	su.fences.ws = append(su.fences.ws, fenceWrite{who: who, res: res, token: token, at: at, done: done, accepted: err == nil})
	su.fences.mu.Unlock()
}

// staleAccepted returns the accepted writes whose token is lower than the
// token of a holding that had begun writing before them: one whose first
// accepted write had returned before the write was made. Every holder
// writes as its holding begins, so a store that fences never accepts one.
// (A holding that merely began, by the ledger, before a stale write
// landed but had not written yet is not counted: the store cannot know
// of it.) Each resource is fenced on its own.
func staleAccepted(ws []fenceWrite) []fenceWrite {
	byRes := map[string][]fenceWrite{}
	for _, w := range ws {
		byRes[w.res] = append(byRes[w.res], w)
	}
	var out []fenceWrite
	for _, rws := range byRes {
		out = append(out, staleAcceptedOne(rws)...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	return out
}

func staleAcceptedOne(ws []fenceWrite) []fenceWrite {
	first := map[int64]time.Time{} // token: its first accepted write's return
	for _, w := range ws {
		if f, ok := first[w.token]; w.accepted && (!ok || w.done.Before(f)) {
			first[w.token] = w.done
		}
	}
	type begun struct {
		at    time.Time
		token int64
	}
	var bs []begun
	for tok, at := range first {
		bs = append(bs, begun{at, tok})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].at.Before(bs[j].at) })
	acc := make([]fenceWrite, 0, len(ws))
	for _, w := range ws {
		if w.accepted {
			acc = append(acc, w)
		}
	}
	sort.Slice(acc, func(i, j int) bool { return acc[i].at.Before(acc[j].at) })
	var out []fenceWrite
	var highest int64
	i := 0
	for _, w := range acc {
		for ; i < len(bs) && bs[i].at.Before(w.at); i++ {
			highest = max(highest, bs[i].token)
		}
		if w.token < highest {
			out = append(out, w)
		}
	}
	return out
}

func (w fenceWrite) String() string {
	return fmt.Sprintf("%s wrote with token %d at %s", w.who, w.token, w.at.Format("15:04:05.000"))
}

// The fencing check on hand-made records: a write after a later token's
// first write is stale; writes before it, refused writes and equal tokens
// are not.
func TestStaleAccepted(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	w := func(who string, tok int64, ms int, ok bool) fenceWrite {
		return fenceWrite{who: who, token: tok, at: at(ms), done: at(ms + 1), accepted: ok}
	}
	ws := []fenceWrite{
		w("a", 10, 0, true), w("a", 10, 50, true),
		w("b", 20, 100, true),  // b's first write returns at 101
		w("a", 10, 100, true),  // made before b's write returned: not stale
		w("a", 10, 150, false), // refused: fine
		w("b", 20, 160, true),
		w("a", 10, 200, true), // accepted after b wrote: stale
	}
	got := staleAccepted(ws)
	if len(got) != 1 || got[0].who != "a" || !got[0].at.Equal(at(200)) {
		t.Fatalf("stale accepted %v, want only a's write at +200ms", got)
	}
	if got := staleAccepted(ws[:6]); len(got) != 0 {
		t.Fatalf("stale accepted %v in a log without one", got)
	}
}
