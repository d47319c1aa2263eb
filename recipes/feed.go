package recipes

import (
	"context"
	"sync"
)

// Feed delivers values to a channel in order without ever blocking the
// producer: values queue up for a slow reader. Run pumps until its context
// ends, then closes the channel.
type Feed[T any] struct {
	mu     sync.Mutex
	queue  []T
	signal chan struct{}
	out    chan T
}

// NewFeed returns an empty feed.
func NewFeed[T any]() *Feed[T] {
	return &Feed[T]{signal: make(chan struct{}, 1), out: make(chan T)}
}

// Push queues v.
func (f *Feed[T]) Push(v T) {
	f.mu.Lock()
	f.queue = append(f.queue, v)
	f.mu.Unlock()
	select {
	case f.signal <- struct{}{}:
	default:
	}
}

// C returns the channel values arrive on.
func (f *Feed[T]) C() <-chan T { return f.out }

// Run delivers queued values until ctx ends, then closes C.
func (f *Feed[T]) Run(ctx context.Context) {
	defer close(f.out)
	for {
		f.mu.Lock()
		var v T
		have := len(f.queue) > 0
		if have {
			v = f.queue[0]
			var zero T
			f.queue[0] = zero
			f.queue = f.queue[1:]
		}
		f.mu.Unlock()
		if !have {
			select {
			case <-f.signal:
				continue
			case <-ctx.Done():
				return
			}
		}
		select {
		case f.out <- v:
		case <-ctx.Done():
			return
		}
	}
}
