// Package znode holds the znode chores every recipe shares: making a path
// with its missing parents.
package znode

import (
	"context"
	"errors"
	"fmt"
	"path"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/resilience"
)

// EnsurePath creates p and its missing ancestors as container nodes (the
// ensemble deletes a container once its last child is gone). Existing nodes
// are left as they are.
func EnsurePath(ctx context.Context, s *resilience.Session, p string) error {
	if err := resilience.ValidatePath(p, false); err != nil {
		return err
	}
	for attempt := 0; attempt < 5; attempt++ {
		_, err := s.Create(ctx, p, nil, zk.FlagContainer, nil)
		if errors.Is(err, resilience.ErrOutcomeUnknown) {
			// Made by this call or another: either way, is it there?
			var ok bool
			if ok, _, err = s.Exists(ctx, p); err == nil && ok {
				return nil
			} else if err == nil {
				continue
			}
		}
		switch {
		case err == nil, errors.Is(err, zk.ErrNodeExists):
			return nil
		case errors.Is(err, zk.ErrNoNode):
			if parent := path.Dir(p); parent != "/" {
				if err := EnsurePath(ctx, s, parent); err != nil {
					return err
				}
			}
			// A container parent can vanish between the two creates; try again.
		default:
			return err
		}
	}
	return fmt.Errorf("znode: creating %s: parents keep disappearing", p)
}

// Create creates p with data and flags, first creating p's missing
// parents as containers if ZooKeeper says they are missing. A node already
// at p is not an error when existsOK: then Create returns p. It returns the
// path created (for a sequential node, with its suffix).
func Create(ctx context.Context, s *resilience.Session, p string, data []byte, flags int32, existsOK bool) (string, error) {
	for attempt := 0; ; attempt++ {
		got, err := s.Create(ctx, p, data, flags, nil)
		switch {
		case err == nil:
			return got, nil
		case existsOK && errors.Is(err, zk.ErrNodeExists):
			return p, nil
		case errors.Is(err, zk.ErrNoNode) && attempt < 5 && path.Dir(p) != "/":
			if perr := EnsurePath(ctx, s, path.Dir(p)); perr != nil {
				return "", perr
			}
		default:
			return "", err
		}
	}
}

// CheckPath rejects an invalid path with an error wrapping both invalid
// (the calling package's ErrInvalidArgument) and resilience.ErrInvalidPath.
func CheckPath(p string, invalid error) error {
	if err := resilience.ValidatePath(p, false); err != nil {
		return fmt.Errorf("%w: %w", invalid, err)
	}
	return nil
}

// CheckSession rejects a nil session with an error wrapping invalid.
func CheckSession(s *resilience.Session, invalid error) error {
	if s == nil {
		return fmt.Errorf("%w: nil session", invalid)
	}
	return nil
}

// Settle makes s's server apply every write acknowledged to any client
// before the call, so the reads that follow see them. It sends a
// transaction that changes nothing (a multi of one version check of "/" at
// any version), which a server answers only after applying every earlier
// one. A sync would not do when s is on the leader: the leader serves a
// sync as a read, which can come back before it has applied a write that a
// follower has already acknowledged.
//
// After a lost reply the check's own outcome is unknown, but the session
// has by then settled the server it reconnected to before verifying, which
// is all Settle is for; so that answer counts as done.
func Settle(ctx context.Context, s *resilience.Session) error {
	_, err := s.Multi(ctx, &zk.CheckVersionRequest{Path: "/", Version: -1})
	if errors.Is(err, resilience.ErrOutcomeUnknown) {
		return nil
	}
	return err
}
