package resilience

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/feed"
)

// Subscribe returns a new channel that first receives the current state
// and then every later Transition, in order and without loss: transitions
// queue up for a slow reader (the session never blocks on it).
//
// The first value describes the state now, not a change: From and To are
// both the current state, Cause is CauseCurrent, SessionID (and
// OldSessionID) the current session id (while Suspended, the session that
// may still be alive), Server the current server, and Time when that state
// was entered. Every later value is a real transition, the same one
// listeners see. A subscriber that starts after Connect therefore sees
// Connected first.
//
// The channel is closed after the transition to Closed has been received,
// or when ctx ends. Subscribing to a closed Session yields the current
// state (Closed) and then the closed channel. A subscriber must read until
// the channel closes or cancel ctx, or its goroutine outlives the Session.
func (s *Session) Subscribe(ctx context.Context) <-chan Transition {
	out := make(chan Transition)
	q := feed.New[Transition]()
	s.mu.Lock()
	cur := s.last
	cur.From, cur.Cause, cur.OldSessionID = cur.To, CauseCurrent, cur.SessionID
	q.Push(cur)
	if s.subs == nil { // closed
		s.mu.Unlock()
		q.Close()
		go feed.Pump(ctx, q, out)
		return out
	}
	s.subs[q] = struct{}{}
	s.mu.Unlock()
	go func() {
		feed.Pump(ctx, q, out)
		s.mu.Lock()
		delete(s.subs, q) // no-op after shutdown (nil map)
		s.mu.Unlock()
		q.Close()
	}()
	return out
}

// AddListener registers fn to be called with every Transition, in order, on
// the session's own goroutine, before the session moves on to the next
// transition (channel subscribers are served by goroutines of their own and
// may see a transition earlier or later). The order among listeners is
// unspecified. fn must
// return quickly and must not call back into the Session's blocking methods;
// it is meant for cancelling contexts and similar fan-out (a thousand held
// leases need no goroutine each). The returned function removes fn.
func (s *Session) AddListener(fn func(Transition)) (remove func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	id := s.nextID
	s.listeners[id] = fn
	return func() {
		s.mu.Lock()
		delete(s.listeners, id)
		s.mu.Unlock()
	}
}

func sessionHex(id int64) string { return fmt.Sprintf("0x%x", id) }

func slogLevel(to State) slog.Level {
	switch to {
	case Suspended, Lost:
		return slog.LevelWarn
	default:
		return slog.LevelInfo
	}
}

// AddNodeListener registers fn to receive every node event (zk.EventNodeCreated,
// EventNodeDeleted, EventNodeDataChanged, EventNodeChildrenChanged, and
// EventNotWatching when a session's watches are dropped) of the watches
// this Session's operations set, in the order the server sent them. The
// channels the watch operations return still fire too. fn runs on a
// goroutine of the session's and must not block for long; it lets a cache
// of many nodes follow them without a goroutine per watch. The returned
// function removes fn.
func (s *Session) AddNodeListener(fn func(zk.Event)) (remove func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	id := s.nextID
	s.nodeListeners[id] = fn
	s.hasNodeListeners.Store(true)
	return func() {
		s.mu.Lock()
		delete(s.nodeListeners, id)
		s.hasNodeListeners.Store(len(s.nodeListeners) > 0)
		s.mu.Unlock()
	}
}

func (s *Session) dispatchNodeEvents() {
	defer close(s.nodeDone)
	for {
		select {
		case <-s.nodeInbox.Ready():
		case <-s.closing:
			return
		}
		items, _ := s.nodeInbox.Drain()
		for _, it := range items {
			select {
			case <-it.gen.retired:
				continue // an abandoned connection's news
			default:
			}
			s.mu.Lock()
			fns := make([]func(zk.Event), 0, len(s.nodeListeners))
			for _, fn := range s.nodeListeners {
				fns = append(fns, fn)
			}
			s.mu.Unlock()
			for _, fn := range fns {
				fn(it.ev)
			}
		}
	}
}
