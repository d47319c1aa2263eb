// Package registry is service registration and discovery on ZooKeeper in
// curator-x-discovery's format: instances are JSON ServiceInstance nodes at
// <base>/<service>/<id>, readable by Java services using Curator's
// ServiceDiscovery and the other way round.
//
// A Registration of an ephemeral (Dynamic) instance comes back by itself
// after its session expires, with its latest Update, and is restored if
// someone else deletes it. A Cache follows one service's instances through
// watches, resyncs after a reconnect or a new session so no change is
// missed, and skips (and reports) nodes whose data is not an instance, or
// whose name and id disagree with their path. A Provider picks instances
// from a cache: round-robin, random or sticky, with filters and a down-list
// for instances that failed.
//
// # One node per id
//
// A registration never deletes or overwrites another client's node.
// Unlike Curator, which deletes whatever node is at the path, Register
// fails with an error wrapping ErrIDInUse (an *IDInUseError naming the path
// and the node's owner session) when the path holds a node of another live
// session, a persistent node (such as a Static instance Curator
// registered), or a node another Registration of the same Session holds.
// The only node it replaces is an ephemeral one left by an earlier session
// of its own Session (one that session established before it was lost),
// which it deletes and creates again at once. Two live registrants of one
// id therefore never take the node from each other: the first keeps it and
// the second is told.
//
// A Registration whose node is replaced by another session's node (someone
// deleted it and another client registered the id) does not fight for it:
// it stops keeping itself registered, closes Done, and Err, Update and
// later restores return the *IDInUseError. An instance that restarts with
// the same id (a rolling restart with ID = hostname) gets ErrIDInUse until
// the old process's node is gone: at once if the old process closes its
// session, else when its session expires. RegisterWait waits for that and
// registers then.
//
// # Lost requests and replies
//
// A registration knows its node (path, creation zxid and, for an ephemeral
// instance, owner session) and acts only on that node, so a write retried
// after a lost request or reply never lands on someone else's node. An
// ephemeral node it has just created is known by its path and owner: the
// session its create was bound to (this client's, so by the claim on the
// path this registration's). Its creation zxid is learned without another
// round trip, from the guard's first watch read or from the read the next
// Update or Unregister makes anyway; until then a node at the path of
// another owner is not its own.
//
//   - Register (and re-registration after a new session, and the restore
//     of a deleted node): after an outcome the Session cannot prove (an
//     error wrapping resilience.ErrOutcomeUnknown) the registry looks at
//     the path. An ephemeral node of this session there is its own and is
//     made to hold its data; no node means none of its own survives, and
//     it creates one (as it restores a deleted registration); another
//     session's node gives ErrIDInUse. A persistent (Static, Permanent)
//     node cannot be told apart from another client's with equal data, so
//     Register of a persistent instance returns the error wrapping
//     ErrOutcomeUnknown: look at the node before registering again.
//   - Update reads its node and writes it conditionally on its version.
//     After an unproved write it reads the node again: its own node
//     holding its data means done; its own node holding other data (a
//     later write by another client) gives the error wrapping
//     ErrOutcomeUnknown and is left alone; a missing node is created again;
//     a node created by someone else gives ErrIDInUse.
//   - Unregister deletes its node conditionally on its version; a node at
//     the path that it did not create is left alone. An unproved delete
//     means its node is gone (resilience.Session.Delete's rule), so
//     Unregister returns nil.
//
// ZooKeeper cannot make a write conditional on a node's creation zxid:
// between the registration's read of its node and its versioned write,
// another client deleting the node and creating one at the same version
// could still be written; the registration syncs its server before the
// read to keep that window to one round trip.
//
// # Errors, options and Close
//
// Bad arguments (a nil session or cache, an invalid base path or service
// name) give errors wrapping ErrInvalidArgument, invalid paths also
// resilience.ErrInvalidPath; bad option values (WithConcurrency(0),
// WithDownPolicy(0, 2), ...) make New or NewProvider fail with an error
// wrapping ErrInvalidOption. Registry.Close and Cache.Close return an
// error; afterwards the registry's calls, its registrations' Update and
// Unregister, and a Provider over a closed cache return ErrClosed.
//
// # Telemetry
//
// Spans (children of the caller's context's span):
// zkrecipes.registry.register, zkrecipes.registry.update,
// zkrecipes.registry.unregister and zkrecipes.registry.cache.load, each
// with zkrecipes.outcome (and error.type for a failure); and
// zkrecipes.registry.registration, from a successful Register until the
// registration ends, with zkrecipes.end: released (Unregister, the
// Registry's Close) or lost (another session's node took the path;
// error.type id_in_use). Their attributes: zkrecipes.registry.service,
// zkrecipes.registry.id, zkrecipes.registry.service_type, zkrecipes.path
// (the node) and, on a cache load, zkrecipes.registry.instances.
//
// Metrics: zkrecipes.registry.register.duration (s, by zkrecipes.outcome
// and error.type), zkrecipes.registry.registration.duration (s, by
// zkrecipes.end), zkrecipes.registry.registered (registrations kept, by
// service), zkrecipes.registry.reregistrations (after a new session, by
// zkrecipes.outcome and error.type), zkrecipes.registry.restorations
// (after someone deleted a node, by service), zkrecipes.registry.cache.size
// (gauge, by service) and zkrecipes.registry.cache.malformed (by service).
package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/zkrecipes/zkrecipes/internal/otelx"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// ErrUnregistered is returned by Update and Unregister after Unregister.
var ErrUnregistered = errors.New("registry: unregistered")

// ErrClosed is returned by a Registry's methods after its Close (and by a
// Cache's Close the second time); a Registration's Err, Update and
// Unregister return it after its Registry's Close.
var ErrClosed = errors.New("registry: closed")

// ErrInvalidArgument is wrapped by the error for a bad argument: a nil
// session or cache, or a base path or service name that is not a valid
// path (that error also wraps resilience.ErrInvalidPath).
var ErrInvalidArgument = errors.New("registry: invalid argument")

// ErrInvalidOption is wrapped by the error New or NewProvider returns for
// an option given a value out of its range.
var ErrInvalidOption = errors.New("registry: invalid option")

// ErrIDInUse means an instance's path holds a node this registration did
// not create and may not replace. Errors wrapping it are *IDInUseError.
var ErrIDInUse = errors.New("registry: instance id in use")

// IDInUseError says whose node holds an instance's path.
type IDInUseError struct {
	// Path is the instance's node path.
	Path string
	// Owner is the session owning the node (0 for a persistent node).
	Owner int64
	// Czxid is the node's creation zxid (0 when another Registration of
	// the same Session holds the path: it may not have a node yet).
	Czxid int64
	// Local is true when the holder is another Registration through the
	// same Session.
	Local bool
}

// Error says whose node holds the path.
func (e *IDInUseError) Error() string {
	switch {
	case e.Local:
		return fmt.Sprintf("%v: %s is held by another registration through the same session 0x%x", ErrIDInUse, e.Path, e.Owner)
	case e.Owner == 0:
		return fmt.Sprintf("%v: %s is a persistent node this registration did not create (czxid 0x%x)", ErrIDInUse, e.Path, e.Czxid)
	}
	return fmt.Sprintf("%v: %s is an ephemeral node of live session 0x%x (czxid 0x%x)", ErrIDInUse, e.Path, e.Owner, e.Czxid)
}

// Unwrap makes errors.Is(err, ErrIDInUse) true.
func (e *IDInUseError) Unwrap() error { return ErrIDInUse }

// Option configures a Registry.
type Option func(*options)

type options struct {
	tp          trace.TracerProvider
	mp          metric.MeterProvider
	concurrency int
	err         error // the first bad option value
}

func (o *options) invalid(format string, args ...any) {
	if o.err == nil {
		o.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
	}
}

// WithTracerProvider sets the tracer provider (default, or nil: the
// session's).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(o *options) { o.tp = tp } }

// WithMeterProvider sets the meter provider (default, or nil: the
// session's).
func WithMeterProvider(mp metric.MeterProvider) Option { return func(o *options) { o.mp = mp } }

// WithConcurrency bounds how many registrations are re-created at once on
// a new session (default 1024). n must be at least 1: New returns an
// error wrapping ErrInvalidOption otherwise.
func WithConcurrency(n int) Option {
	return func(o *options) {
		if n < 1 {
			o.invalid("WithConcurrency(%d): must be at least 1", n)
			return
		}
		o.concurrency = n
	}
}

// Registry registers and discovers service instances under a base path.
type Registry struct {
	s    *resilience.Session
	base string
	opts options
	tel  *telemetry

	mu      sync.Mutex
	closed  bool
	regs    map[*Registration]struct{}
	rebuild func()
	rebuilt chan struct{} // closed (and replaced) when a rebuild step ends
	// rebuiltFor is the session whose rebuild step last ended with every
	// registration written. It is set before rebuilt is closed.
	rebuiltFor int64

	// own holds every session id the Session has had since New (and those
	// registrations were created on): an ephemeral node owned by one of
	// them, other than the current one, was left by this client.
	ownMu    sync.Mutex
	own      map[int64]struct{}
	unlisten func()
}

// claims maps a Session and an instance path to the Registration holding
// it, so two registrations through one Session never share a node.
var claims = struct {
	sync.Mutex
	m map[claimKey]*Registration
}{m: map[claimKey]*Registration{}}

type claimKey struct {
	s *resilience.Session
	p string
}

// New returns a registry under base (for example "/services"). It
// registers one rebuild step with the session, which re-creates every
// ephemeral registration after a new session; Close removes it.
//
// A nil session gives an error wrapping ErrInvalidArgument; an invalid
// base path one wrapping both ErrInvalidArgument and
// resilience.ErrInvalidPath; a bad option value one wrapping
// ErrInvalidOption.
func New(s *resilience.Session, base string, opts ...Option) (*Registry, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: nil session", ErrInvalidArgument)
	}
	if err := resilience.ValidatePath(base, false); err != nil {
		return nil, fmt.Errorf("%w: base path: %w", ErrInvalidArgument, err)
	}
	o := options{concurrency: 1024}
	for _, opt := range opts {
		opt(&o)
	}
	if o.err != nil {
		return nil, o.err
	}
	tel, err := newTelemetry(s, &o)
	if err != nil {
		return nil, err
	}
	r := &Registry{s: s, base: base, opts: o, tel: tel, regs: make(map[*Registration]struct{}), rebuilt: make(chan struct{}),
		own: map[int64]struct{}{}}
	r.unlisten = s.AddListener(func(t resilience.Transition) {
		r.noteOwn(t.OldSessionID)
		r.noteOwn(t.SessionID)
	})
	r.noteOwn(s.SessionID())
	r.rebuild = s.OnNewSession("registry "+base, r.reregister)
	return r, nil
}

func (r *Registry) noteOwn(sid int64) {
	if sid == 0 {
		return
	}
	r.ownMu.Lock()
	r.own[sid] = struct{}{}
	r.ownMu.Unlock()
}

func (r *Registry) isOwn(sid int64) bool {
	if sid != 0 && sid == r.s.SessionID() {
		return true // the listener may not have seen it yet
	}
	r.ownMu.Lock()
	defer r.ownMu.Unlock()
	_, ok := r.own[sid]
	return ok
}

// Close stops re-registering this registry's instances on new sessions and
// stops restoring them. It does not unregister them (call Unregister
// first for that): ephemeral ones go with the session, persistent ones
// stay. Their Done channels are closed, and their Err, Update and
// Unregister return ErrClosed, as do the Registry's methods. Caches made
// by NewCache are not closed: each has its own Close. Close waits for the
// registrations' own goroutines only (no network wait), and returns
// ErrClosed if the registry is already closed.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.closed = true
	r.mu.Unlock()
	r.rebuild()
	r.unlisten()
	r.mu.Lock()
	regs := r.regs
	r.regs = map[*Registration]struct{}{}
	r.mu.Unlock()
	for reg := range regs {
		reg.close()
	}
	return nil
}

func (r *Registry) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// close ends a registration at its Registry's Close.
func (g *Registration) close() {
	g.stop()
	g.release()
	g.end(ErrClosed)
}

func (r *Registry) servicePath(name string) string { return path.Join(r.base, name) }

func (r *Registry) instancePath(inst Instance) string {
	return path.Join(r.servicePath(inst.Name), inst.ID)
}

// Registration is one registered instance.
type Registration struct {
	r *Registry

	mu       sync.Mutex
	inst     Instance
	data     []byte
	gen      uint64 // bumped by every Update
	nodePath string // where the node is (sequential ids get a suffix)
	sid      int64  // the session the node was last created on
	czxid    int64  // the node's creation zxid; 0 when it has none known
	// fresh: nodePath is an ephemeral node this registration created on
	// session sid, whose creation zxid has not been read yet (czxid is 0).
	// It is its own node while sid owns it.
	fresh bool
	known uint64 // bumped whenever what is known of the node changes
	done  bool   // Unregister was called: no more writes
	gone  bool   // Unregister removed the node
	ended chan struct{}
	err   error // why ended was closed
	claim *claimKey
	// finish ends the registration's span and records how it ended;
	// called once, by end.
	finish func(why error)

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
// RegistrationTimeUTC is set to now. If the path holds a node this
// registration may not replace (see the package documentation), it fails
// with an *IDInUseError (errors.Is(err, ErrIDInUse)) and changes nothing.
// An invalid instance gives an error wrapping ErrInvalidInstance; after
// Close, Register returns ErrClosed.
//
// Register runs in the span zkrecipes.registry.register, a child of ctx's;
// the registration, once made, has its own span
// zkrecipes.registry.registration (also a child of ctx's), which ends when
// the registration does.
func (r *Registry) Register(ctx context.Context, inst Instance) (*Registration, error) {
	verr := inst.validate() // also fills in the default service type
	return r.tel.registerSpan(ctx, inst, func(spanCtx context.Context) (*Registration, error) {
		if verr != nil {
			return nil, verr
		}
		return r.register(spanCtx, ctx, inst)
	})
}

// register is Register in its span's context ctx; the registration's own
// span is a child of the caller's context.
func (r *Registry) register(ctx, caller context.Context, inst Instance) (*Registration, error) {
	if r.isClosed() {
		return nil, ErrClosed
	}
	if inst.RegistrationTimeUTC == 0 {
		inst.RegistrationTimeUTC = time.Now().UnixMilli()
	}
	data, err := inst.encode()
	if err != nil {
		return nil, err
	}
	reg := &Registration{r: r, inst: inst, data: data, writing: make(chan struct{}, 1), ended: make(chan struct{})}
	reg.ctx, reg.cancel = context.WithCancel(context.Background())
	fail := func(err error) (*Registration, error) {
		reg.cancel()
		reg.release()
		return nil, err
	}
	if err := reg.takeClaim(); err != nil {
		return fail(err)
	}
	if err := reg.write(ctx); err != nil {
		return fail(err)
	}
	reg.finish = r.tel.registrationStarted(caller, inst, reg.Path())
	r.mu.Lock()
	if r.closed {
		// Close ran while the node was being written: Register came first,
		// and Close ends the registration.
		r.mu.Unlock()
		reg.close()
		return reg, nil
	}
	r.regs[reg] = struct{}{}
	r.mu.Unlock()
	if inst.ephemeral() {
		reg.wg.Add(1)
		go reg.guard()
	}
	return reg, nil
}

// RegisterWait is Register that, while the path holds another live
// session's ephemeral node (ErrIDInUse with a non-zero Owner, as during a
// rolling restart that reuses the id), waits for that node to go and then
// registers. It gives up when ctx ends, and returns at once any other
// error, including ErrIDInUse for a persistent node or one held through
// the same Session.
func (r *Registry) RegisterWait(ctx context.Context, inst Instance) (*Registration, error) {
	for {
		reg, err := r.Register(ctx, inst)
		var inUse *IDInUseError
		if !errors.As(err, &inUse) || inUse.Owner == 0 || inUse.Local {
			return reg, err
		}
		ok, st, ch, xerr := r.s.ExistsW(ctx, inUse.Path)
		if xerr != nil {
			return nil, xerr
		}
		if ok && st.Czxid == inUse.Czxid {
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
}

func (g *Registration) takeClaim() error {
	if g.inst.ServiceType == DynamicSequential {
		return nil // every node has a name of its own
	}
	k := claimKey{g.r.s, g.r.instancePath(g.inst)}
	claims.Lock()
	defer claims.Unlock()
	if _, held := claims.m[k]; held {
		return &IDInUseError{Path: k.p, Owner: g.r.s.SessionID(), Local: true}
	}
	claims.m[k] = g
	g.claim = &k
	return nil
}

// release gives up the registration's claim on its path.
func (g *Registration) release() {
	claims.Lock()
	defer claims.Unlock()
	if g.claim != nil && claims.m[*g.claim] == g {
		delete(claims.m, *g.claim)
	}
	g.claim = nil
}

// end ends the registration with err, once: it ends the registration's
// span and records its metrics, then closes Done (so a reader of Done
// finds them recorded).
func (g *Registration) end(err error) {
	g.mu.Lock()
	if g.err != nil {
		g.mu.Unlock()
		return
	}
	g.err = err
	finish := g.finish
	g.finish = nil
	g.mu.Unlock()
	if finish != nil {
		finish(err)
	}
	close(g.ended)
}

// Done is closed when the registration stops keeping its instance
// registered: after Unregister, after its Registry's Close, or when another
// session's node took its path (Err says which).
func (g *Registration) Done() <-chan struct{} { return g.ended }

// Err is nil while the registration is kept; after Done is closed it is
// ErrUnregistered, ErrClosed or the *IDInUseError that ended it.
func (g *Registration) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// lose ends a registration whose path another node took: it stops
// guarding and re-registering, and gives up its claim. The node there is
// left alone.
func (g *Registration) lose(err error) {
	g.forget()
	g.cancel()
	g.r.mu.Lock()
	delete(g.r.regs, g)
	g.r.mu.Unlock()
	g.release()
	g.end(err)
	g.r.s.Logger().Warn("registry: another session's node took this registration's path; not registering it any more", "error", err)
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
// Update is what a re-registration after expiry publishes. After a lost
// request or reply it returns nil only when its node holds the new data;
// see the package documentation for the other answers. It returns
// ErrUnregistered after Unregister, ErrClosed after the Registry's Close,
// and the *IDInUseError once another session's node took the path.
//
// Update runs in the span zkrecipes.registry.update, a child of ctx's.
func (g *Registration) Update(ctx context.Context, inst Instance) error {
	_, err := g.r.tel.traced(ctx, spanUpdate, g.Instance(), func(ctx context.Context) error { return g.update(ctx, inst) })
	return err
}

func (g *Registration) update(ctx context.Context, inst Instance) error {
	if err := inst.validate(); err != nil {
		return err
	}
	g.mu.Lock()
	if g.done {
		g.mu.Unlock()
		return ErrUnregistered
	}
	if lost, ok := g.err.(*IDInUseError); ok {
		g.mu.Unlock()
		return lost
	}
	if g.err == ErrClosed {
		g.mu.Unlock()
		return ErrClosed
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
	return g.write(ctx)
}

// errGone says the registration's node is no longer there.
var errGone = errors.New("registry: node gone")

// write makes the registration's node hold the latest data: set its own
// node when it has one on the current session (or a persistent one), else
// create it; and go again if an Update came in meanwhile.
func (g *Registration) write(ctx context.Context) error {
	if err := g.lockWrites(ctx); err != nil {
		return err
	}
	defer g.unlockWrites()
	s := g.r.s
	for {
		g.mu.Lock()
		inst, data, gen, p, czxid, fresh, sid, done, lost := g.inst, g.data, g.gen, g.nodePath, g.czxid, g.fresh, g.sid, g.done, g.err
		g.mu.Unlock()
		if done {
			return ErrUnregistered
		}
		if lost, ok := lost.(*IDInUseError); ok {
			return lost
		}
		if lost == ErrClosed {
			return ErrClosed
		}
		var err error
		if (czxid != 0 || fresh) && (!inst.ephemeral() || sid == s.SessionID()) {
			owner := int64(0)
			if fresh {
				owner = sid
			}
			err = g.setNode(ctx, p, data, czxid, owner)
			if errors.Is(err, errGone) {
				g.forget()
				continue
			}
		} else {
			err = g.createNode(ctx, inst, data)
		}
		var inUse *IDInUseError
		if errors.As(err, &inUse) && g.registered() {
			g.lose(inUse)
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
	}
}

// registered reports whether Register has returned this registration.
func (g *Registration) registered() bool {
	g.r.mu.Lock()
	defer g.r.mu.Unlock()
	_, ok := g.r.regs[g]
	return ok
}

// mine records p as the registration's node.
func (g *Registration) mine(p string, st *zk.Stat) {
	g.mu.Lock()
	g.nodePath, g.sid, g.czxid, g.fresh = p, st.EphemeralOwner, st.Czxid, false
	g.known++
	g.mu.Unlock()
	g.r.noteOwn(st.EphemeralOwner)
}

// created records p as the ephemeral node this registration has just
// created on session sid, its creation zxid still to be learned.
func (g *Registration) created(p string, sid int64) {
	g.mu.Lock()
	g.nodePath, g.sid, g.czxid, g.fresh = p, sid, 0, true
	g.known++
	g.mu.Unlock()
	g.r.noteOwn(sid)
}

// forget drops what the registration knows of its node: it has none.
func (g *Registration) forget() {
	g.mu.Lock()
	g.czxid, g.fresh = 0, false
	g.known++
	g.mu.Unlock()
}

// learn completes what the registration knows of a fresh node from st,
// read at p after what is known was at known: only if nothing was learned
// or recorded meanwhile, and only if st is the node its session owns.
func (g *Registration) learn(p string, st *zk.Stat, known uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fresh && g.known == known && g.nodePath == p && st.EphemeralOwner == g.sid && g.sid != 0 {
		g.czxid, g.fresh = st.Czxid, false
		g.known++
	}
}

// node returns the registration's node path and the mark of what is known
// of it, for learn.
func (g *Registration) node() (string, uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.nodePath, g.known
}

// look makes the session's server catch up and reads p.
func (g *Registration) look(ctx context.Context, p string) ([]byte, *zk.Stat, error) {
	s := g.r.s
	if err := znode.Settle(ctx, s); err != nil {
		return nil, nil, err
	}
	return s.Get(ctx, p)
}

// undoCreate removes the node this registration has just created at p,
// when Register fails before it could record it: an ephemeral node only if
// this session owns it, a persistent one only while it is untouched (at
// version 0 with this registration's data). It takes at most a session
// timeout.
func (g *Registration) undoCreate(p string, inst Instance, data []byte) {
	s := g.r.s
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout())
	defer cancel()
	got, st, err := s.Get(ctx, p)
	if err != nil {
		return
	}
	if inst.ephemeral() && st.EphemeralOwner != s.SessionID() {
		return
	}
	if !inst.ephemeral() && (st.Version != 0 || !bytes.Equal(got, data)) {
		return
	}
	if err := s.Delete(ctx, p, st.Version); err != nil && !errors.Is(err, zk.ErrNoNode) && !errors.Is(err, resilience.ErrOutcomeUnknown) {
		s.Logger().Warn("registry: could not remove the node of a failed Register", "path", p, "error", err)
	}
}

// createNode creates the registration's node, deciding by who owns the
// node already at the path, if any.
func (g *Registration) createNode(ctx context.Context, inst Instance, data []byte) error {
	s := g.r.s
	for {
		// An ephemeral create belongs to the session current when it is
		// sent (resilience.Session.Create fails with ErrSessionLost
		// otherwise). A session id never comes back once another one has
		// been established, so the same id before and after the call is
		// the session the node was created on, and owns it: no need to
		// read the node back.
		before := s.SessionID()
		created, err := g.create(ctx, inst, data)
		if err == nil && inst.ephemeral() && before != 0 && s.SessionID() == before {
			g.created(created, before)
			return nil
		}
		if err == nil {
			// A persistent node (whose identity is its creation zxid), or
			// the session changed around the create: read it back.
			ok, st, err := s.Exists(ctx, created)
			switch {
			case err != nil:
				// The caller gave up (or the session went) right after the
				// node was made: it must not stay behind unregistered.
				g.undoCreate(created, inst, data)
				return err
			case !ok:
				continue // deleted at once by someone else: restore it
			case inst.ephemeral() && (st.EphemeralOwner == 0 || !g.r.isOwn(st.EphemeralOwner)):
				// Replaced at once by another session's node.
				return &IDInUseError{Path: created, Owner: st.EphemeralOwner, Czxid: st.Czxid}
			}
			g.mine(created, st)
			return nil
		}
		unknown := errors.Is(err, resilience.ErrOutcomeUnknown)
		if inst.ServiceType == DynamicSequential {
			if unknown {
				// No node with this create's name is there: if one was
				// made, someone removed it. Make one.
				continue
			}
			return err
		}
		if !unknown && !errors.Is(err, zk.ErrNodeExists) {
			return err
		}
		if unknown && !inst.ephemeral() {
			return err // a persistent node of ours looks like anyone's
		}
		p := g.r.instancePath(inst)
		got, st, err := g.look(ctx, p)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			continue // none of ours survives: create it
		case err != nil:
			return err
		case inst.ephemeral() && st.EphemeralOwner != 0 && st.EphemeralOwner == s.SessionID():
			// This session's node at the path this registration claims:
			// an earlier try of its own made it.
			g.mine(p, st)
			if !bytes.Equal(got, data) {
				err := g.setNode(ctx, p, data, st.Czxid, 0)
				if errors.Is(err, errGone) {
					continue
				}
				return err
			}
			return nil
		case inst.ephemeral() && st.EphemeralOwner != 0 && g.r.isOwn(st.EphemeralOwner):
			// Left by an earlier session of this client: replace it.
			err := s.Delete(ctx, p, st.Version)
			if err != nil && !errors.Is(err, zk.ErrNoNode) && !errors.Is(err, zk.ErrBadVersion) && !errors.Is(err, resilience.ErrOutcomeUnknown) {
				return err
			}
			s.Logger().Info("registry: replaced a node left by an earlier session of this client", "path", p, "session", fmt.Sprintf("0x%x", st.EphemeralOwner))
			continue
		default:
			return &IDInUseError{Path: p, Owner: st.EphemeralOwner, Czxid: st.Czxid}
		}
	}
}

// setNode writes data to the registration's node p (created at czxid),
// conditionally on the version it reads. A czxid of 0 with a non-zero
// owner is a fresh node, known as the one that session owns; its creation
// zxid is learned here. It returns errGone when the node is not there and
// an *IDInUseError when the node there is not its own.
func (g *Registration) setNode(ctx context.Context, p string, data []byte, czxid, owner int64) error {
	s := g.r.s
	for {
		got, st, err := g.look(ctx, p)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			return errGone
		case err != nil:
			return err
		case czxid == 0 && owner != 0 && st.EphemeralOwner == owner:
			czxid = st.Czxid // the fresh node: now known
			g.mine(p, st)
			if bytes.Equal(got, data) {
				return nil
			}
		case st.Czxid != czxid:
			return g.notMine(p, st)
		case bytes.Equal(got, data):
			g.mine(p, st)
			return nil
		}
		nst, err := s.Set(ctx, p, data, st.Version)
		switch {
		case err == nil:
			g.mine(p, nst)
			return nil
		case errors.Is(err, zk.ErrBadVersion), errors.Is(err, zk.ErrNoNode):
			continue // someone wrote or removed it meanwhile: look again
		case !errors.Is(err, resilience.ErrOutcomeUnknown):
			return err
		}
		got, st, rerr := g.look(ctx, p)
		switch {
		case errors.Is(rerr, zk.ErrNoNode):
			return errGone
		case rerr != nil:
			return rerr
		case st.Czxid != czxid:
			return g.notMine(p, st)
		case bytes.Equal(got, data):
			g.mine(p, st)
			return nil
		}
		return fmt.Errorf("registry: %s holds other data, written after this update by another client (left alone): %w", p, err)
	}
}

// notMine is what a node at p created at another zxid than the
// registration's means: an ephemeral node of this client's own sessions
// is dealt with by createNode (errGone sends the write there); any other
// is someone else's.
func (g *Registration) notMine(p string, st *zk.Stat) error {
	if g.Instance().ephemeral() && st.EphemeralOwner != 0 && g.r.isOwn(st.EphemeralOwner) {
		return errGone
	}
	return &IDInUseError{Path: p, Owner: st.EphemeralOwner, Czxid: st.Czxid}
}

func (g *Registration) create(ctx context.Context, inst Instance, data []byte) (string, error) {
	s := g.r.s
	p := g.r.instancePath(inst)
	var flags int32
	switch inst.ServiceType {
	case Dynamic:
		flags = zk.FlagEphemeral
	case DynamicSequential:
		return g.createSequential(ctx, inst, data)
	}
	// The service's node (and the base's) are made as containers if
	// missing; a node already at p is left to createNode.
	return znode.Create(ctx, s, p, data, flags, false)
}

// createSequential creates a DynamicSequential instance's node. Its name
// is only known from the reply, so it is a protected create (which lets
// the session verify a lost reply); znode.Create has no protected form,
// so the parents are made here with znode.EnsurePath when missing.
func (g *Registration) createSequential(ctx context.Context, inst Instance, data []byte) (string, error) {
	s := g.r.s
	parent := g.r.servicePath(inst.Name)
	for attempt := 0; ; attempt++ {
		created, err := s.CreateProtected(ctx, path.Join(parent, inst.ID), data, zk.FlagEphemeralSequential, nil)
		if !errors.Is(err, zk.ErrNoNode) || attempt == 2 {
			return created, err
		}
		// A container parent can vanish again between the two calls.
		if err := znode.EnsurePath(ctx, s, parent); err != nil {
			return "", err
		}
	}
}

// guard restores the node if someone else deletes it while the session
// lives; re-registration on a new session is the registry's rebuild step.
// When another session's node takes the path, the write finds out and
// ends the registration (see lose).
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
				if err := g.write(g.ctx); err != nil {
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
		p, known := g.node()
		ok, st, ch, err := s.ExistsW(g.ctx, p)
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
		if ok {
			// A fresh node's creation zxid, at no extra cost.
			g.learn(p, st, known)
		}
		if g.sidIs(s.SessionID()) && (!ok || !g.czxidIs(st.Czxid)) {
			// Deleted (or replaced) while our session lives: restore it if
			// the path is free (a sequential instance gets a new node, with
			// a new name); write ends the registration if another
			// session's node holds it.
			err := g.write(g.ctx)
			if err == nil && !ok {
				g.r.tel.restored.Add(context.Background(), 1, metric.WithAttributes(keyService.String(g.inst.Name)))
				s.Logger().Info("registry: restored a deleted registration", "path", g.Path())
			}
			if err != nil {
				select {
				case <-g.ctx.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
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

func (g *Registration) czxidIs(z int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.czxid == z
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
// not restored or re-registered afterwards. It deletes only the
// registration's own node (by creation zxid and version): a node someone
// else made at the path is left alone, and an unproved delete after a lost
// request or reply means the node is gone. If removing the node fails (ctx
// ended, say), calling Unregister again retries it; once the node is gone
// it returns ErrUnregistered. After the Registry's Close it returns
// ErrClosed and leaves the node (an ephemeral one goes with the session).
//
// Unregister runs in the span zkrecipes.registry.unregister, a child of
// ctx's.
func (g *Registration) Unregister(ctx context.Context) error {
	_, err := g.r.tel.traced(ctx, spanUnregister, g.Instance(), g.unregister)
	return err
}

func (g *Registration) unregister(ctx context.Context) error {
	g.mu.Lock()
	if g.gone {
		g.mu.Unlock()
		return ErrUnregistered
	}
	if g.err == ErrClosed {
		g.mu.Unlock()
		return ErrClosed
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
	if err := g.deleteNode(ctx); err != nil {
		return err
	}
	g.mu.Lock()
	g.gone = true
	g.mu.Unlock()
	g.release()
	g.end(ErrUnregistered)
	return nil
}

func (g *Registration) deleteNode(ctx context.Context) error {
	s := g.r.s
	g.mu.Lock()
	p, czxid, fresh := g.nodePath, g.czxid, g.fresh
	g.mu.Unlock()
	// A fresh node (czxid not known yet) is deleted only as a node of this
	// client's own sessions, as below.
	for czxid != 0 || fresh {
		_, st, err := g.look(ctx, p)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			return nil
		case err != nil:
			return err
		case st.Czxid != czxid && (!g.Instance().ephemeral() || st.EphemeralOwner == 0 || !g.r.isOwn(st.EphemeralOwner)):
			return nil // not ours: ours is gone
		}
		err = s.Delete(ctx, p, st.Version)
		switch {
		case err == nil, errors.Is(err, zk.ErrNoNode), errors.Is(err, resilience.ErrOutcomeUnknown):
			return nil
		case !errors.Is(err, zk.ErrBadVersion):
			return err
		}
	}
	return nil
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
			err := g.write(ctx)
			if !errors.Is(err, ErrUnregistered) {
				r.tel.reregistered.Add(context.WithoutCancel(ctx), 1, metric.WithAttributes(otelx.Result(err, classes)...))
			}
			switch {
			case err == nil, errors.Is(err, ErrUnregistered), errors.Is(err, ErrClosed):
			case errors.Is(err, ErrIDInUse):
				// Another session registered this id meanwhile: the
				// registration has ended (Done, and logged); nothing to
				// retry.
			default:
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", g.Path(), err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
