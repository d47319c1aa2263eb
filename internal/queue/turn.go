package queue

import (
	"context"
	"errors"
	"path"

	"github.com/zkrecipes/zkrecipes/resilience"
)

// ErrNotFirst is returned by Queue.Take without waiting when the entry's
// turn has not come.
var ErrNotFirst = errors.New("queue: not this entry's turn")

var errEntryGone = errors.New("queue: queue entry deleted by someone else")

// Queue describes one kind of entry in a sequential queue: a lock's
// contenders, an election's candidates.
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
	// for, or -1 when idx's turn has come. Nil means Exclusive.
	Blocker func(cs []Contender, idx int) int
	// Data is stored in our entries.
	Data []byte
}

// Exclusive is the Blocker of a mutex or an election: the first entry's
// turn has come; every other waits for the one just before it.
func Exclusive(_ []Contender, idx int) int { return idx - 1 }

// Take joins the queue and, with wait, blocks until the entry's turn has
// come, returning the entry; without wait it returns ErrNotFirst at once if
// it has not. It re-enters the queue on a new session if the one its entry
// belonged to is lost, and leaves no entry behind when it fails or its
// context ends.
func (q *Queue) Take(ctx context.Context, s *resilience.Session, wait bool) (Entry, error) {
	for {
		if err := ctx.Err(); err != nil {
			return Entry{}, err
		}
		e, names, err := Join(ctx, s, q.Parent, q.Name, q.Data)
		if errors.Is(err, resilience.ErrSessionLost) {
			continue
		}
		if err != nil {
			return Entry{}, err
		}
		err = q.waitTurn(ctx, s, e, names, wait)
		switch {
		case err == nil:
			return e, nil
		case errors.Is(err, resilience.ErrSessionLost), errors.Is(err, errEntryGone):
			continue // our entry went with its session: queue again
		default:
			_ = Leave(s, e)
			return Entry{}, err
		}
	}
}

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
				return resilience.ErrSessionLost
			}
			return errEntryGone
		}
		bi := blocker(cs, idx)
		if bi < 0 {
			return nil
		}
		if !wait {
			return ErrNotFirst
		}
		if err := WaitGone(ctx, s, path.Join(q.Parent, cs[bi].Name), e.SessionID); err != nil {
			return err
		}
		var err error
		if names, _, err = s.Children(ctx, q.Parent); err != nil {
			return err
		}
	}
}
