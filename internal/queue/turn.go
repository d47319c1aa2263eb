package queue

import (
	"context"
	"errors"
	"fmt"
	"path"

	"github.com/zkrecipes/zkrecipes/resilience"
)

// ErrNotFirst is returned by Queue.Take and Queue.TakeOnce without waiting
// when the entry's turn has not come.
var ErrNotFirst = errors.New("queue: not this entry's turn")

// ErrEntryGone is returned by Queue.TakeOnce when the entry was deleted by
// someone else while it waited, its session living on.
var ErrEntryGone = errors.New("queue: queue entry deleted by someone else")

// Queue describes one kind of entry in a sequential queue: a lock's
// contenders, an election's candidates, a semaphore's leases.
type Queue struct {
	// Parent is the queue's znode; entries are its children.
	Parent string
	// Name is what our entries are called before the sequence number,
	// e.g. "lock-" or "latch-".
	Name string
	// Markers are the names of every kind of entry that counts as a
	// contender, ours included.
	Markers []string
	// Blocker returns the index of the contender that entry idx must wait
	// for, or -1 when idx's turn has come. Nil means Exclusive. A waiter
	// watches only its blocker's node (no herd). Ignored when Limit is set.
	Blocker func(cs []Contender, idx int) int
	// Limit, if positive, makes a counting queue (the leases of Curator's
	// InterProcessSemaphoreV2): an entry's turn comes once at most Limit
	// contenders exist, itself included, whatever their order. A waiter
	// watches the parent's children, so every waiter wakes on every change:
	// use it where the joiners are serialised (the semaphore holds a mutex
	// while it joins and waits), so that one entry waits at a time.
	Limit int
	// Data is stored in our entries.
	Data []byte
}

// Exclusive is the Blocker of a mutex or an election: the first entry's
// turn has come; every other waits for the one just before it.
func Exclusive(_ []Contender, idx int) int { return idx - 1 }

// Take joins the queue and, with wait, blocks until the entry's turn has
// come, returning the entry; without wait it returns ErrNotFirst at once if
// it has not. It re-enters the queue on a new session if the one its entry
// belonged to is lost (or if someone else deleted the entry), and leaves no
// entry behind when it fails or its context ends.
func (q *Queue) Take(ctx context.Context, s *resilience.Session, wait bool) (Entry, error) {
	for {
		if err := ctx.Err(); err != nil {
			return Entry{}, err
		}
		e, err := q.TakeOnce(ctx, s, wait)
		if errors.Is(err, resilience.ErrSessionLost) || errors.Is(err, ErrEntryGone) {
			continue // our entry went with its session: queue again
		}
		return e, err
	}
}

// TakeOnce is one round of Take: it joins the queue once and waits for the
// entry's turn on the session it joined. If that session is lost, or
// someone else deletes the entry, it returns an error wrapping
// resilience.ErrSessionLost or ErrEntryGone and the caller decides whether
// to join again. Like Take it leaves no entry behind when it fails.
func (q *Queue) TakeOnce(ctx context.Context, s *resilience.Session, wait bool) (Entry, error) {
	e, names, err := Join(ctx, s, q.Parent, q.Name, q.Data)
	if err != nil {
		return Entry{}, err
	}
	err = q.waitTurn(ctx, s, e, names, wait)
	switch {
	case err == nil:
		return e, nil
	case errors.Is(err, resilience.ErrSessionLost), errors.Is(err, ErrEntryGone):
		return Entry{}, err // nothing to leave: the entry is gone
	default:
		_ = Leave(s, e)
		return Entry{}, err
	}
}

// waitTurn waits, from the children listing names, until e's turn has come
// (or, without wait, says whether it has).
func (q *Queue) waitTurn(ctx context.Context, s *resilience.Session, e Entry, names []string, wait bool) error {
	blocker := q.Blocker
	if blocker == nil {
		blocker = Exclusive
	}
	for {
		cs := Contenders(names, q.Markers...)
		idx := Index(cs, e.Name)
		if idx < 0 {
			if s.SessionID() != e.SessionID {
				return fmt.Errorf("%w: queue entry %s went with its session", resilience.ErrSessionLost, e.Path)
			}
			return fmt.Errorf("%w: %s", ErrEntryGone, e.Path)
		}
		bi := -1
		if q.Limit > 0 {
			if len(cs) > q.Limit {
				bi = idx // no single blocker: any change may admit us
			}
		} else {
			bi = blocker(cs, idx)
		}
		if bi < 0 {
			return nil
		}
		if !wait {
			return ErrNotFirst
		}
		var err error
		if q.Limit > 0 {
			names, err = WaitChildren(ctx, s, q.Parent, e.SessionID, names)
		} else {
			if err = WaitGone(ctx, s, path.Join(q.Parent, cs[bi].Name), e.SessionID); err == nil {
				names, _, err = s.Children(ctx, q.Parent)
			}
		}
		if err != nil {
			return err
		}
	}
}

// WaitChildren blocks until the children of p differ from last, and
// returns them, or until session sid is lost (an error wrapping
// resilience.ErrSessionLost), or ctx ends. It sets a children watch on p;
// connection loss is waited out.
func WaitChildren(ctx context.Context, s *resilience.Session, p string, sid int64, last []string) ([]string, error) {
	lost, stop := LostSignal(s, sid)
	defer stop()
	for {
		select {
		case <-lost:
			return nil, fmt.Errorf("%w: while watching the children of %s", resilience.ErrSessionLost, p)
		default:
		}
		names, _, ch, err := s.ChildrenW(ctx, p)
		if err != nil {
			return nil, err
		}
		if !sameNames(names, last) {
			return names, nil
		}
		select {
		case <-ch:
			// Changed, or the watch was dropped with a session: look again.
		case <-lost:
			return nil, fmt.Errorf("%w: while watching the children of %s", resilience.ErrSessionLost, p)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// sameNames reports whether a and b hold the same names, in any order.
func sameNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := make(map[string]int, len(a))
	for _, n := range a {
		seen[n]++
	}
	for _, n := range b {
		if seen[n] == 0 {
			return false
		}
		seen[n]--
	}
	return true
}
