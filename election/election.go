// Package election is leader election on ZooKeeper with no two leaders,
// ever.
//
// Candidates queue as ephemeral sequential nodes (Curator LeaderLatch's
// format, "_c_<uuid>-latch-NNNNNNNNNN" holding the participant id, so Go
// and Java participants form one election); the lowest leads. Leadership is
// declared only after the candidate's node is confirmed to belong to the
// current session (its EphemeralOwner): Curator's LeaderLatch once declared
// two leaders when an old session's node was still visible after expiry.
//
// A leadership Term is a context, cancelled the moment leadership can no
// longer be trusted, per the LossPolicy (LoseOnSuspend by default: at the
// first sign of a dead link, before the ensemble can expire the session and
// elect someone else). Under LoseOnSessionLoss a term survives suspensions,
// and after each reconnect leadership is re-confirmed the same way, never
// assumed. Every term carries a fencing token, the czxid of its node.
//
// Campaign blocks until this participant leads. Run leads, runs a function
// with the term's context, steps down, and campaigns again until its own
// context ends (Curator's LeaderSelector with auto-requeue). Leader,
// Participants and Observe serve non-candidates.
package election

import (
	"context"
	"errors"
	"fmt"
	"path"
	"time"
	"unicode/utf8"

	"github.com/go-zookeeper/zk"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/zkrecipes/zkrecipes/internal/queue"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// Errors; test with errors.Is.
var (
	// ErrTermLost means leadership ended without Resign: the session was
	// suspended (LoseOnSuspend) or lost, or the candidate node is gone.
	ErrTermLost = errors.New("election: term lost")
	// ErrResigned is the cause of a resigned term's context, and the error
	// of a second Resign.
	ErrResigned = errors.New("election: resigned")
	// ErrNoLeader is returned by Leader when there are no candidates.
	ErrNoLeader = errors.New("election: no leader")
	// ErrInvalidArgument is returned for a nil session or an empty id.
	ErrInvalidArgument = errors.New("election: invalid argument")
)

// markerLatch is Curator LeaderLatch's node name.
const markerLatch = "latch-"

// Option configures an Election.
type Option func(*options)

type options struct {
	policy resilience.LossPolicy
	tp     trace.TracerProvider
	mp     metric.MeterProvider
}

// WithLossPolicy sets when terms count as lost (default LoseOnSuspend).
func WithLossPolicy(p resilience.LossPolicy) Option { return func(o *options) { o.policy = p } }

// WithTracerProvider sets the tracer provider (default: the session's).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(o *options) { o.tp = tp } }

// WithMeterProvider sets the meter provider (default: the session's).
func WithMeterProvider(mp metric.MeterProvider) Option { return func(o *options) { o.mp = mp } }

// Election is one participant's handle on the election at a path. It is
// safe for concurrent use, but one participant should campaign once at a
// time.
type Election struct {
	s    *resilience.Session
	path string
	id   string
	opts options
	q    queue.Queue
	tel  *telemetry
}

// New returns participant id's handle on the election at path. id is stored
// in the candidate node (UTF-8) and is what Leader reports.
func New(s *resilience.Session, electionPath, id string, opts ...Option) (*Election, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: nil session", ErrInvalidArgument)
	}
	if id == "" || !utf8.ValidString(id) {
		return nil, fmt.Errorf("%w: participant id %q must be non-empty UTF-8", ErrInvalidArgument, id)
	}
	if err := resilience.ValidatePath(electionPath, false); err != nil {
		return nil, err
	}
	if electionPath == "/" {
		return nil, fmt.Errorf("%w: the root cannot hold an election", resilience.ErrInvalidPath)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	tel, err := newTelemetry(s, &o)
	if err != nil {
		return nil, err
	}
	return &Election{
		s: s, path: electionPath, id: id, opts: o, tel: tel,
		q: queue.Queue{Parent: electionPath, Name: markerLatch, Markers: []string{markerLatch}, Data: []byte(id)},
	}, nil
}

// Path returns the election's znode.
func (e *Election) Path() string { return e.path }

// ID returns this participant's id.
func (e *Election) ID() string { return e.id }

// Campaign blocks until this participant leads, or ctx ends. Connection
// loss is waited out; on a new session the candidacy is queued again. A
// cancelled campaign leaves no node behind.
func (e *Election) Campaign(ctx context.Context) (*Term, error) {
	return e.tel.campaignSpan(ctx, e.path, e.id, func(ctx context.Context) (*Term, error) {
		for {
			entry, err := e.q.Take(ctx, e.s, true)
			if err != nil {
				return nil, err
			}
			// Declare leadership only for a node of the current session.
			ok, st, err := e.s.Exists(ctx, entry.Path)
			switch {
			case err != nil:
				_ = queue.Leave(e.s, entry)
				if errors.Is(err, resilience.ErrSessionLost) {
					continue
				}
				return nil, err
			case !ok || st.EphemeralOwner != entry.SessionID || e.s.SessionID() != entry.SessionID:
				_ = queue.Leave(e.s, entry)
				continue
			}
			return e.newTerm(ctx, entry, st.Czxid)
		}
	})
}

// Run campaigns, runs fn with the term's context (also cancelled when ctx
// ends) while this participant leads, resigns when fn returns, and
// campaigns again, until ctx ends or the session closes. A panic in fn is
// recovered and counts as fn returning: leadership is given up and Run
// carries on. Run returns ctx's error, or ErrClosed.
func (e *Election) Run(ctx context.Context, fn func(ctx context.Context) error) error {
	for {
		term, err := e.Campaign(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, resilience.ErrClosed) {
				return err
			}
			e.s.Logger().Warn("election: campaign failed; retrying", "path", e.path, "id", e.id, "error", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		lead, cancel := context.WithCancelCause(term.Context())
		stop := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
		if err := call(lead, fn); err != nil && lead.Err() == nil {
			e.s.Logger().Warn("election: leader function returned", "path", e.path, "id", e.id, "error", err)
		}
		stop()
		cancel(nil)
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), e.s.Timeout())
		_ = term.Resign(rctx)
		rcancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func call(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("election: leader function panicked: %v", r)
		}
	}()
	return fn(ctx)
}

// Participant is one candidate of an election.
type Participant struct {
	ID     string // the participant id stored in its node
	Node   string // the node's name
	Leader bool   // whether it is first in line
}

// Participants returns the candidates in line order (the first leads, once
// it has confirmed its node). Nodes that are not LeaderLatch candidates are
// ignored. Like every ZooKeeper read, it sees the session's server, which
// may not have applied another client's latest write yet; call the
// session's Sync on the election's path first when the read must follow
// such a write.
func (e *Election) Participants(ctx context.Context) ([]Participant, error) {
	names, _, err := e.s.Children(ctx, e.path)
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Participant
	for i, c := range queue.Contenders(names, markerLatch) {
		data, _, err := e.s.Get(ctx, path.Join(e.path, c.Name))
		if errors.Is(err, zk.ErrNoNode) {
			continue // left meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, Participant{ID: string(data), Node: c.Name, Leader: i == 0})
	}
	if len(out) > 0 && !out[0].Leader {
		out[0].Leader = true // the first one left meanwhile; the next leads
	}
	return out, nil
}

// Leader returns the id of the participant first in line, or ErrNoLeader.
// It reads as Participants does, from the session's server.
func (e *Election) Leader(ctx context.Context) (string, error) {
	for {
		names, _, err := e.s.Children(ctx, e.path)
		if errors.Is(err, zk.ErrNoNode) {
			return "", ErrNoLeader
		}
		if err != nil {
			return "", err
		}
		cs := queue.Contenders(names, markerLatch)
		if len(cs) == 0 {
			return "", ErrNoLeader
		}
		data, _, err := e.s.Get(ctx, path.Join(e.path, cs[0].Name))
		if errors.Is(err, zk.ErrNoNode) {
			continue // it left between the two reads
		}
		if err != nil {
			return "", err
		}
		return string(data), nil
	}
}

// LeaderChange is one change of leader seen by Observe.
type LeaderChange struct {
	ID   string    // the new leader's participant id; "" when nobody leads
	Node string    // its node's name
	At   time.Time // when the change was observed
}

// Observe reports the leader now and every change after, until ctx ends
// (then the channel is closed). It needs no candidacy. A slow reader gets
// the latest leader, not every intermediate one. It survives connection
// loss and session expiry (it watches again on the new session).
func (e *Election) Observe(ctx context.Context) <-chan LeaderChange {
	out := make(chan LeaderChange, 1)
	go func() {
		defer close(out)
		last := "\x00" // nothing sent yet
		for ctx.Err() == nil {
			names, _, ch, err := e.s.ChildrenW(ctx, e.path)
			if errors.Is(err, zk.ErrNoNode) {
				// No election yet: wait for its node.
				var ok bool
				ok, _, ch, err = e.s.ExistsW(ctx, e.path)
				if err == nil && ok {
					continue
				}
			}
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, resilience.ErrClosed) {
					return
				}
				time.Sleep(50 * time.Millisecond)
				continue
			}
			change := LeaderChange{At: time.Now()}
			if cs := queue.Contenders(names, markerLatch); len(cs) > 0 {
				data, _, err := e.s.Get(ctx, path.Join(e.path, cs[0].Name))
				if errors.Is(err, zk.ErrNoNode) {
					continue
				}
				if err != nil {
					continue
				}
				change.ID, change.Node = string(data), cs[0].Name
			}
			if change.Node != last {
				last = change.Node
				select {
				case <-out: // drop the stale one the reader has not taken
				default:
				}
				out <- change
			}
			select {
			case <-ch:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
