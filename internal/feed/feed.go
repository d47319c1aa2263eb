// Package feed is the one unbounded FIFO the library uses wherever a
// producer must never block and nothing may be dropped: the session's event
// inboxes and subscribers, and the recipes' event channels.
package feed

import (
	"context"
	"sync"
)

// Queue is an unbounded FIFO. Push never blocks; Ready fires after a Push
// or Close, so a single consumer can wait on it and then Drain. The zero
// value is not usable; call New.
type Queue[T any] struct {
	mu     sync.Mutex
	items  []T
	closed bool
	ready  chan struct{}
}

// New returns an empty queue.
func New[T any]() *Queue[T] { return &Queue[T]{ready: make(chan struct{}, 1)} }

// Push appends v. After Close it drops v and reports false.
func (q *Queue[T]) Push(v T) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, v)
	q.mu.Unlock()
	q.wake()
	return true
}

// Close marks the queue finished: later pushes are dropped, and the items
// already queued can still be drained.
func (q *Queue[T]) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.wake()
}

func (q *Queue[T]) wake() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// Ready returns a channel that receives a value after a Push or a Close
// (several of them may share one value).
func (q *Queue[T]) Ready() <-chan struct{} { return q.ready }

// Drain removes and returns every queued item, oldest first, and whether
// the queue has been closed.
func (q *Queue[T]) Drain() (items []T, closed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	items, q.items = q.items, nil
	return items, q.closed
}

// Pump delivers q's items to out in order until ctx ends, or q is closed
// and every item has been delivered; then it closes out.
func Pump[T any](ctx context.Context, q *Queue[T], out chan<- T) {
	defer close(out)
	for {
		items, closed := q.Drain()
		for i, v := range items {
			select {
			case out <- v:
			case <-ctx.Done():
				return
			}
			var zero T
			items[i] = zero
		}
		if closed && len(items) == 0 {
			return
		}
		if len(items) > 0 {
			continue
		}
		select {
		case <-q.Ready():
		case <-ctx.Done():
			return
		}
	}
}

// Feed is a Queue delivered to a channel by Run: values queue up for a slow
// reader and the producer never blocks.
type Feed[T any] struct {
	q   *Queue[T]
	out chan T
}

// NewFeed returns an empty feed.
func NewFeed[T any]() *Feed[T] { return &Feed[T]{q: New[T](), out: make(chan T)} }

// Push queues v.
func (f *Feed[T]) Push(v T) { f.q.Push(v) }

// C returns the channel values arrive on.
func (f *Feed[T]) C() <-chan T { return f.out }

// Run delivers queued values until ctx ends, then closes C.
func (f *Feed[T]) Run(ctx context.Context) { Pump(ctx, f.q, f.out) }
