package lock

import (
	"errors"

	"github.com/zkrecipes/zkrecipes/resilience"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Errors returned by this package; test with errors.Is.
var (
	// ErrLocked is returned by TryLock when another holder has the lock.
	ErrLocked = errors.New("lock: held by another client")
	// ErrLeaseLost means the lease ended without Release: its session was
	// suspended (LoseOnSuspend) or lost, or its node was found deleted.
	ErrLeaseLost = errors.New("lock: lease lost")
	// ErrReleased is returned by a second Release of the same lease, and is
	// the cause of a released lease's context.
	ErrReleased = errors.New("lock: lease released")
	// ErrInvalidArgument is returned for a bad semaphore size or an empty
	// lock list.
	ErrInvalidArgument = errors.New("lock: invalid argument")
)

// Option configures a lock.
type Option func(*options)

type options struct {
	policy resilience.LossPolicy
	data   []byte
	tp     trace.TracerProvider
	mp     metric.MeterProvider
}

// WithLossPolicy sets when leases count as lost (default
// resilience.LoseOnSuspend); see resilience.LossPolicy.
func WithLossPolicy(p resilience.LossPolicy) Option { return func(o *options) { o.policy = p } }

// WithData sets the data stored in this client's lock nodes (Curator stores
// the client's IP address there by default). Default: none.
func WithData(b []byte) Option { return func(o *options) { o.data = b } }

// WithTracerProvider sets the tracer provider (default: the session's).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(o *options) { o.tp = tp } }

// WithMeterProvider sets the meter provider (default: the session's).
func WithMeterProvider(mp metric.MeterProvider) Option { return func(o *options) { o.mp = mp } }
