package queue

import (
	"context"
	"errors"
	"fmt"
	"path"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// Entry is this client's node in a queue.
type Entry struct {
	Path      string // full path of the node
	Name      string // its name under the queue's parent
	SessionID int64  // the session that owns it
}

// Join adds this client to the queue under parent: it creates the
// protected ephemeral sequential node parent/<_c_uuid->name<seq> holding
// data (creating missing parents as containers) and returns it with the
// parent's children as read after the create.
//
// The children read is issued right behind the create rather than after
// it returns. ZooKeeper executes a session's requests in order, so a list
// that already holds the new node was read after the create; only a list
// without it is read again. An uncontended queue thus costs one write, not
// a write and then a read.
//
// A create whose outcome is unknown after a lost request or reply (see
// resilience.ErrOutcomeUnknown) has left no node under this call's name
// (the Session looked for it), so Join tries again under a new name. The
// entry's SessionID is the session the create succeeded on, which owns the
// node.
func Join(ctx context.Context, s *resilience.Session, parent, name string, data []byte) (Entry, []string, error) {
	if err := resilience.ValidatePath(parent, false); err != nil {
		return Entry{}, nil, err
	}
	for {
		e, names, err := joinOnce(ctx, s, parent, name, data)
		if !errors.Is(err, resilience.ErrOutcomeUnknown) || ctx.Err() != nil {
			return e, names, err
		}
	}
}

func joinOnce(ctx context.Context, s *resilience.Session, parent, name string, data []byte) (Entry, []string, error) {
	id := resilience.NewUUID()
	prefix := resilience.ProtectedPrefix + id + "-"
	type listing struct {
		names []string
		err   error
	}
	listed := make(chan listing, 1)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// Let the create reach the connection's queue first.
		for i := 0; i < 3; i++ {
			runtime.Gosched()
		}
		names, _, err := s.Children(lctx, parent)
		listed <- listing{names, err}
	}()
	full := path.Join(parent, name)
	p, sid, err := s.CreateProtectedSession(ctx, id, full, data, zk.FlagEphemeralSequential, nil)
	if errors.Is(err, zk.ErrNoNode) {
		if err = znode.EnsurePath(ctx, s, parent); err == nil {
			p, sid, err = s.CreateProtectedSession(ctx, id, full, data, zk.FlagEphemeralSequential, nil)
		}
	}
	if err != nil {
		cancel()
		<-listed
		return Entry{}, nil, err
	}
	e := Entry{Path: p, Name: path.Base(p), SessionID: sid}
	l := <-listed
	if l.err == nil && hasPrefix(l.names, prefix) {
		return e, l.names, nil
	}
	names, _, err := s.Children(ctx, parent)
	if err != nil {
		// The caller gets no entry, so it must not be left behind.
		_ = Leave(s, e)
		return Entry{}, nil, err
	}
	return e, names, nil
}

func hasPrefix(names []string, prefix string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}

// Leave deletes a queue entry, with a context of its own so that it runs
// even when the caller's context has ended (a cancelled Lock must not leave
// its node behind). A node already gone counts as removed, and so does a
// delete whose outcome is unknown (for a Delete that means the node is
// gone; nobody else makes a node under this entry's protected name).
//
// It waits up to the session timeout. If the delete has not gone through
// by then (a suspension that outlasts it: a quorum loss, a long election,
// which the session survives), it returns nil and keeps trying in the
// background until the node is deleted or the entry's session is lost or
// closed: a node left behind on a session that lives on would block, or
// count against, every later contender.
func Leave(s *resilience.Session, e Entry) error {
	return Persist(s, e.SessionID, func(ctx context.Context) error { return leaveOnce(ctx, s, e) })
}

// Persist runs once, bounded by the session timeout. If once has not
// succeeded by then while session sid lives, Persist returns nil and keeps
// calling it in the background (pausing 100 ms, growing to 1 s) until it
// succeeds, or sid is lost, or the Session closes. sid being lost counts as
// success: what once removes went with the session. It is how every
// recipe removes a node of its own: a node left behind on a session that
// lives on would block, or count against, everyone after it.
func Persist(s *resilience.Session, sid int64, once func(ctx context.Context) error) error {
	life, end := context.WithCancel(context.Background())
	stop := onLost(s, sid, end)
	ctx, cancel := context.WithTimeout(life, s.Timeout())
	err := once(ctx)
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded) && life.Err() == nil
	cancel()
	if err == nil || !timedOut {
		lost := life.Err() != nil
		stop()
		end()
		if lost {
			return nil
		}
		return err
	}
	go func() {
		defer end()
		defer stop()
		for try := 1; life.Err() == nil; try++ {
			if once(life) == nil {
				return
			}
			t := time.NewTimer(min(time.Duration(try)*100*time.Millisecond, time.Second))
			select {
			case <-life.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}()
	return nil
}

// leaveOnce is one delete of e's node: nil once it is gone.
func leaveOnce(ctx context.Context, s *resilience.Session, e Entry) error {
	err := s.Delete(ctx, e.Path, -1)
	if err == nil || errors.Is(err, zk.ErrNoNode) || errors.Is(err, resilience.ErrOutcomeUnknown) || errors.Is(err, resilience.ErrClosed) {
		return nil
	}
	return err
}

// LostSignal returns a channel that is closed once session sid is lost or
// the Session closes (at once if sid is not the current session), and a
// function to stop watching. It costs no goroutine.
func LostSignal(s *resilience.Session, sid int64) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	return ch, onLost(s, sid, func() { close(ch) })
}

// onLost calls fn once, when session sid is lost or the Session closes (at
// once if sid is not the current session), unless the returned function is
// called first.
func onLost(s *resilience.Session, sid int64, fn func()) func() {
	var once sync.Once
	fire := func() { once.Do(fn) }
	remove := s.AddListener(func(t resilience.Transition) {
		if (t.To == resilience.Lost && t.OldSessionID == sid) || t.To == resilience.Closed ||
			(t.To == resilience.Connected && t.SessionID != sid) {
			fire()
		}
	})
	// The listener sees what happens from now on; the state covers before.
	if st := s.State(); st == resilience.Lost || st == resilience.Closed || s.SessionID() != sid {
		fire()
	}
	return remove
}

// WaitGone blocks until the node at p no longer exists, or session sid is
// lost (an error wrapping resilience.ErrSessionLost), or ctx ends. It sets
// one data watch on p, so each waiter watches only its own predecessor.
// Connection loss is waited out: the watch survives a reconnect.
func WaitGone(ctx context.Context, s *resilience.Session, p string, sid int64) error {
	lost, stop := LostSignal(s, sid)
	defer stop()
	for {
		select {
		case <-lost:
			return fmt.Errorf("%w: while waiting for %s", resilience.ErrSessionLost, p)
		default:
		}
		_, _, ch, err := s.GetW(ctx, p)
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case ev := <-ch:
			if ev.Type == zk.EventNodeDeleted {
				return nil
			}
			// Data changed, or the watch was dropped with a session: look again.
		case <-lost:
			return fmt.Errorf("%w: while waiting for %s", resilience.ErrSessionLost, p)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
