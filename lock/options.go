package lock

import (
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/zkrecipes/zkrecipes/resilience"
)

// Errors returned by this package; test with errors.Is. No error of this
// package matches another package's sentinel, nor the reverse.
var (
	// ErrLocked is returned by TryLock, TryRLock and TryAcquire when the
	// lock is held (or, for a semaphore, all its leases are).
	ErrLocked = errors.New("lock: held by another client")
	// ErrLeaseLost means the lease ended without Release: its session was
	// suspended (LoseOnSuspend) or lost, or its node was found deleted.
	ErrLeaseLost = errors.New("lock: lease lost")
	// ErrReleased is returned by a second Release of the same lease, and is
	// the cause of a released lease's context.
	ErrReleased = errors.New("lock: lease released")
	// ErrInvalidArgument is returned by a constructor given a nil session,
	// an invalid path (the error then also wraps
	// resilience.ErrInvalidPath), a semaphore size below 1, or a bad list
	// of locks.
	ErrInvalidArgument = errors.New("lock: invalid argument")
	// ErrInvalidOption is returned by a constructor given an option with a
	// bad value.
	ErrInvalidOption = errors.New("lock: invalid option")
)

// Option configures a lock; pass options to NewMutex, NewRWMutex or
// NewSemaphore.
type Option func(*options)

type options struct {
	policy resilience.LossPolicy
	data   []byte
	tp     trace.TracerProvider
	mp     metric.MeterProvider
}

func buildOptions(opts []Option) (options, error) {
	var o options
	for i, opt := range opts {
		if opt == nil {
			return options{}, fmt.Errorf("%w: option %d is nil", ErrInvalidOption, i)
		}
		opt(&o)
	}
	if !o.policy.Valid() {
		return options{}, fmt.Errorf("%w: loss policy %v", ErrInvalidOption, o.policy)
	}
	return o, nil
}

// WithLossPolicy sets when leases count as lost: resilience.LoseOnSuspend
// (the default) or resilience.LoseOnSessionLoss. Any other value makes the
// constructor fail with ErrInvalidOption.
func WithLossPolicy(p resilience.LossPolicy) Option { return func(o *options) { o.policy = p } }

// WithData sets the data stored in this client's lock nodes (Curator stores
// the client's IP address there by default). Default: none.
func WithData(b []byte) Option { return func(o *options) { o.data = b } }

// WithTracerProvider sets the tracer provider (default, or nil: the
// session's).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(o *options) { o.tp = tp } }

// WithMeterProvider sets the meter provider (default, or nil: the
// session's).
func WithMeterProvider(mp metric.MeterProvider) Option { return func(o *options) { o.mp = mp } }
