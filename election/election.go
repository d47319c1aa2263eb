package election

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sync"
	"unicode/utf8"

	"github.com/go-zookeeper/zk"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/zkrecipes/zkrecipes/internal/queue"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// Errors; test with errors.Is.
var (
	// ErrTermLost means leadership ended without resigning: the session was
	// suspended (LoseOnSuspend) or lost, or the candidate node is gone.
	ErrTermLost = errors.New("election: term lost")
	// ErrResigned is wrapped by the cause of a term given up (by Resign, by
	// Run, or by closing the session), and is the error of a second Resign.
	ErrResigned = errors.New("election: resigned")
	// ErrNoLeader is returned by Leader when there are no candidates.
	ErrNoLeader = errors.New("election: no leader")
	// ErrInvalidArgument is wrapped by the error of New for a nil session or
	// a bad path (with resilience.ErrInvalidPath), and of Campaign, Run and
	// WaitLeading on an Election without a participant id.
	ErrInvalidArgument = errors.New("election: invalid argument")
	// ErrInvalidOption is wrapped by the error of New for a bad option value.
	ErrInvalidOption = errors.New("election: invalid option")
	// ErrClosed is wrapped by the error of Campaign, Run and WaitLeading
	// once the session is closed (the error wraps resilience.ErrClosed too).
	ErrClosed = errors.New("election: closed")
	// ErrLeaderPanicked is wrapped by the error Run returns when its
	// function panicked.
	ErrLeaderPanicked = errors.New("election: leader function panicked")
)

// markerLatch is Curator LeaderLatch's node name.
const markerLatch = "latch-"

// Option configures an Election.
type Option func(*options)

type options struct {
	id     string
	idSet  bool
	policy resilience.LossPolicy
	tp     trace.TracerProvider
	mp     metric.MeterProvider
}

// WithID makes the Election a participant named id: the id is stored in
// its candidate node (so it must be non-empty UTF-8) and is what Leader and
// Subscribe report while it leads. Without WithID an Election only
// observes.
func WithID(id string) Option { return func(o *options) { o.id, o.idSet = id, true } }

// WithLossPolicy sets when terms count as lost (default
// resilience.LoseOnSuspend). A value that is not a defined policy makes New
// fail with ErrInvalidOption.
func WithLossPolicy(p resilience.LossPolicy) Option { return func(o *options) { o.policy = p } }

// WithTracerProvider sets the tracer provider (default: the session's).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(o *options) { o.tp = tp } }

// WithMeterProvider sets the meter provider (default: the session's).
func WithMeterProvider(mp metric.MeterProvider) Option { return func(o *options) { o.mp = mp } }

// Election is a handle on the election at a path: a participant's (WithID)
// or an observer's. It is safe for concurrent use, but a participant should
// campaign once at a time (one Campaign or Run).
type Election struct {
	s    *resilience.Session
	path string
	opts options
	q    queue.Queue
	tel  *telemetry

	mu    sync.Mutex
	cur   *Term         // the latest term won, if any
	began chan struct{} // closed when a term begins, then replaced
}

// New returns a handle on the election at electionPath: a participant's
// with WithID, an observer's without. It fails with an error wrapping
// ErrInvalidArgument for a nil session or a bad path (then also
// resilience.ErrInvalidPath; the root cannot hold an election), and
// ErrInvalidOption for a bad option value.
func New(s *resilience.Session, electionPath string, opts ...Option) (*Election, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: nil session", ErrInvalidArgument)
	}
	if err := resilience.ValidatePath(electionPath, false); err != nil {
		return nil, fmt.Errorf("%w: election path: %w", ErrInvalidArgument, err)
	}
	if electionPath == "/" {
		return nil, fmt.Errorf("%w: election path: %w %q: the root cannot hold an election", ErrInvalidArgument, resilience.ErrInvalidPath, electionPath)
	}
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.idSet && (o.id == "" || !utf8.ValidString(o.id)) {
		return nil, fmt.Errorf("%w: WithID(%q): a participant id must be non-empty UTF-8", ErrInvalidOption, o.id)
	}
	if !o.policy.Valid() {
		return nil, fmt.Errorf("%w: WithLossPolicy(%s): not a defined resilience.LossPolicy", ErrInvalidOption, o.policy)
	}
	tel, err := newTelemetry(s, &o)
	if err != nil {
		return nil, err
	}
	return &Election{
		s: s, path: electionPath, opts: o, tel: tel, began: make(chan struct{}),
		q: queue.Queue{Parent: electionPath, Name: markerLatch, Markers: []string{markerLatch}, Data: []byte(o.id)},
	}, nil
}

// Path returns the election's znode.
func (e *Election) Path() string { return e.path }

// ID returns this participant's id; "" for an observer.
func (e *Election) ID() string { return e.opts.id }

// describe names the election and participant in errors.
func (e *Election) describe() string {
	if e.opts.id == "" {
		return fmt.Sprintf("election %s", e.path)
	}
	return fmt.Sprintf("election %s, participant %q", e.path, e.opts.id)
}

// needID fails a candidate's call on an observer.
func (e *Election) needID(op string) error {
	if e.opts.id == "" {
		return fmt.Errorf("%w: %s on election %s: no participant id (New without WithID only observes)", ErrInvalidArgument, op, e.path)
	}
	return nil
}

// closedErr is the error of a candidate's call after the session closed.
func (e *Election) closedErr() error {
	return fmt.Errorf("%w (%s): %w", ErrClosed, e.describe(), resilience.ErrClosed)
}

// Campaign blocks until this participant leads, or ctx ends (then it
// returns ctx.Err()). Connection loss is waited out; on a new session the
// candidacy is queued again. A cancelled campaign leaves no node behind.
// The term's context keeps ctx's values and trace span, not its
// cancellation. After the session is closed Campaign fails with ErrClosed;
// on an observer, with ErrInvalidArgument.
func (e *Election) Campaign(ctx context.Context) (*Term, error) {
	if err := e.needID("Campaign"); err != nil {
		return nil, err
	}
	caller := ctx
	return e.tel.campaignSpan(ctx, e.path, e.opts.id, func(ctx context.Context) (*Term, error) {
		for {
			entry, err := e.q.Take(ctx, e.s, true)
			if err != nil {
				return nil, e.campaignErr(ctx, err)
			}
			// Declare leadership only for a node of the current session.
			ok, st, err := e.s.Exists(ctx, entry.Path)
			switch {
			case err != nil:
				_ = queue.Leave(e.s, entry)
				if errors.Is(err, resilience.ErrSessionLost) {
					continue
				}
				return nil, e.campaignErr(ctx, err)
			case !ok || st.EphemeralOwner != entry.SessionID || e.s.SessionID() != entry.SessionID:
				_ = queue.Leave(e.s, entry)
				continue
			}
			return e.newTerm(caller, entry, st.Czxid)
		}
	})
}

func (e *Election) campaignErr(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, resilience.ErrClosed):
		return e.closedErr()
	}
	return fmt.Errorf("%s: campaign: %w", e.describe(), err)
}

// Leading returns this participant's current term, if it leads now (by
// Campaign or by Run); false for an observer or between terms.
func (e *Election) Leading() (*Term, bool) {
	e.mu.Lock()
	t := e.cur
	e.mu.Unlock()
	if t != nil && t.Err() == nil {
		return t, true
	}
	return nil, false
}

// WaitLeading blocks until this participant leads, and returns the term. It
// does not campaign: a Campaign or Run elsewhere must. It returns ctx.Err()
// when ctx ends first, an error wrapping ErrClosed once the session is
// closed, and ErrInvalidArgument on an observer.
func (e *Election) WaitLeading(ctx context.Context) (*Term, error) {
	if err := e.needID("WaitLeading"); err != nil {
		return nil, err
	}
	closed := make(chan struct{})
	var once sync.Once
	stop := e.s.AddListener(func(tr resilience.Transition) {
		if tr.To == resilience.Closed {
			once.Do(func() { close(closed) })
		}
	})
	defer stop()
	for {
		e.mu.Lock()
		t, began := e.cur, e.began
		e.mu.Unlock()
		if t != nil && t.Err() == nil {
			return t, nil
		}
		if e.s.State() == resilience.Closed {
			return nil, e.closedErr()
		}
		select {
		case <-began:
		case <-closed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// setTerm records t as the current term and wakes WaitLeading.
func (e *Election) setTerm(t *Term) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cur = t
	close(e.began)
	e.began = make(chan struct{})
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
		return nil, e.readErr(ctx, err)
	}
	var out []Participant
	for i, c := range queue.Contenders(names, markerLatch) {
		data, _, err := e.s.Get(ctx, path.Join(e.path, c.Name))
		if errors.Is(err, zk.ErrNoNode) {
			continue // left meanwhile
		}
		if err != nil {
			return nil, e.readErr(ctx, err)
		}
		out = append(out, Participant{ID: string(data), Node: c.Name, Leader: i == 0})
	}
	if len(out) > 0 && !out[0].Leader {
		out[0].Leader = true // the first one left meanwhile; the next leads
	}
	return out, nil
}

func (e *Election) readErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("election %s: reading the candidates: %w", e.path, err)
}

// Leader returns the id of the participant first in line, or ErrNoLeader.
// It reads as Participants does, from the session's server.
func (e *Election) Leader(ctx context.Context) (string, error) {
	for {
		names, _, err := e.s.Children(ctx, e.path)
		if errors.Is(err, zk.ErrNoNode) {
			return "", fmt.Errorf("%w: election %s does not exist yet", ErrNoLeader, e.path)
		}
		if err != nil {
			return "", e.readErr(ctx, err)
		}
		cs := queue.Contenders(names, markerLatch)
		if len(cs) == 0 {
			return "", fmt.Errorf("%w: election %s has no candidates", ErrNoLeader, e.path)
		}
		data, _, err := e.s.Get(ctx, path.Join(e.path, cs[0].Name))
		if errors.Is(err, zk.ErrNoNode) {
			continue // it left between the two reads
		}
		if err != nil {
			return "", e.readErr(ctx, err)
		}
		return string(data), nil
	}
}
