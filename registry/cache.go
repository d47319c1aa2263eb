package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"sync"

	"github.com/go-zookeeper/zk"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/zkrecipes/zkrecipes/cache"
	"github.com/zkrecipes/zkrecipes/internal/feed"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// Services returns the names of the services under the registry's base. It
// reads the session's server, as Instances does. After Close it returns
// ErrClosed.
func (r *Registry) Services(ctx context.Context) ([]string, error) {
	if r.isClosed() {
		return nil, ErrClosed
	}
	names, _, err := r.s.Children(ctx, r.base)
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	sort.Strings(names)
	return names, err
}

// Instances reads the instances of service once. Nodes whose data is not an
// instance, or not the instance their path names (see DecodeAt), are
// skipped (and logged). Like every ZooKeeper read, it sees the
// session's server, which may not have applied another client's latest
// write yet; call the session's Sync on the registry's base path first when
// the read must follow such a write. A Cache follows changes instead. A
// service name that is not a single path element gives an error wrapping
// ErrInvalidArgument; after Close it returns ErrClosed.
func (r *Registry) Instances(ctx context.Context, service string) ([]Instance, error) {
	p, err := r.checkService(service)
	if err != nil {
		return nil, err
	}
	names, _, err := r.s.Children(ctx, p)
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	type res struct {
		in  Instance
		err error
	}
	out := make([]res, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data, _, err := r.s.Get(ctx, path.Join(p, n))
			if err == nil {
				out[i].in, err = DecodeAt(service, n, data)
				if err != nil {
					r.s.Logger().Warn("registry: skipping a node that is not an instance", "path", path.Join(p, n), "error", err)
					err = errSkip
				}
			}
			out[i].err = err
		}()
	}
	wg.Wait()
	var ins []Instance
	for _, o := range out {
		switch {
		case o.err == nil:
			ins = append(ins, o.in)
		case errors.Is(o.err, errSkip), errors.Is(o.err, zk.ErrNoNode):
		default:
			return nil, o.err
		}
	}
	sort.Slice(ins, func(i, j int) bool { return ins[i].ID < ins[j].ID })
	return ins, nil
}

var errSkip = errors.New("skip")

// checkService returns service's node path, or the error for a bad
// service name or a closed registry.
func (r *Registry) checkService(service string) (string, error) {
	if !pathElement(service) {
		return "", fmt.Errorf("%w: service name %q must be a non-empty single path element", ErrInvalidArgument, service)
	}
	p := r.servicePath(service)
	if err := resilience.ValidatePath(p, false); err != nil {
		return "", fmt.Errorf("%w: service %q: %w", ErrInvalidArgument, service, err)
	}
	if r.isClosed() {
		return "", ErrClosed
	}
	return p, nil
}

// EventType says what happened to a cached instance.
type EventType int

// Cache events.
const (
	// Added: a new instance appeared.
	Added EventType = iota + 1
	// Updated: an instance's data changed.
	Updated
	// Removed: an instance went away.
	Removed
	// Malformed: a node's data is not an instance, or its name or id
	// disagree with its path (see DecodeAt); it is skipped (Err says why).
	// Reported once per change of the node.
	Malformed
)

// String returns the event type's name: added, updated, removed or
// malformed.
func (t EventType) String() string {
	switch t {
	case Added:
		return "added"
	case Updated:
		return "updated"
	case Removed:
		return "removed"
	case Malformed:
		return "malformed"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is one change seen by a Cache.
type Event struct {
	Type     EventType // what happened
	Node     string    // the node's name under the service
	Instance Instance  // the new instance (Added, Updated) or the last one seen (Removed)
	Err      error     // for Malformed
}

// Cache follows one service's instances. It is a cache.Tree of
// depth one under the service's node (so it gets that cache's watch
// handling, and its full resync after a reconnect or a new session), which
// decodes each node as an instance. Reads are cheap and safe for concurrent
// use.
//
// A change costs the cache O(1): it updates its map of instances and marks
// the ordered list stale; the next Instances sorts it once (O(n log n)) and
// keeps it until the next change. Loading n instances therefore takes time
// linear in n, and a reader pays for the sort only when something changed.
type Cache struct {
	r       *Registry
	service string
	parent  string
	tree    *cache.Tree

	mu     sync.Mutex
	nodes  map[string]Instance // by node name; written by translate under mu
	sorted []Instance          // nodes ordered by id then node name; nil when stale
	bad    map[string]bool     // owned by translate
	size   metric.MeasurementOption

	feed  *feed.Feed[Event]
	ready chan struct{}

	closeMu sync.Mutex
	closed  bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewCache loads service's instances and keeps following them until Close.
// The initial instances are reported as Added events. It returns an error
// wrapping ErrInvalidArgument for a service name that is not a single path
// element, and ErrClosed after the Registry's Close.
//
// The load runs in the span zkrecipes.registry.cache.load, a child of
// ctx's, with the number of instances loaded as zkrecipes.registry.instances.
func (r *Registry) NewCache(ctx context.Context, service string) (*Cache, error) {
	var c *Cache
	_, err := tracedService(ctx, r.tel.tracer, spanCacheLoad, service, func(ctx context.Context) error {
		var err error
		c, err = r.newCache(ctx, service)
		if err == nil {
			trace.SpanFromContext(ctx).SetAttributes(keyInstances.Int(c.Len()))
		}
		return err
	})
	return c, err
}

func (r *Registry) newCache(ctx context.Context, service string) (*Cache, error) {
	p, err := r.checkService(service)
	if err != nil {
		return nil, err
	}
	tree, err := cache.NewTree(ctx, r.s, p, cache.WithMaxDepth(1))
	if err != nil {
		return nil, err
	}
	c := &Cache{
		r: r, service: service, parent: p, tree: tree,
		nodes: map[string]Instance{}, bad: map[string]bool{},
		size: metric.WithAttributeSet(attribute.NewSet(keyService.String(service))),
		feed: feed.NewFeed[Event](), ready: make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(2)
	go c.translate()
	go func() {
		defer c.wg.Done()
		c.feed.Run(c.ctx)
	}()
	select {
	case <-c.ready:
		return c, nil
	case <-ctx.Done():
		c.Close()
		return nil, ctx.Err()
	}
}

// Instances returns the cached instances, ordered by id (instances of one
// DynamicSequential id by node name). After Close it returns the last
// instances the cache saw.
func (c *Cache) Instances() []Instance {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sorted == nil {
		type entry struct {
			node string
			in   Instance
		}
		all := make([]entry, 0, len(c.nodes))
		for n, in := range c.nodes {
			all = append(all, entry{n, in})
		}
		slices.SortFunc(all, func(a, b entry) int {
			return cmp.Or(cmp.Compare(a.in.ID, b.in.ID), cmp.Compare(a.node, b.node))
		})
		c.sorted = make([]Instance, len(all))
		for i, e := range all {
			c.sorted[i] = e.in
		}
	}
	return slices.Clone(c.sorted)
}

// Len returns the number of cached instances.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nodes)
}

// Events returns the channel of changes. Events queue up for a slow reader;
// the channel is closed by Close. By the time an event is received,
// Instances already reflects it (or a later state).
func (c *Cache) Events() <-chan Event { return c.feed.C() }

// Close stops following the service and closes the Events channel. It
// returns ErrClosed if the cache is already closed.
func (c *Cache) Close() error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.closed = true
	c.tree.Close()
	c.cancel()
	c.wg.Wait()
	return nil
}

func (c *Cache) isClosed() bool {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	return c.closed
}

// translate turns the tree's node events into instance events. Each
// change is applied to the cache's map (and the ordered list marked stale)
// before its events are queued, so a reader that has received an event
// finds it reflected in Instances.
func (c *Cache) translate() {
	defer c.wg.Done()
	for e := range c.tree.Events() {
		if e.Type == cache.Initialized {
			close(c.ready)
			continue
		}
		if path.Dir(e.Node.Path) != c.parent {
			continue // the service node itself
		}
		c.mu.Lock()
		evs := c.digest(e)
		if len(evs) > 0 {
			c.sorted = nil
		}
		n := len(c.nodes)
		c.mu.Unlock()
		if len(evs) == 0 {
			continue
		}
		c.r.tel.cacheSize.Record(context.Background(), int64(n), c.size)
		for _, ev := range evs {
			if ev.Type == Malformed {
				c.r.tel.malformed.Add(context.Background(), 1, c.size)
				c.r.s.Logger().Warn("registry: skipping a node that is not an instance", "path", path.Join(c.parent, ev.Node), "error", ev.Err)
			}
			c.feed.Push(ev)
		}
	}
}

// digest applies one tree event to c.nodes (c.mu held) and returns what it
// means for the service's instances.
func (c *Cache) digest(e cache.Event) []Event {
	n := path.Base(e.Node.Path)
	old, known := c.nodes[n]
	switch e.Type {
	case cache.NodeAdded, cache.NodeUpdated:
		in, err := DecodeAt(path.Base(c.parent), n, e.Node.Data)
		switch {
		case err != nil:
			var evs []Event
			if known {
				delete(c.nodes, n)
				evs = append(evs, Event{Type: Removed, Node: n, Instance: old})
			}
			c.bad[n] = true
			return append(evs, Event{Type: Malformed, Node: n, Err: err})
		case !known:
			delete(c.bad, n)
			c.nodes[n] = in
			return []Event{{Type: Added, Node: n, Instance: in}}
		default:
			c.nodes[n] = in
			return []Event{{Type: Updated, Node: n, Instance: in}}
		}
	case cache.NodeRemoved:
		delete(c.bad, n)
		if known {
			delete(c.nodes, n)
			return []Event{{Type: Removed, Node: n, Instance: old}}
		}
	}
	return nil
}
