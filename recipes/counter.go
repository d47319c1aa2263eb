package recipes

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/latest"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// ErrMalformedCount is returned when a counter node does not hold a 4-byte
// big-endian integer (or nothing, which Kazoo writes and reads as 0).
var ErrMalformedCount = errors.New("recipes: counter node does not hold a 4-byte integer")

// Count is a counter's value and the node version it was read at.
type Count struct {
	Value   int32 // the counter's value
	Version int32 // the node's data version, for TrySet
}

// SharedCount is an integer shared through one node, stored as Curator's
// SharedCount and Kazoo's Counter(support_curator=True) store it: 4 bytes,
// big-endian. TrySet is compare-and-set on the node version.
type SharedCount struct {
	s    *resilience.Session
	path string
}

// NewSharedCount returns the counter at p, creating it (and its missing
// parents) with seed if it does not exist. It rejects a nil session and an
// invalid path with an error wrapping ErrInvalidArgument.
func NewSharedCount(ctx context.Context, s *resilience.Session, p string, seed int32) (*SharedCount, error) {
	if err := checkArgs(s, p); err != nil {
		return nil, err
	}
	for {
		_, err := znode.Create(ctx, s, p, encodeCount(seed), zk.FlagPersistent, true)
		if errors.Is(err, resilience.ErrOutcomeUnknown) {
			// Made by this call or another client: there is a counter if
			// the node exists.
			var ok bool
			if ok, _, err = s.Exists(ctx, p); err == nil && !ok {
				continue
			}
		}
		if err != nil {
			return nil, err
		}
		return &SharedCount{s: s, path: p}, nil
	}
}

func encodeCount(v int32) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, uint32(v))
	return b
}

// decodeCount reads a counter node's data.
func decodeCount(data []byte) (int32, error) {
	switch len(data) {
	case 0:
		return 0, nil
	case 4:
		return int32(binary.BigEndian.Uint32(data)), nil
	}
	return 0, fmt.Errorf("%w: %d bytes", ErrMalformedCount, len(data))
}

// Get reads the current value as the connected server sees it. That server
// may not have applied another client's latest write yet (ZooKeeper reads
// are sequentially consistent, not linearizable); call the session's Sync
// on the counter's path first when the read must follow such a write.
func (c *SharedCount) Get(ctx context.Context) (Count, error) {
	data, st, err := c.s.Get(ctx, c.path)
	if err != nil {
		return Count{}, err
	}
	v, err := decodeCount(data)
	if err != nil {
		return Count{}, fmt.Errorf("%s: %w", c.path, err)
	}
	return Count{Value: v, Version: st.Version}, nil
}

// Set writes v whatever the current value. After a lost request or reply
// it returns an error wrapping resilience.ErrOutcomeUnknown when another
// write may have come between (see resilience.Session.Set).
func (c *SharedCount) Set(ctx context.Context, v int32) error {
	_, err := c.s.Set(ctx, c.path, encodeCount(v), -1)
	return err
}

// TrySet writes v only if the counter is still at prev (its version); it
// reports whether it did. If the request or its reply was lost and the
// counter's state afterwards does not show whether this write or another
// client's took the version, it returns false and an error wrapping
// resilience.ErrOutcomeUnknown: the write may or may not have been applied.
func (c *SharedCount) TrySet(ctx context.Context, prev Count, v int32) (bool, error) {
	_, err := c.s.Set(ctx, c.path, encodeCount(v), prev.Version)
	if errors.Is(err, zk.ErrBadVersion) {
		return false, nil
	}
	return err == nil, err
}

// Add adds delta with compare-and-set, retrying on conflict, and returns
// the new value. It never loses and never doubles an increment: when a
// compare-and-set's request or reply was lost and what followed does not
// show whether it was applied, Add returns an error wrapping
// resilience.ErrOutcomeUnknown instead of guessing. The increment may then
// be in the counter or not; adding again could count it twice, and not
// adding could lose it, so the caller decides (for example by reading the
// counter alongside its own record of what it added).
func (c *SharedCount) Add(ctx context.Context, delta int32) (int32, error) {
	for {
		cur, err := c.Get(ctx)
		if err != nil {
			return 0, err
		}
		ok, err := c.TrySet(ctx, cur, cur.Value+delta)
		if err != nil {
			return 0, err
		}
		if ok {
			return cur.Value + delta, nil
		}
	}
}

// Subscribe returns a new channel of the counter's values: first the
// current one, then each change, until ctx ends (then the channel closes,
// as it does when the session closes). A slow reader gets the newest
// value, never a backlog. The stream follows the error policy of every
// zkrecipes stream: a counter node not there yet, a connection or session
// lost and replaced are waited out and the node read again, so the channel
// closes only with ctx or the session. Malformed data is skipped (and
// logged).
func (c *SharedCount) Subscribe(ctx context.Context) <-chan Count {
	return latest.Stream(ctx, c.s, c.read, func(a, b Count) bool { return a == b })
}

// read is one read of the counter for Subscribe, with a watch: on the
// node's data, or on its creation while it does not exist.
func (c *SharedCount) read(ctx context.Context) (Count, bool, <-chan zk.Event, error) {
	data, st, ch, err := c.s.GetW(ctx, c.path)
	if errors.Is(err, zk.ErrNoNode) {
		ok, _, ech, err := c.s.ExistsW(ctx, c.path)
		if err != nil || ok {
			return Count{}, false, nil, err // there again already: read it at once
		}
		return Count{}, false, ech, nil
	}
	if err != nil {
		return Count{}, false, nil, err
	}
	v, err := decodeCount(data)
	if err != nil {
		c.s.Logger().Warn("recipes: skipping malformed counter data", "path", c.path, "error", err)
		return Count{}, false, ch, nil
	}
	return Count{Value: v, Version: st.Version}, true, ch, nil
}
