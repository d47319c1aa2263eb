package recipes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/cache"
	"github.com/zkrecipes/zkrecipes/internal/queue"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// Group is this process's membership in a group, as Curator's GroupMember:
// an ephemeral node <path>/<id> holding the member's data, re-created on
// every new session, and a live view of all members.
type Group struct {
	s      *resilience.Session
	node   string
	view   *cache.Tree
	unstep func()

	// publishing serializes publish: Update's and the rebuild's would
	// otherwise race, and one reading the data before the other changed
	// it could write it last (an Update lost on a new session).
	publishing chan struct{} // a one-slot semaphore, so a waiting ctx can end

	mu     sync.Mutex
	data   []byte
	closed bool
}

// JoinGroup makes id a member of the group at p, with data, and starts
// following the membership. It rejects a nil session, an invalid path and
// an id that is not a single path element with an error wrapping
// ErrInvalidArgument (and resilience.ErrInvalidPath for the path and id).
func JoinGroup(ctx context.Context, s *resilience.Session, p, id string, data []byte) (*Group, error) {
	if err := checkPath(p); err != nil {
		return nil, err
	}
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return nil, fmt.Errorf("%w: %w: member id %q must be a single path element", ErrInvalidArgument, resilience.ErrInvalidPath, id)
	}
	node := path.Join(p, id)
	if err := resilience.ValidatePath(node, false); err != nil {
		return nil, fmt.Errorf("%w: member id %q: %w", ErrInvalidArgument, id, err)
	}
	if err := checkSession(s); err != nil {
		return nil, err
	}
	g := &Group{s: s, node: node, data: data, publishing: make(chan struct{}, 1)}
	if err := g.publish(ctx); err != nil {
		return nil, err
	}
	g.unstep = s.OnNewSession("group member "+node, g.publish)
	view, err := cache.NewTree(ctx, s, p, cache.WithMaxDepth(1))
	if err != nil {
		g.mu.Lock()
		g.closed = true
		g.mu.Unlock()
		g.unstep()
		_ = g.leave()
		return nil, err
	}
	g.view = view
	return g, nil
}

// publish creates the member node with the latest data (or updates it).
func (g *Group) publish(ctx context.Context) error {
	select {
	case g.publishing <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-g.publishing }()
	g.mu.Lock()
	data, closed := g.data, g.closed
	g.mu.Unlock()
	if closed {
		return nil
	}
	for foreign := 0; ; {
		_, err := znode.Create(ctx, g.s, g.node, data, zk.FlagEphemeral, false)
		if !errors.Is(err, zk.ErrNodeExists) && !errors.Is(err, resilience.ErrOutcomeUnknown) {
			return err
		}
		// There already, or the create's outcome is unknown: look at whose
		// node is there, and only ever write to this session's own.
		got, st, err := g.s.Get(ctx, g.node)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			continue // gone meanwhile: create it
		case err != nil:
			return err
		case st.EphemeralOwner != g.s.SessionID():
			// Another session's node, or this client's previous
			// session's, read just as the session was replaced: settle
			// and look again before calling it another client's.
			if foreign++; foreign < 3 {
				if err := znode.Settle(ctx, g.s); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("recipes: group member %s is held by another session (%#x)", g.node, st.EphemeralOwner)
		case bytes.Equal(got, data):
			return nil
		}
		_, err = g.s.Set(ctx, g.node, data, st.Version)
		if err == nil || !errors.Is(err, resilience.ErrOutcomeUnknown) && !errors.Is(err, zk.ErrBadVersion) && !errors.Is(err, zk.ErrNoNode) {
			return err
		}
		// Changed under us or unknown: look again.
	}
}

// deleteOwn deletes p if it is an ephemeral node of s's current session,
// and never another session's node at the same path. A node already gone
// counts as deleted.
func deleteOwn(ctx context.Context, s *resilience.Session, p string) error {
	ok, st, err := s.Exists(ctx, p)
	if err != nil || !ok {
		return err
	}
	if st.EphemeralOwner != s.SessionID() {
		return nil
	}
	err = s.Delete(ctx, p, st.Version)
	if errors.Is(err, zk.ErrBadVersion) {
		return deleteOwn(ctx, s, p) // changed by this session meanwhile
	}
	if err == nil || errors.Is(err, zk.ErrNoNode) || errors.Is(err, resilience.ErrOutcomeUnknown) {
		return nil
	}
	return err
}

// Members returns every member's id and data, as currently seen.
func (g *Group) Members() map[string][]byte {
	out := map[string][]byte{}
	root := path.Dir(g.node)
	for _, id := range g.view.Children(root) {
		if n, ok := g.view.Get(path.Join(root, id)); ok {
			out[id] = n.Data
		}
	}
	return out
}

// Events reports members joining (NodeAdded, the members found at
// JoinGroup first, then Initialized), changing data (NodeUpdated) and
// leaving (NodeRemoved); the group node itself shows up too. It is the
// group's one channel, queued for a slow reader and closed by Close.
func (g *Group) Events() <-chan cache.Event { return g.view.Events() }

// Update changes this member's data (kept for the node's re-creation on
// a new session too). After Close it returns ErrClosed.
func (g *Group) Update(ctx context.Context, data []byte) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrClosed
	}
	g.data = data
	g.mu.Unlock()
	return g.publish(ctx)
}

// Close leaves the group: the member node is deleted and not re-created,
// and the Events channel closes. Only this session's node is deleted; a
// node another session made at the same path is left alone. Close waits
// for the delete up to the session timeout; if it has not gone through by
// then (a suspension that outlasts it), Close returns nil and keeps trying
// in the background until the node is gone or its session is lost or
// closed (the node goes with its session). A second Close returns
// ErrClosed. After Close, Members reports the membership as last seen.
func (g *Group) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrClosed
	}
	g.closed = true
	g.mu.Unlock()
	g.unstep()
	_ = g.view.Close()
	return g.leave()
}

// leave deletes this member's node, within the session timeout, then in
// the background (see Close).
func (g *Group) leave() error {
	err := queue.Persist(g.s, g.s.SessionID(), func(ctx context.Context) error { return deleteOwn(ctx, g.s, g.node) })
	if errors.Is(err, resilience.ErrClosed) || errors.Is(err, resilience.ErrSessionLost) {
		return nil // no session, no node
	}
	return err
}
