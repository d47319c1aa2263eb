package resilience

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
)

type backoff struct {
	next, max time.Duration
}

func (s *Session) newBackoff() *backoff {
	return &backoff{next: s.cfg.backoffMin, max: s.cfg.backoffMax}
}

// wait sleeps for the next jittered interval (between half and all of it),
// or until ctx ends or stop closes.
func (b *backoff) wait(ctx context.Context, stop <-chan struct{}) error {
	d := b.next/2 + rand.N(b.next/2+1)
	if b.next *= 2; b.next > b.max {
		b.next = b.max
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-stop:
		return ErrClosed
	}
}

// await returns a snapshot with a usable session, waiting through
// Suspended, Lost and Connecting. With bound set, only that session will
// do: once it is gone, await fails with ErrSessionLost.
func (s *Session) await(ctx context.Context, bound int64) (*snapshot, error) {
	for {
		sn := s.snap.Load()
		switch {
		case sn.state == Closed:
			return nil, ErrClosed
		case bound != 0 && sn.sid != bound:
			return nil, fmt.Errorf("%w: session %s ended", ErrSessionLost, sessionHex(bound))
		case sn.state.HasSession():
			return sn, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-sn.changed:
		}
	}
}

// ambiguity describes an earlier try whose outcome is unknown: its request
// or its reply was lost with the connection. since is the highest zxid this
// client had seen when that try (the earliest such, if several) was sent.
// Had the request been applied, its transaction's zxid would be larger, so
// a node whose czxid, mzxid or (for a parent) pzxid is at most since cannot
// carry that try's effect. See docs/state-machine.md, "Verifying an unknown
// outcome".
type ambiguity struct {
	since int64
}

// attempt runs one try of an operation. amb is nil on the first try and
// after tries that certainly had no effect; otherwise an earlier try may
// have taken effect and this one must verify before writing.
type attempt func(sn *snapshot, amb *ambiguity) error

// abandonedFunc runs after the caller gave up on an operation whose last
// try may have taken effect (amb says since when), with that try's error,
// so it can undo a late effect.
type abandonedFunc func(sn *snapshot, amb *ambiguity, err error)

// do runs an operation: wait for a session, try, and on connection loss wait
// for the session again and let the next try verify. With bound, the
// operation belongs to the session it first ran on. abandoned, if not nil,
// runs after a try that the caller gave up on (ctx ended) completes, and
// when the operation ends with an earlier try's outcome unknown.
func (s *Session) do(ctx context.Context, bound bool, try attempt, abandoned abandonedFunc) error {
	// A bound operation belongs to the session current when it was called
	// (even if Suspended), or to the next one if there is none.
	var boundSID int64
	if bound {
		boundSID = s.snap.Load().sid
	}
	var b *backoff
	var amb *ambiguity
	var last *snapshot
	var lastErr error
	// giveUp ends the operation. If an earlier try may have taken effect
	// (its reply was lost), abandoned still gets to undo it.
	giveUp := func(err error) error {
		if amb != nil && abandoned != nil && last != nil {
			sn, a, e := last, amb, lastErr
			s.goTracked(func() { abandoned(sn, a, e) })
		}
		return err
	}
	for {
		sn, err := s.await(ctx, boundSID)
		if err != nil {
			return giveUp(err)
		}
		if bound && boundSID == 0 {
			boundSID = sn.sid
		}
		if s.testHookTry != nil {
			s.testHookTry(sn)
		}
		since := sn.gen.info.lastZxid.Load()
		if amb != nil {
			since = amb.since
		}
		err = s.call(ctx, sn, amb, since, try, abandoned)
		if err == nil || !isConnLoss(err) {
			return err
		}
		if s.snap.Load().state == Closed {
			return ErrClosed
		}
		// A request flushed before it was sent (zk.ErrNoServer) had no
		// effect; anything else may have.
		if !errors.Is(err, zk.ErrNoServer) && amb == nil {
			amb = &ambiguity{since: since}
		}
		if amb != nil {
			last, lastErr = sn, err
		}
		if b == nil {
			b = s.newBackoff()
		}
		if err := b.wait(ctx, s.closing); err != nil {
			return giveUp(err)
		}
	}
}

// call runs one try, returning when it completes or ctx ends, whichever is
// first. go-zookeeper/zk's calls cannot be cancelled, so a try outlives a
// cancelled caller on a goroutine that Close waits for; abandoned then gets
// its result, with the try counted as ambiguous from since.
func (s *Session) call(ctx context.Context, sn *snapshot, amb *ambiguity, since int64, try attempt, abandoned abandonedFunc) error {
	if ctx.Done() == nil {
		return try(sn, amb)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	const (
		running = iota
		finished
		gaveUp
	)
	var st atomic.Int32
	var result error
	done := make(chan struct{})
	ok := s.goTracked(func() {
		err := try(sn, amb)
		result = err
		if !st.CompareAndSwap(running, finished) && abandoned != nil {
			abandoned(sn, &ambiguity{since: since}, err)
		}
		close(done)
	})
	if !ok {
		return ErrClosed
	}
	select {
	case <-done:
		return result
	case <-ctx.Done():
		if st.CompareAndSwap(running, gaveUp) {
			return ctx.Err()
		}
		<-done
		return result
	}
}
