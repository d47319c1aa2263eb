package registry

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/recipes"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// Services returns the names of the services under the registry's base.
func (r *Registry) Services(ctx context.Context) ([]string, error) {
	names, _, err := r.s.Children(ctx, r.base)
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	sort.Strings(names)
	return names, err
}

// Instances reads the instances of service once. Nodes whose data is not an
// instance are skipped (and logged).
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
				out[i].in, err = Decode(data)
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

func (r *Registry) checkService(service string) (string, error) {
	if service == "" || service == "." || service == ".." || containsAny(service, "/\x00") {
		return "", fmt.Errorf("%w: service name %q", ErrInvalidInstance, service)
	}
	p := r.servicePath(service)
	return p, resilience.ValidatePath(p, false)
}

func containsAny(s, chars string) bool {
	for _, c := range chars {
		for _, d := range s {
			if c == d {
				return true
			}
		}
	}
	return false
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
	// Malformed: a node's data is not an instance; it is skipped (Err says
	// why). Reported once per change of the node.
	Malformed
)

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
	Type     EventType
	Node     string   // the node's name under the service
	Instance Instance // the new instance (Added, Updated) or the last one seen (Removed)
	Err      error    // for Malformed
}

// Cache follows one service's instances through watches. Reads are cheap
// and safe for concurrent use. After a reconnect or a new session it reads
// the whole service again, so it converges on the ensemble's state without
// missing a change; events describe the differences it saw.
type Cache struct {
	r       *Registry
	service string
	parent  string

	snap atomic.Pointer[[]Instance]

	mu    sync.Mutex
	full  bool                // read everything again
	kids  bool                // the children changed
	dirty map[string]struct{} // nodes whose data changed
	wake  chan struct{}
	feed  *recipes.Feed[Event]

	watched   map[string]bool // data watches set and not yet fired
	kidsWatch bool            // the children watch is set and not yet fired

	// Owned by the loop (and NewCache before it).
	nodes map[string]Instance
	bad   map[string]bool

	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	unlisten func()
}

// NewCache loads service's instances and keeps following them until Close.
// The initial instances are reported as Added events.
func (r *Registry) NewCache(ctx context.Context, service string) (*Cache, error) {
	p, err := r.checkService(service)
	if err != nil {
		return nil, err
	}
	c := &Cache{
		r: r, service: service, parent: p,
		dirty: map[string]struct{}{}, wake: make(chan struct{}, 1), feed: recipes.NewFeed[Event](),
		nodes: map[string]Instance{}, bad: map[string]bool{}, watched: map[string]bool{},
	}
	empty := []Instance{}
	c.snap.Store(&empty)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if err := c.sync(ctx, true); err != nil {
		c.cancel()
		c.wg.Wait()
		return nil, err
	}
	c.unlisten = r.s.AddListener(func(t resilience.Transition) {
		if t.To == resilience.Reconnected || t.To == resilience.Connected {
			c.mu.Lock()
			c.full = true
			c.mu.Unlock()
			c.poke()
		}
	})
	c.wg.Add(2)
	go c.loop()
	go func() {
		defer c.wg.Done()
		c.feed.Run(c.ctx)
	}()
	return c, nil
}

// Instances returns the cached instances, ordered by id.
func (c *Cache) Instances() []Instance {
	return append([]Instance(nil), (*c.snap.Load())...)
}

// Events returns the channel of changes. Events queue up for a slow reader;
// the channel is closed by Close.
func (c *Cache) Events() <-chan Event { return c.feed.C() }

// Close stops following the service and closes the Events channel.
func (c *Cache) Close() {
	if c.unlisten != nil {
		c.unlisten()
	}
	c.cancel()
	c.wg.Wait()
}

func (c *Cache) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Cache) loop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.wake:
		}
		c.mu.Lock()
		full, kids, dirty := c.full, c.kids, c.dirty
		c.full, c.kids, c.dirty = false, false, map[string]struct{}{}
		c.mu.Unlock()
		var err error
		if full || kids {
			err = c.sync(c.ctx, full)
		}
		for n := range dirty {
			if err == nil {
				err = c.reread(c.ctx, n)
			}
		}
		if err != nil && c.ctx.Err() == nil {
			// Try again in full once the session allows it.
			c.r.s.Logger().Warn("registry: cache refresh failed; will resync", "service", c.service, "error", err)
			c.mu.Lock()
			c.full = true
			c.mu.Unlock()
			if errors.Is(err, resilience.ErrClosed) {
				return
			}
			c.poke()
		}
	}
}

// sync reads the children and the data of every new node (every node when
// full), and reports the differences.
func (c *Cache) sync(ctx context.Context, full bool) error {
	if full {
		c.r.tel.resyncs.Add(ctx, 1)
	}
	var names []string
	var err error
	if c.isWatched("") {
		names, _, err = c.r.s.Children(ctx, c.parent)
	} else {
		var ch <-chan zk.Event
		names, _, ch, err = c.r.s.ChildrenW(ctx, c.parent)
		if errors.Is(err, zk.ErrNoNode) {
			// No instance yet: watch for the service node to appear.
			var ok bool
			ok, _, ch, err = c.r.s.ExistsW(ctx, c.parent)
			if err == nil && ok {
				c.arm(ch, "")
				return c.sync(ctx, full)
			}
		}
		if err == nil {
			c.arm(ch, "")
		}
	}
	if err != nil {
		return err
	}
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		seen[n] = true
		_, known := c.nodes[n]
		if (known || c.bad[n]) && !full && c.isWatched(n) {
			continue
		}
		if err := c.reread(ctx, n); err != nil {
			return err
		}
	}
	for n, in := range c.nodes {
		if !seen[n] {
			delete(c.nodes, n)
			c.emit(Event{Type: Removed, Node: n, Instance: in})
		}
	}
	for n := range c.bad {
		if !seen[n] {
			delete(c.bad, n)
		}
	}
	c.publish()
	return nil
}

// reread reads one node's data (watching it) and reports what changed.
func (c *Cache) reread(ctx context.Context, n string) error {
	p := path.Join(c.parent, n)
	var data []byte
	var err error
	if c.isWatched(n) {
		data, _, err = c.r.s.Get(ctx, p)
	} else {
		var ch <-chan zk.Event
		data, _, ch, err = c.r.s.GetW(ctx, p)
		if err == nil {
			c.arm(ch, n)
		}
	}
	if errors.Is(err, zk.ErrNoNode) {
		if in, ok := c.nodes[n]; ok {
			delete(c.nodes, n)
			c.emit(Event{Type: Removed, Node: n, Instance: in})
			c.publish()
		}
		delete(c.bad, n)
		return nil
	}
	if err != nil {
		return err
	}
	in, derr := Decode(data)
	old, known := c.nodes[n]
	switch {
	case derr != nil:
		if known {
			delete(c.nodes, n)
			c.emit(Event{Type: Removed, Node: n, Instance: old})
		}
		if !c.bad[n] {
			c.bad[n] = true
			c.r.tel.malformed.Add(ctx, 1)
			c.r.s.Logger().Warn("registry: skipping a node that is not an instance", "path", p, "error", derr)
			c.emit(Event{Type: Malformed, Node: n, Err: derr})
		}
	case !known:
		delete(c.bad, n)
		c.nodes[n] = in
		c.emit(Event{Type: Added, Node: n, Instance: in})
	case !sameInstance(old, in):
		c.nodes[n] = in
		c.emit(Event{Type: Updated, Node: n, Instance: in})
	}
	c.publish()
	return nil
}

func sameInstance(a, b Instance) bool {
	ea, _ := a.encode()
	eb, _ := b.encode()
	return string(ea) == string(eb)
}

// arm waits for one watch in the background: node "" is the children
// watch. A fired watch marks what to read again and wakes the loop.
func (c *Cache) arm(ch <-chan zk.Event, n string) {
	c.mu.Lock()
	if n == "" {
		c.kidsWatch = true
	} else {
		c.watched[n] = true
	}
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		select {
		case ev := <-ch:
			c.mu.Lock()
			if n == "" {
				c.kidsWatch = false
			} else {
				delete(c.watched, n)
			}
			switch {
			case ev.Type == zk.EventNotWatching:
				c.full = true
			case n == "":
				c.kids = true
			default:
				c.dirty[n] = struct{}{}
			}
			c.mu.Unlock()
			c.poke()
		case <-c.ctx.Done():
		}
	}()
}

func (c *Cache) isWatched(n string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n == "" {
		return c.kidsWatch
	}
	return c.watched[n]
}

func (c *Cache) publish() {
	list := make([]Instance, 0, len(c.nodes))
	for _, in := range c.nodes {
		list = append(list, in)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	c.snap.Store(&list)
	c.r.tel.cacheSize.Record(context.Background(), int64(len(list)))
}

func (c *Cache) emit(e Event) { c.feed.Push(e) }
