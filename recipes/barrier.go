package recipes

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/queue"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// Barrier holds waiters back while its node exists (Curator's
// DistributedBarrier). Waiting survives connection loss: the watch is set
// again on reconnect, and a new session is watched afresh.
type Barrier struct {
	s    *resilience.Session
	path string
}

// NewBarrier returns the barrier at p. It rejects a nil session and an
// invalid path with an error wrapping ErrInvalidArgument.
func NewBarrier(s *resilience.Session, p string) (*Barrier, error) {
	if err := checkArgs(s, p); err != nil {
		return nil, err
	}
	return &Barrier{s: s, path: p}, nil
}

// Set raises the barrier (creates its node; already raised is fine).
func (b *Barrier) Set(ctx context.Context) error {
	return ensureNode(ctx, b.s, b.path, zk.FlagPersistent)
}

// Remove lowers the barrier, releasing every waiter. Lowered already, by
// this call or another client, is fine.
func (b *Barrier) Remove(ctx context.Context) error {
	return deleted(b.s.Delete(ctx, b.path, -1))
}

// ensureNode creates p (with its parents as containers) unless it exists:
// a node made by another client counts, and so does a create whose outcome
// is unknown once p is seen to exist.
func ensureNode(ctx context.Context, s *resilience.Session, p string, flags int32) error {
	for {
		_, err := znode.Create(ctx, s, p, nil, flags, true)
		if !errors.Is(err, resilience.ErrOutcomeUnknown) {
			return err
		}
		if ok, _, err := s.Exists(ctx, p); err != nil || ok {
			return err
		}
		// Not there: create it.
	}
}

// deleted is a delete's error, with "already gone" and "gone, by this call
// or another" (a Delete's unknown outcome) counted as done.
func deleted(err error) error {
	if errors.Is(err, zk.ErrNoNode) || errors.Is(err, resilience.ErrOutcomeUnknown) {
		return nil
	}
	return err
}

// Wait blocks until the barrier is down, or ctx ends.
func (b *Barrier) Wait(ctx context.Context) error {
	return traced(ctx, b.s, spanBarrierWait, b.path, func(ctx context.Context) error {
		return waitFor(ctx, b.s, b.path, false)
	})
}

// waitFor blocks until the node at p exists (want true) or does not.
func waitFor(ctx context.Context, s *resilience.Session, p string, want bool) error {
	for {
		ok, _, ch, err := s.ExistsW(ctx, p)
		if err != nil {
			return err
		}
		if ok == want {
			return nil
		}
		select {
		case <-ch: // fired, or dropped with a session: look again
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

const readyNode = "ready"

// DoubleBarrier lets a fixed number of members enter a computation together
// and leave it together (Curator's DistributedDoubleBarrier, same nodes:
// an ephemeral node per member and a "ready" node). A member whose session
// is lost while waiting to enter joins again on the new session; its
// connection dropping only delays it.
type DoubleBarrier struct {
	s    *resilience.Session
	path string
	n    int
	name string // this member's node
}

// NewDoubleBarrier returns a member of the double barrier at p for n
// members. It rejects a nil session, an invalid path and n < 1 with an
// error wrapping ErrInvalidArgument.
func NewDoubleBarrier(s *resilience.Session, p string, n int) (*DoubleBarrier, error) {
	if err := checkPath(p); err != nil {
		return nil, err
	}
	if n < 1 {
		return nil, fmt.Errorf("%w: a double barrier needs at least one member, not %d", ErrInvalidArgument, n)
	}
	if err := checkSession(s); err != nil {
		return nil, err
	}
	return &DoubleBarrier{s: s, path: p, n: n, name: resilience.NewUUID()}, nil
}

// Enter blocks until n members have entered. If ctx ends first, the
// member's node is deleted before Enter returns ctx.Err(), or, when the
// link is silent, within a session timeout and then in the background
// while the session lives, so a cancelled member does not stay counted.
func (d *DoubleBarrier) Enter(ctx context.Context) error {
	return traced(ctx, d.s, spanDoubleEnter, d.path, d.enter, keyMembers.Int(d.n))
}

func (d *DoubleBarrier) enter(ctx context.Context) error {
	ready := path.Join(d.path, readyNode)
	ours := path.Join(d.path, d.name)
	for {
		if err := d.join(ctx, ours); err != nil {
			return err
		}
		names, _, err := d.s.Children(ctx, d.path)
		if err != nil {
			return err
		}
		if len(members(names)) >= d.n {
			return ensureNode(ctx, d.s, ready, zk.FlagPersistent)
		}
		sid := d.s.SessionID()
		lost, stop := queue.LostSignal(d.s, sid)
		wctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-lost:
				cancel()
			case <-wctx.Done():
			}
		}()
		err = waitFor(wctx, d.s, ready, true)
		cancel()
		stop()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			d.removeOurs(ours)
			return ctx.Err()
		}
		// The session was lost while waiting: our node went with it.
	}
}

// removeOurs deletes this member's node after its caller gave up. It
// waits at most a session timeout; if the delete has not gone through by
// then (the link is silent), it goes on in the background while the
// session lives, so a session that comes back from a blip does not keep
// the node and with it the other members waiting.
func (d *DoubleBarrier) removeOurs(ours string) {
	_ = queue.Persist(d.s, d.s.SessionID(), func(ctx context.Context) error { return deleteOwn(ctx, d.s, ours) })
}

// join creates this member's ephemeral node if it is not there. Its name
// is this member's own (a UUID), so a node there is this member's.
func (d *DoubleBarrier) join(ctx context.Context, ours string) error {
	for {
		err := ensureNode(ctx, d.s, ours, zk.FlagEphemeral)
		if errors.Is(err, resilience.ErrSessionLost) {
			continue // join on the new session
		}
		return err
	}
}

// members drops the ready node from a listing and sorts it.
func members(names []string) []string {
	out := names[:0:0]
	for _, n := range names {
		if n != readyNode {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Leave blocks until every member has left. The lowest-named member waits
// for the highest; every other deletes its node and waits for the lowest,
// so each change wakes one member (Curator's algorithm). The last one out
// takes the ready node down. If ctx ends first, the member's node is
// deleted as for Enter, so the others' Leave does not wait for it.
func (d *DoubleBarrier) Leave(ctx context.Context) error {
	return traced(ctx, d.s, spanDoubleLeave, d.path, d.leave, keyMembers.Int(d.n))
}

func (d *DoubleBarrier) leave(ctx context.Context) (err error) {
	ours := path.Join(d.path, d.name)
	defer func() {
		if err != nil && ctx.Err() != nil {
			// Given up: take this member out anyway, so the others can
			// leave (they wait for its node to go).
			d.removeOurs(ours)
		}
	}()
	for {
		names, _, err := d.s.Children(ctx, d.path)
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if err != nil {
			return err
		}
		ms := members(names)
		if len(ms) == 0 {
			break
		}
		idx := sort.SearchStrings(ms, d.name)
		present := idx < len(ms) && ms[idx] == d.name
		if len(ms) == 1 && present {
			if err := deleted(d.s.Delete(ctx, ours, -1)); err != nil {
				return err
			}
			break
		}
		var watch string
		if present && idx == 0 {
			watch = path.Join(d.path, ms[len(ms)-1]) // the lowest waits for the highest
		} else {
			if present {
				if err := deleted(d.s.Delete(ctx, ours, -1)); err != nil {
					return err
				}
			}
			watch = path.Join(d.path, ms[0]) // everyone else waits for the lowest
		}
		if err := waitFor(ctx, d.s, watch, false); err != nil {
			return err
		}
	}
	return deleted(d.s.Delete(ctx, path.Join(d.path, readyNode), -1))
}
