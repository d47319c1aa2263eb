// Package latest is the one watch loop behind the library's latest-value
// streams (election.Election.Subscribe, recipes.SharedCount.Subscribe):
// read with a watch, send the value if it differs from the last one sent,
// wait for the watch to fire, read again.
//
// Its error policy, the same for every stream: the channel closes when the
// caller's context ends or the session closes, and only then. Any other
// error (a node not there yet, a session lost and replaced, an outcome the
// session could not verify) is retried after a pause that grows from 50 ms
// to 1 s and resets after a successful read. A slow reader gets the newest
// value, never a backlog.
package latest

import (
	"context"
	"errors"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/resilience"
)

// Read reads the current value with a watch. It returns the value, whether
// there is one to send (false: nothing to report yet, or data to skip),
// and a channel that fires when the value may have changed. A nil channel
// with a nil error means read again at once.
type Read[T any] func(ctx context.Context) (v T, ok bool, changed <-chan zk.Event, err error)

// Stream runs read in a loop on its own goroutine until ctx ends or s
// closes, and returns the channel the values arrive on: the first value
// read, then each one that differs from the previous value sent (by
// same).
func Stream[T any](ctx context.Context, s *resilience.Session, read Read[T], same func(a, b T) bool) <-chan T {
	out := make(chan T, 1)
	go func() {
		defer close(out)
		var last T
		sent := false
		pause := 50 * time.Millisecond
		for ctx.Err() == nil && s.State() != resilience.Closed {
			v, ok, changed, err := read(ctx)
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, resilience.ErrClosed) {
					return
				}
				t := time.NewTimer(pause)
				select {
				case <-t.C:
				case <-ctx.Done():
				}
				t.Stop()
				pause = min(2*pause, time.Second)
				continue
			}
			pause = 50 * time.Millisecond
			if ok && (!sent || !same(last, v)) {
				last, sent = v, true
				select {
				case <-out: // drop the stale value the reader has not taken
				default:
				}
				out <- v
			}
			if changed == nil {
				continue
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
