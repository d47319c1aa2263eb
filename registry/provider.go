package registry

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoInstances is returned by Provider.Instance when no instance is
// available (none registered, all filtered out, or all marked down).
var ErrNoInstances = errors.New("registry: no instances available")

// Strategy picks one instance out of the available ones (never empty).
type Strategy interface {
	// Pick returns one of available. It is called concurrently, and
	// available is ordered by id.
	Pick(available []Instance) Instance
}

type roundRobin struct{ n atomic.Uint64 }

// Pick returns the next instance in turn.
func (r *roundRobin) Pick(in []Instance) Instance {
	return in[(r.n.Add(1)-1)%uint64(len(in))]
}

// RoundRobin cycles through the instances in id order.
func RoundRobin() Strategy { return &roundRobin{} }

type random struct{}

// Pick returns any instance, uniformly.
func (random) Pick(in []Instance) Instance { return in[rand.IntN(len(in))] }

// Random picks uniformly at random.
func Random() Strategy { return random{} }

type sticky struct {
	inner Strategy
	mu    sync.Mutex
	id    string
}

// Pick returns the instance picked last while it is available.
func (s *sticky) Pick(in []Instance) Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, i := range in {
		if i.ID == s.id {
			return i
		}
	}
	got := s.inner.Pick(in)
	s.id = got.ID
	return got
}

// Sticky keeps returning the same instance while it is available, and asks
// inner for a new one when it is not.
func Sticky(inner Strategy) Strategy { return &sticky{inner: inner} }

// ProviderOption configures a Provider.
type ProviderOption func(*providerOptions)

type providerOptions struct {
	strategy  Strategy
	filters   []func(Instance) bool
	downFor   time.Duration
	threshold int
	err       error // the first bad option value
}

func (o *providerOptions) invalid(format string, args ...any) {
	if o.err == nil {
		o.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
	}
}

// WithStrategy sets how instances are picked (default RoundRobin). A nil
// strategy is an invalid option.
func WithStrategy(s Strategy) ProviderOption {
	return func(o *providerOptions) {
		if s == nil {
			o.invalid("WithStrategy(nil)")
			return
		}
		o.strategy = s
	}
}

// WithFilter adds a filter; only instances every filter accepts are used.
// A nil filter is an invalid option.
func WithFilter(f func(Instance) bool) ProviderOption {
	return func(o *providerOptions) {
		if f == nil {
			o.invalid("WithFilter(nil)")
			return
		}
		o.filters = append(o.filters, f)
	}
}

// WithDownPolicy marks an instance down for downFor once NoteError has been
// called threshold times for it (default: 30s after 2 errors). downFor
// must be positive and threshold at least 1.
func WithDownPolicy(downFor time.Duration, threshold int) ProviderOption {
	return func(o *providerOptions) {
		if downFor <= 0 || threshold < 1 {
			o.invalid("WithDownPolicy(%v, %d): the period must be positive and the threshold at least 1", downFor, threshold)
			return
		}
		o.downFor, o.threshold = downFor, threshold
	}
}

// Provider hands out instances of one service from a Cache.
type Provider struct {
	cache     *Cache
	strategy  Strategy
	filters   []func(Instance) bool
	downFor   time.Duration
	threshold int
	now       func() time.Time

	mu     sync.Mutex
	errs   map[string]int
	downTo map[string]time.Time
}

// NewProvider returns a provider over c. A nil cache gives an error
// wrapping ErrInvalidArgument, a bad option value one wrapping
// ErrInvalidOption.
func NewProvider(c *Cache, opts ...ProviderOption) (*Provider, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil cache", ErrInvalidArgument)
	}
	o := providerOptions{strategy: RoundRobin(), downFor: 30 * time.Second, threshold: 2}
	for _, opt := range opts {
		opt(&o)
	}
	if o.err != nil {
		return nil, o.err
	}
	return &Provider{cache: c, strategy: o.strategy, filters: o.filters, downFor: o.downFor, threshold: o.threshold,
		now: time.Now, errs: map[string]int{}, downTo: map[string]time.Time{}}, nil
}

// Instances returns the instances that pass the filters and are not down
// (after the cache's Close, from the last instances it saw).
func (p *Provider) Instances() []Instance {
	all := p.cache.Instances()
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := all[:0]
next:
	for _, in := range all {
		if t, ok := p.downTo[in.ID]; ok {
			if now.Before(t) {
				continue
			}
			delete(p.downTo, in.ID)
		}
		for _, f := range p.filters {
			if !f(in) {
				continue next
			}
		}
		out = append(out, in)
	}
	return out
}

// Instance picks one available instance. It returns ErrNoInstances when
// none is available, and ErrClosed once the cache is closed (its
// instances are no longer followed).
func (p *Provider) Instance() (Instance, error) {
	if p.cache.isClosed() {
		return Instance{}, ErrClosed
	}
	in := p.Instances()
	if len(in) == 0 {
		return Instance{}, ErrNoInstances
	}
	return p.strategy.Pick(in), nil
}

// NoteError records that a call to in failed; after the threshold the
// instance is left out for the down period.
func (p *Provider) NoteError(in Instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs[in.ID]++
	if p.errs[in.ID] >= p.threshold {
		p.downTo[in.ID] = p.now().Add(p.downFor)
		delete(p.errs, in.ID)
	}
}
