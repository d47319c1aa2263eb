package election

import (
	"context"
	"errors"
	"path"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/latest"
	"github.com/zkrecipes/zkrecipes/internal/queue"
)

// LeaderChange is one leader seen by Subscribe. The zero LeaderChange (ID
// and Node empty) means nobody leads.
type LeaderChange struct {
	ID   string    // the leader's participant id; "" when nobody leads
	Node string    // its candidate node's name; "" when nobody leads
	At   time.Time // when it was observed
}

// Subscribe returns a new channel that first receives the leader now (a
// LeaderChange with an empty Node when nobody leads, or the election does
// not exist yet) and then every change of leader. It needs no candidacy. A
// slow reader gets the latest leader, not every intermediate one. The
// channel is closed when ctx ends or the session closes, and only then:
// connection loss, session expiry and read errors are waited out and
// retried (on a new session it watches again), so after a fault the next
// value is the leader chosen meanwhile, if it changed.
func (e *Election) Subscribe(ctx context.Context) <-chan LeaderChange {
	return latest.Stream(ctx, e.s, e.readLeader, func(a, b LeaderChange) bool { return a.Node == b.Node })
}

// readLeader reads the leader with a watch on the candidates (or on the
// election's node while it does not exist).
func (e *Election) readLeader(ctx context.Context) (LeaderChange, bool, <-chan zk.Event, error) {
	names, _, changed, err := e.s.ChildrenW(ctx, e.path)
	if errors.Is(err, zk.ErrNoNode) {
		ok, _, created, err := e.s.ExistsW(ctx, e.path)
		switch {
		case err != nil:
			return LeaderChange{}, false, nil, err
		case ok:
			return LeaderChange{}, false, nil, nil // created meanwhile: read again
		}
		return LeaderChange{At: time.Now()}, true, created, nil
	}
	if err != nil {
		return LeaderChange{}, false, nil, err
	}
	cs := queue.Contenders(names, markerLatch)
	if len(cs) == 0 {
		return LeaderChange{At: time.Now()}, true, changed, nil
	}
	data, _, err := e.s.Get(ctx, path.Join(e.path, cs[0].Name))
	if errors.Is(err, zk.ErrNoNode) {
		// It left between the two reads; the children watch has fired or
		// is about to: wait for it, then read again.
		return LeaderChange{}, false, changed, nil
	}
	if err != nil {
		return LeaderChange{}, false, nil, err
	}
	return LeaderChange{ID: string(data), Node: cs[0].Name, At: time.Now()}, true, changed, nil
}
