// Package registry is service registration and discovery on ZooKeeper in
// curator-x-discovery's format: instances are JSON ServiceInstance nodes at
// <base>/<service>/<id>, readable by Java services using Curator's
// ServiceDiscovery and the other way round.
//
// A Registration of an ephemeral (Dynamic) instance comes back by itself
// after its session expires, with its latest Update, and is restored if
// someone else deletes it. A Cache follows one service's instances through
// watches, resyncs after a reconnect or a new session so no change is
// missed, and skips (and reports) nodes whose data is not an instance. A
// Provider picks instances from a cache: round-robin, random or sticky,
// with filters and a down-list for instances that failed.
package registry

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/zkrecipes/zkrecipes/recipes"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// ErrUnregistered is returned by Update and Unregister after Unregister.
var ErrUnregistered = errors.New("registry: unregistered")

// Option configures a Registry.
type Option func(*options)

type options struct {
	tp          trace.TracerProvider
	mp          metric.MeterProvider
	concurrency int
}

// WithTracerProvider sets the tracer provider (default: the session's).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(o *options) { o.tp = tp } }

// WithMeterProvider sets the meter provider (default: the session's).
func WithMeterProvider(mp metric.MeterProvider) Option { return func(o *options) { o.mp = mp } }

// WithConcurrency bounds how many registrations are re-created at once on
// a new session (default 1024).
func WithConcurrency(n int) Option { return func(o *options) { o.concurrency = n } }

// Registry registers and discovers service instances under a base path.
type Registry struct {
	s    *resilience.Session
	base string
	opts options
	tel  *telemetry

	mu      sync.Mutex
	regs    map[*Registration]struct{}
	rebuild func()
	rebuilt chan struct{} // closed (and replaced) when a rebuild step ends
	// rebuiltFor is the session whose rebuild step last ended with every
	// registration written. It is set before rebuilt is closed.
	rebuiltFor int64
}

// New returns a registry under base (for example "/services"). It
// registers one rebuild step with the session, which re-creates every
// ephemeral registration after a new session; Close removes it.
func New(s *resilience.Session, base string, opts ...Option) (*Registry, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: nil session", ErrInvalidInstance)
	}
	if err := resilience.ValidatePath(base, false); err != nil {
		return nil, err
	}
	o := options{concurrency: 1024}
	for _, opt := range opts {
		opt(&o)
	}
	if o.concurrency <= 0 {
		o.concurrency = 1
	}
	tel, err := newTelemetry(s, &o)
	if err != nil {
		return nil, err
	}
	r := &Registry{s: s, base: base, opts: o, tel: tel, regs: make(map[*Registration]struct{}), rebuilt: make(chan struct{})}
	r.rebuild = s.OnNewSession("registry "+base, r.reregister)
	return r, nil
}

// Close stops re-registering this registry's instances on new sessions and
// stops restoring them. It does not unregister them: ephemeral ones go with
// the session.
func (r *Registry) Close() {
	r.rebuild()
	r.mu.Lock()
	regs := r.regs
	r.regs = map[*Registration]struct{}{}
	r.mu.Unlock()
	for reg := range regs {
		reg.stop()
	}
}

func (r *Registry) servicePath(name string) string { return path.Join(r.base, name) }

// Registration is one registered instance.
type Registration struct {
	r *Registry

	mu       sync.Mutex
	inst     Instance
	data     []byte
	gen      uint64 // bumped by every Update
	nodePath string // where the node is (sequential ids get a suffix)
	sid      int64  // the session the node was last created on
	done     bool   // Unregister was called: no more writes
	gone     bool   // Unregister removed the node

	// writing is held by one write (or Unregister) at a time, so that an
	// Update, a restore and a re-registration never create two nodes, and
	// Unregister deletes the node a write in flight has just made.
	writing chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Register publishes inst at <base>/<name>/<id> and returns its
// registration. An empty ServiceType means Dynamic; a zero
// RegistrationTimeUTC is set to now.
func (r *Registry) Register(ctx context.Context, inst Instance) (*Registration, error) {
	if err := inst.validate(); err != nil {
		return nil, err
	}
	if inst.RegistrationTimeUTC == 0 {
		inst.RegistrationTimeUTC = time.Now().UnixMilli()
	}
	data, err := inst.encode()
	if err != nil {
		return nil, err
	}
	ctx, span := r.tel.start(ctx, "zkrecipes.registry.register", inst)
	defer span.End()
	reg := &Registration{r: r, inst: inst, data: data, writing: make(chan struct{}, 1)}
	reg.ctx, reg.cancel = context.WithCancel(context.Background())
	if err := reg.write(ctx, true); err != nil {
		reg.cancel()
		span.RecordError(err)
		return nil, err
	}
	r.mu.Lock()
	r.regs[reg] = struct{}{}
	r.mu.Unlock()
	r.tel.registrations.Add(ctx, 1)
	if inst.ephemeral() {
		reg.wg.Add(1)
		go reg.guard()
	}
	return reg, nil
}

// Instance returns the registered instance as last written.
func (g *Registration) Instance() Instance {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inst
}

// Path returns the instance's node.
func (g *Registration) Path() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.nodePath
}

// Update replaces the registered instance (same name and id). The latest
// Update is what a re-registration after expiry publishes.
func (g *Registration) Update(ctx context.Context, inst Instance) error {
	if err := inst.validate(); err != nil {
		return err
	}
	g.mu.Lock()
	if g.done {
		g.mu.Unlock()
		return ErrUnregistered
	}
	if inst.Name != g.inst.Name || inst.ID != g.inst.ID || inst.ServiceType != g.inst.ServiceType {
		g.mu.Unlock()
		return fmt.Errorf("%w: Update cannot change name, id or service type", ErrInvalidInstance)
	}
	if inst.RegistrationTimeUTC == 0 {
		inst.RegistrationTimeUTC = g.inst.RegistrationTimeUTC
	}
	data, err := inst.encode()
	if err != nil {
		g.mu.Unlock()
		return err
	}
	g.inst, g.data = inst, data
	g.gen++
	g.mu.Unlock()
	return g.write(ctx, false)
}

// write makes the node hold the latest data: create it (createFirst) or
// set it, falling back to the other when the node is missing or already
// there, and go again if an Update came in meanwhile.
func (g *Registration) write(ctx context.Context, createFirst bool) error {
	if err := g.lockWrites(ctx); err != nil {
		return err
	}
	defer g.unlockWrites()
	s := g.r.s
	if g.sidIs(s.SessionID()) && g.Path() != "" {
		// An earlier write already made the node on this session (an
		// Update that beat the re-registration, say): set it, and create
		// only if it is gone, or a sequential instance would get a second
		// node.
		createFirst = false
	}
	for {
		g.mu.Lock()
		inst, data, gen, p, done := g.inst, g.data, g.gen, g.nodePath, g.done
		g.mu.Unlock()
		if done {
			return ErrUnregistered
		}
		var err error
		if p == "" || createFirst {
			sid := s.SessionID()
			p, err = g.create(ctx, inst, data)
			if errors.Is(err, zk.ErrNodeExists) {
				g.setPath(inst)
				if ok, st, xerr := s.Exists(ctx, g.Path()); xerr == nil && ok && inst.ephemeral() && st.EphemeralOwner != s.SessionID() {
					// Another session's node (an older registration of
					// this id): replace it, as Curator does.
					_ = s.Delete(ctx, g.Path(), -1)
					continue
				}
				// Ours (a concurrent write made it first): set our data.
				createFirst = false
				continue
			}
			if err == nil {
				g.mu.Lock()
				g.nodePath, g.sid = p, sid
				g.mu.Unlock()
			}
		} else {
			_, err = s.Set(ctx, p, data, -1)
			if errors.Is(err, zk.ErrNoNode) {
				createFirst = true
				continue
			}
		}
		if err != nil {
			return err
		}
		g.mu.Lock()
		again := g.gen != gen
		g.mu.Unlock()
		if !again {
			return nil
		}
		createFirst = false
	}
}

func (g *Registration) setPath(inst Instance) {
	g.mu.Lock()
	if g.nodePath == "" {
		g.nodePath = path.Join(g.r.servicePath(inst.Name), inst.ID)
	}
	g.mu.Unlock()
}

func (g *Registration) create(ctx context.Context, inst Instance, data []byte) (string, error) {
	s := g.r.s
	p := path.Join(g.r.servicePath(inst.Name), inst.ID)
	var flags int32
	switch inst.ServiceType {
	case Dynamic:
		flags = zk.FlagEphemeral
	case DynamicSequential:
		return g.createSequential(ctx, inst, data)
	}
	created, err := s.Create(ctx, p, data, flags, nil)
	if errors.Is(err, zk.ErrNoNode) {
		if err = recipes.EnsurePath(ctx, s, g.r.servicePath(inst.Name)); err == nil {
			created, err = s.Create(ctx, p, data, flags, nil)
		}
	}
	return created, err
}

func (g *Registration) createSequential(ctx context.Context, inst Instance, data []byte) (string, error) {
	s := g.r.s
	parent := g.r.servicePath(inst.Name)
	// A sequential node's name is only known from the reply; the protected
	// prefix lets a lost reply be verified.
	created, err := s.CreateProtected(ctx, path.Join(parent, inst.ID), data, zk.FlagEphemeralSequential, nil)
	if errors.Is(err, zk.ErrNoNode) {
		if err = recipes.EnsurePath(ctx, s, parent); err == nil {
			created, err = s.CreateProtected(ctx, path.Join(parent, inst.ID), data, zk.FlagEphemeralSequential, nil)
		}
	}
	return created, err
}

// guard restores the node if someone else deletes it while the session
// lives; re-registration on a new session is the registry's rebuild step.
func (g *Registration) guard() {
	defer g.wg.Done()
	s := g.r.s
	for g.ctx.Err() == nil {
		// Read the rebuild's progress before our own session: a rebuild
		// marks us before it closes its channel, so a stale mark seen after
		// taking the channel means that close is still to come.
		g.r.mu.Lock()
		next, rebuiltFor := g.r.rebuilt, g.r.rebuiltFor
		g.r.mu.Unlock()
		sid := s.SessionID()
		if !g.sidIs(sid) {
			if sid != 0 && rebuiltFor == sid {
				// The rebuild for this session ran before Register had
				// listed us (our node was created on the session before):
				// create it here.
				if err := g.write(g.ctx, true); err != nil {
					select {
					case <-g.ctx.Done():
						return
					case <-time.After(100 * time.Millisecond):
					}
				}
				continue
			}
			// The node went with an older session: the registry's rebuild
			// step re-creates it. Wait for that instead of racing it.
			select {
			case <-next:
			case <-g.ctx.Done():
				return
			}
			continue
		}
		p := g.Path()
		ok, _, ch, err := s.ExistsW(g.ctx, p)
		if err != nil {
			if g.ctx.Err() != nil || errors.Is(err, resilience.ErrClosed) {
				return
			}
			select {
			case <-g.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if !ok && g.sidIs(s.SessionID()) {
			// Deleted by someone else while our session lives: restore it
			// (a sequential instance gets a new node, with a new name).
			if err := g.write(g.ctx, true); err == nil {
				g.r.tel.restored.Add(context.Background(), 1)
				s.Logger().Info("registry: restored a deleted registration", "path", g.Path())
			}
			continue
		}
		select {
		case <-ch:
		case <-g.ctx.Done():
			return
		}
	}
}

func (g *Registration) sidIs(sid int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sid == sid
}

func (g *Registration) stop() {
	g.cancel()
	g.wg.Wait()
}

func (g *Registration) lockWrites(ctx context.Context) error {
	select {
	case g.writing <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *Registration) unlockWrites() { <-g.writing }

// Unregister removes the instance and stops keeping it registered. It is
// not restored or re-registered afterwards. If removing the node fails (ctx
// ended, say), calling Unregister again retries it; once the node is gone it
// returns ErrUnregistered.
func (g *Registration) Unregister(ctx context.Context) error {
	g.mu.Lock()
	if g.gone {
		g.mu.Unlock()
		return ErrUnregistered
	}
	g.done = true
	g.mu.Unlock()
	g.stop()
	g.r.mu.Lock()
	delete(g.r.regs, g)
	g.r.mu.Unlock()
	// Wait for a write in flight (a re-registration, say) so that the node
	// it is creating is the one deleted.
	if err := g.lockWrites(ctx); err != nil {
		return err
	}
	defer g.unlockWrites()
	err := g.r.s.Delete(ctx, g.Path(), -1)
	if err == nil || errors.Is(err, zk.ErrNoNode) {
		g.mu.Lock()
		g.gone = true
		g.mu.Unlock()
		return nil
	}
	return err
}

// reregister is the rebuild step: after a new session, re-create every
// ephemeral registration with its latest data, many at once.
func (r *Registry) reregister(ctx context.Context) (err error) {
	sid := r.s.SessionID()
	defer func() {
		r.mu.Lock()
		if err == nil && ctx.Err() == nil {
			r.rebuiltFor = sid
		}
		close(r.rebuilt)
		r.rebuilt = make(chan struct{})
		r.mu.Unlock()
	}()
	r.mu.Lock()
	var regs []*Registration
	for g := range r.regs {
		if g.Instance().ephemeral() {
			regs = append(regs, g)
		}
	}
	r.mu.Unlock()
	if len(regs) == 0 {
		return nil
	}
	sem := make(chan struct{}, r.opts.concurrency)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, g := range regs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := g.write(ctx, true); err != nil && !errors.Is(err, ErrUnregistered) {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", g.Path(), err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.tel.reregistered.Add(context.Background(), int64(len(regs)-len(errs)))
	return errors.Join(errs...)
}
