package resilience

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/go-zookeeper/zk"
)

// Subscribe returns a channel that receives every Transition from now on, in
// order and without loss: transitions queue up for a slow reader (the
// session never blocks on it). The channel is closed after the transition to
// Closed has been received, or when ctx ends. A subscriber must read until
// the channel closes or cancel ctx, or its goroutine outlives the Session.
func (s *Session) Subscribe(ctx context.Context) <-chan Transition {
	out := make(chan Transition)
	sub := &subscriber{signal: make(chan struct{}, 1)}
	s.mu.Lock()
	if s.subs == nil { // closed
		s.mu.Unlock()
		close(out)
		return out
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	go func() {
		defer close(out)
		defer func() {
			s.mu.Lock()
			delete(s.subs, sub) // no-op after shutdown (nil map)
			s.mu.Unlock()
		}()
		for {
			tr, ok, more := sub.next()
			if !ok {
				if !more {
					return
				}
				select {
				case <-sub.signal:
					continue
				case <-ctx.Done():
					return
				}
			}
			select {
			case out <- tr:
			case <-ctx.Done():
				return
			}
		}
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

type subscriber struct {
	mu     sync.Mutex
	queue  []Transition
	done   bool
	signal chan struct{}
}

func (b *subscriber) push(t Transition) {
	b.mu.Lock()
	b.queue = append(b.queue, t)
	b.mu.Unlock()
	b.wake()
}

func (b *subscriber) finish() {
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
	b.wake()
}

func (b *subscriber) wake() {
	select {
	case b.signal <- struct{}{}:
	default:
	}
}

// next pops the oldest transition; more is false once the queue is drained
// and finished.
func (b *subscriber) next() (t Transition, ok, more bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) == 0 {
		return t, false, !b.done
	}
	t = b.queue[0]
	b.queue[0] = Transition{}
	b.queue = b.queue[1:]
	return t, true, true
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
		case <-s.nodeInbox.signal:
		case <-s.closing:
			return
		}
		for _, it := range s.nodeInbox.drain() {
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
