package cache

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/go-zookeeper/zk"
	"go.opentelemetry.io/otel/trace"

	"github.com/zkrecipes/zkrecipes/internal/feed"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// EventType says what happened to a node of a Tree.
type EventType int

// Tree cache events.
const (
	// NodeAdded: a node appeared (or was found by the initial load).
	NodeAdded EventType = iota + 1
	// NodeUpdated: a node's data changed (or it was deleted and created
	// again between two reads).
	NodeUpdated
	// NodeRemoved: a node went away.
	NodeRemoved
	// Initialized: the initial load is complete; sent once, after the
	// NodeAdded events of the nodes found then.
	Initialized
)

// String returns the event type's name: added, updated, removed or
// initialized.
func (t EventType) String() string {
	switch t {
	case NodeAdded:
		return "added"
	case NodeUpdated:
		return "updated"
	case NodeRemoved:
		return "removed"
	case Initialized:
		return "initialized"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Entry is a cached node: its data and stat as last read.
type Entry struct {
	Path string  // the node's full path
	Data []byte  // its data
	Stat zk.Stat // its stat, read with the data
}

// Event is one change seen by a Tree. Node is the node's new
// state (NodeAdded, NodeUpdated) or its last known one (NodeRemoved).
type Event struct {
	Type EventType
	Node Entry // empty for Initialized
}

// Option configures a Tree.
type Option func(*treeOptions)

type treeOptions struct {
	maxDepth    int // -1: no limit
	depthSet    bool
	concurrency int
}

const defaultConcurrency = 512

// validate reports the first bad option value.
func (o treeOptions) validate() error {
	if o.depthSet && o.maxDepth < 0 {
		return fmt.Errorf("%w: WithMaxDepth(%d): depth must be 0 or more (leave the option out for no limit)", ErrInvalidOption, o.maxDepth)
	}
	if o.concurrency < 1 {
		return fmt.Errorf("%w: WithConcurrency(%d): need at least 1 read in flight", ErrInvalidOption, o.concurrency)
	}
	return nil
}

// WithMaxDepth limits the cache to nodes at most depth levels below the
// root (0: the root alone). Default: no limit. A negative depth makes
// NewTree fail with ErrInvalidOption.
func WithMaxDepth(depth int) Option {
	return func(o *treeOptions) { o.maxDepth, o.depthSet = depth, true }
}

// WithConcurrency bounds the reads in flight while the cache loads or
// reloads the subtree (default 512). A value below 1 makes NewTree
// fail with ErrInvalidOption.
func WithConcurrency(n int) Option {
	return func(o *treeOptions) { o.concurrency = n }
}

// Tree keeps a copy of a subtree, following it with watches: an
// initial load, then NodeAdded, NodeUpdated and NodeRemoved events. After a
// reconnect and after a new session it reads the whole subtree again and
// reports only real differences, so it converges on the ensemble's state
// without duplicate or missing events. Reads take a shared lock. All watch
// events arrive through one session listener: a cache of many nodes costs
// no goroutine per node.
type Tree struct {
	s    *resilience.Session
	root string
	opts treeOptions

	mu    sync.RWMutex
	nodes map[string]*treeEntry

	wmu       sync.Mutex
	dataW     map[string]watchMark // data watches set (or being set) and not yet fired
	kidsW     map[string]watchMark // child watches likewise
	markSeq   uint64
	full      bool
	dirtyData map[string]bool
	dirtyKids map[string]bool
	wake      chan struct{}

	feed     *feed.Feed[Event]
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	unlisten []func()

	closeMu sync.Mutex
	closed  bool
}

// watchMark records a watch on one session. It is put down before the
// request that sets the watch is sent, so that a watch event arriving before
// that request's reply (which deletes the mark) is not overwritten by it.
type watchMark struct {
	sid int64
	seq uint64
}

type treeEntry struct {
	data []byte
	stat zk.Stat
	kids map[string]struct{}
}

// NewTree loads the subtree at root and follows it until Close. A
// missing root is watched for and loaded when it appears. It rejects a nil
// session and an invalid root with an error wrapping ErrInvalidArgument,
// and a bad option value with one wrapping ErrInvalidOption.
func NewTree(ctx context.Context, s *resilience.Session, root string, opts ...Option) (*Tree, error) {
	if err := checkPath(root); err != nil {
		return nil, err
	}
	o := treeOptions{maxDepth: -1, concurrency: defaultConcurrency}
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := checkSession(s); err != nil {
		return nil, err
	}
	c := &Tree{
		s: s, root: root, opts: o,
		nodes: map[string]*treeEntry{},
		dataW: map[string]watchMark{}, kidsW: map[string]watchMark{},
		dirtyData: map[string]bool{}, dirtyKids: map[string]bool{},
		wake: make(chan struct{}, 1), feed: feed.NewFeed[Event](),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.unlisten = append(c.unlisten, s.AddNodeListener(c.onNodeEvent))
	if err := traced(ctx, s, spanTreeLoad, root, c.loadAll); err != nil {
		_ = c.Close()
		return nil, err
	}
	c.feed.Push(Event{Type: Initialized})
	c.unlisten = append(c.unlisten, s.AddListener(func(t resilience.Transition) {
		if t.To == resilience.Reconnected || t.To == resilience.Connected {
			c.wmu.Lock()
			c.full = true
			c.wmu.Unlock()
			c.poke()
		}
	}))
	c.wg.Add(2)
	go c.loop()
	go func() {
		defer c.wg.Done()
		c.feed.Run(c.ctx)
	}()
	return c, nil
}

// Get returns the cached node at p. After Close it answers from the cache
// as it was then, as do Children, Len and Snapshot.
func (c *Tree) Get(p string) (Entry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.nodes[p]
	if !ok {
		return Entry{}, false
	}
	return Entry{Path: p, Data: e.data, Stat: e.stat}, true
}

// Children returns the cached children names of p, sorted.
func (c *Tree) Children(p string) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.nodes[p]
	if !ok {
		return nil
	}
	out := make([]string, 0, len(e.kids))
	for k := range e.kids {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Len returns the number of cached nodes.
func (c *Tree) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.nodes)
}

// Snapshot returns a copy of every cached node, by path.
func (c *Tree) Snapshot() map[string]Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]Entry, len(c.nodes))
	for p, e := range c.nodes {
		out[p] = Entry{Path: p, Data: e.data, Stat: e.stat}
	}
	return out
}

// Events returns the cache's one channel of changes, in the order they
// were applied (the same channel on every call). Events queue up for a
// slow reader; the channel is closed by Close.
func (c *Tree) Events() <-chan Event { return c.feed.C() }

// Close stops following the subtree and closes the Events channel. It
// makes no request, so it returns at once; a second Close returns
// ErrClosed.
func (c *Tree) Close() error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.closed = true
	for _, f := range c.unlisten {
		f()
	}
	c.cancel()
	c.wg.Wait()
	return nil
}

func (c *Tree) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Tree) within(p string) bool {
	return p == c.root || c.root == "/" || strings.HasPrefix(p, c.root+"/")
}

// onNodeEvent runs on the session's node-event goroutine: it only notes
// which watch fired and what to read again.
func (c *Tree) onNodeEvent(ev zk.Event) {
	if !c.within(ev.Path) {
		return
	}
	c.wmu.Lock()
	switch ev.Type {
	case zk.EventNodeDataChanged:
		delete(c.dataW, ev.Path)
		c.dirtyData[ev.Path] = true
	case zk.EventNodeChildrenChanged:
		delete(c.kidsW, ev.Path)
		c.dirtyKids[ev.Path] = true
	case zk.EventNodeDeleted:
		delete(c.dataW, ev.Path)
		delete(c.kidsW, ev.Path)
		c.dirtyData[ev.Path] = true
	case zk.EventNodeCreated:
		delete(c.dataW, ev.Path)
		c.dirtyData[ev.Path] = true
		c.dirtyKids[ev.Path] = true
	case zk.EventNotWatching:
		delete(c.dataW, ev.Path)
		delete(c.kidsW, ev.Path)
		c.full = true
	}
	c.wmu.Unlock()
	c.poke()
}

func (c *Tree) loop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.wake:
		}
		c.wmu.Lock()
		full, data, kids := c.full, c.dirtyData, c.dirtyKids
		c.full, c.dirtyData, c.dirtyKids = false, map[string]bool{}, map[string]bool{}
		c.wmu.Unlock()
		var err error
		if full {
			err = traced(c.ctx, c.s, spanTreeResync, c.root, c.loadAll)
		} else {
			var paths []string
			for p := range data {
				paths = append(paths, p)
			}
			for p := range kids {
				if !data[p] {
					paths = append(paths, p)
				}
			}
			err = c.load(c.ctx, paths, false)
		}
		if err != nil && c.ctx.Err() == nil {
			if errors.Is(err, resilience.ErrClosed) {
				return
			}
			c.s.Logger().Warn("recipes: tree cache refresh failed; will resync", "root", c.root, "error", err)
			c.wmu.Lock()
			c.full = true
			c.wmu.Unlock()
			c.poke()
		}
	}
}

// loadAll reads the whole subtree, recording on ctx's span how many nodes
// are cached then.
func (c *Tree) loadAll(ctx context.Context) error {
	err := c.load(ctx, []string{c.root}, true)
	trace.SpanFromContext(ctx).SetAttributes(keyTreeCacheNodes.Int(c.Len()))
	return err
}

func (c *Tree) depth(p string) int {
	if p == c.root {
		return 0
	}
	rel := strings.TrimPrefix(p, c.root)
	return strings.Count(rel, "/")
}

type readResult struct {
	p      string
	exists bool
	data   []byte
	stat   zk.Stat
	kids   []string
	listed bool
	err    error
}

// load reads the given nodes (data and children) and, level by level, every
// node below them that is new (or every node, when full), with many reads
// in flight; then it applies what it read and reports the differences.
func (c *Tree) load(ctx context.Context, paths []string, full bool) error {
	level := paths
	for len(level) > 0 {
		results := make([]readResult, len(level))
		sem := make(chan struct{}, c.opts.concurrency)
		var wg sync.WaitGroup
		for i, p := range level {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				results[i] = c.read(ctx, p)
			}()
		}
		wg.Wait()
		var next []string
		for _, r := range results {
			if r.err != nil {
				return r.err
			}
			next = append(next, c.apply(r, full)...)
		}
		level = next
	}
	return nil
}

// read fetches one node's data and children, setting the watches that are
// not already set.
func (c *Tree) read(ctx context.Context, p string) readResult {
	r := readResult{p: p}
	// A watch counts only on the session it was set on: a new session has
	// none of the old one's.
	sid := c.s.SessionID()
	c.wmu.Lock()
	dm, km := c.dataW[p], c.kidsW[p]
	needData, needKids := dm.sid != sid || sid == 0, km.sid != sid || sid == 0
	var dseq, kseq uint64
	if needData {
		c.markSeq++
		dseq = c.markSeq
		c.dataW[p] = watchMark{sid, dseq}
	}
	if needKids {
		c.markSeq++
		kseq = c.markSeq
		c.kidsW[p] = watchMark{sid, kseq}
	}
	c.wmu.Unlock()
	unmark := func(m map[string]watchMark, seq uint64) {
		c.wmu.Lock()
		if m[p].seq == seq {
			delete(m, p)
		}
		c.wmu.Unlock()
	}
	var err error
	if needData {
		r.data, r.stat, err = getW(ctx, c.s, p)
		if err != nil {
			unmark(c.dataW, dseq)
		}
	} else {
		var st *zk.Stat
		if r.data, st, err = c.s.Get(ctx, p); err == nil {
			r.stat = *st
		}
	}
	switch {
	case errors.Is(err, zk.ErrNoNode):
		if needKids {
			unmark(c.kidsW, kseq)
		}
		if p == c.root {
			// Watch for the root to appear.
			ok, _, _, err := c.s.ExistsW(ctx, p)
			if err == nil && ok {
				c.wmu.Lock()
				c.dirtyData[p], c.dirtyKids[p] = true, true
				c.wmu.Unlock()
				c.poke()
			}
			if err != nil {
				r.err = err
			}
		}
		return r
	case err != nil:
		if needKids {
			unmark(c.kidsW, kseq)
		}
		r.err = err
		return r
	}
	r.exists = true
	if c.opts.maxDepth >= 0 && c.depth(p) >= c.opts.maxDepth {
		if needKids {
			unmark(c.kidsW, kseq)
		}
		return r
	}
	if needKids {
		r.kids, _, _, err = c.s.ChildrenW(ctx, p)
		if err != nil {
			unmark(c.kidsW, kseq)
		}
	} else {
		r.kids, _, err = c.s.Children(ctx, p)
	}
	switch {
	case errors.Is(err, zk.ErrNoNode):
		r.exists = false
		return r
	case err != nil:
		r.err = err
		return r
	}
	r.listed = true
	return r
}

func getW(ctx context.Context, s *resilience.Session, p string) ([]byte, zk.Stat, error) {
	data, st, _, err := s.GetW(ctx, p)
	if err != nil {
		return nil, zk.Stat{}, err
	}
	return data, *st, nil
}

// apply records one read and returns the children to read next.
func (c *Tree) apply(r readResult, full bool) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, known := c.nodes[r.p]
	if !r.exists {
		if known {
			c.removeLocked(r.p)
			if r.p != c.root {
				// The parent's listing in this same round may still show
				// the node (deleted and created again between the two
				// reads): list the parent once more.
				c.wmu.Lock()
				c.dirtyKids[path.Dir(r.p)] = true
				c.wmu.Unlock()
				c.poke()
			}
		}
		return nil
	}
	e := &treeEntry{data: r.data, stat: r.stat, kids: map[string]struct{}{}}
	if known {
		e.kids = old.kids
	}
	c.nodes[r.p] = e
	node := Entry{Path: r.p, Data: r.data, Stat: r.stat}
	switch {
	case !known:
		c.feed.Push(Event{Type: NodeAdded, Node: node})
		if parent := path.Dir(r.p); r.p != c.root {
			if pe, ok := c.nodes[parent]; ok {
				pe.kids[path.Base(r.p)] = struct{}{}
			}
		}
	case old.stat.Mzxid != r.stat.Mzxid || old.stat.Czxid != r.stat.Czxid:
		c.feed.Push(Event{Type: NodeUpdated, Node: node})
	}
	if !r.listed {
		return nil
	}
	var next []string
	seen := make(map[string]struct{}, len(r.kids))
	for _, k := range r.kids {
		seen[k] = struct{}{}
		cp := path.Join(r.p, k)
		if _, have := c.nodes[cp]; !have || full {
			next = append(next, cp)
		}
	}
	for k := range e.kids {
		if _, still := seen[k]; !still {
			c.removeLocked(path.Join(r.p, k))
		}
	}
	e.kids = seen
	return next
}

// removeLocked drops p and everything below it, reporting each removal
// (children before their parent).
func (c *Tree) removeLocked(p string) {
	e, ok := c.nodes[p]
	if !ok {
		return
	}
	for k := range e.kids {
		c.removeLocked(path.Join(p, k))
	}
	delete(c.nodes, p)
	if pe, ok := c.nodes[path.Dir(p)]; ok && p != c.root {
		delete(pe.kids, path.Base(p))
	}
	c.feed.Push(Event{Type: NodeRemoved, Node: Entry{Path: p, Data: e.data, Stat: e.stat}})
}

// Node follows a single node: a Tree of depth 0, whose methods
// (Events, Close, ...) it has.
type Node struct {
	*Tree
}

// NewNode loads the node at p and follows it until Close (a missing
// node is watched for). It rejects a nil session and an invalid path with
// an error wrapping ErrInvalidArgument.
func NewNode(ctx context.Context, s *resilience.Session, p string) (*Node, error) {
	tc, err := NewTree(ctx, s, p, WithMaxDepth(0))
	if err != nil {
		return nil, err
	}
	return &Node{tc}, nil
}

// Entry returns the node as last read, and whether it exists.
func (n *Node) Entry() (Entry, bool) { return n.Get(n.root) }
