package resilience

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Dialer opens a TCP connection to a ZooKeeper server. It has the shape of
// net.DialTimeout, which is the default.
type Dialer func(network, address string, timeout time.Duration) (net.Conn, error)

// Option configures Connect.
type Option func(*config)

type config struct {
	sessionTimeout  time.Duration
	logger          *slog.Logger
	tracerProvider  trace.TracerProvider
	meterProvider   metric.MeterProvider
	dialer          Dialer
	auth            []authCred
	acl             []zk.ACL
	backoffMin      time.Duration
	backoffMax      time.Duration
	presumeFraction float64
	concurrency     int
	rebuildReport   func(RebuildReport)

	// bad collects option values rejected as they are applied (a nil
	// where a value is required, malformed credentials).
	bad []error
}

// reject records a bad option value; Connect returns it.
func (c *config) reject(format string, args ...any) {
	c.bad = append(c.bad, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...))
}

type authCred struct {
	scheme string
	auth   []byte
}

func defaultConfig() config {
	return config{
		sessionTimeout: 10 * time.Second,
		dialer:         net.DialTimeout,
		acl:            zk.WorldACL(zk.PermAll),
		backoffMin:     10 * time.Millisecond,
		backoffMax:     time.Second,
		concurrency:    16,
	}
}

// maxSessionTimeout is the longest timeout the protocol can carry (an
// int32 of milliseconds).
const maxSessionTimeout = math.MaxInt32 * time.Millisecond

// validate checks the options as applied and fills in the defaults. Every
// rejection wraps ErrInvalidOption.
func (c *config) validate() error {
	if len(c.bad) > 0 {
		return errors.Join(c.bad...)
	}
	switch {
	case c.sessionTimeout < time.Millisecond || c.sessionTimeout > maxSessionTimeout:
		return fmt.Errorf("%w: session timeout %v must be between 1ms and %v", ErrInvalidOption, c.sessionTimeout, maxSessionTimeout)
	case c.presumeFraction < 0 || math.IsNaN(c.presumeFraction) || math.IsInf(c.presumeFraction, 0):
		return fmt.Errorf("%w: presumed-expiry fraction %v must be a finite number, 0 or more", ErrInvalidOption, c.presumeFraction)
	case c.backoffMin <= 0 || c.backoffMax < c.backoffMin:
		return fmt.Errorf("%w: backoff range [%v, %v]", ErrInvalidOption, c.backoffMin, c.backoffMax)
	case c.concurrency <= 0:
		return fmt.Errorf("%w: concurrency %d must be positive", ErrInvalidOption, c.concurrency)
	case c.dialer == nil:
		return fmt.Errorf("%w: nil dialer", ErrInvalidOption)
	case len(c.acl) == 0:
		return fmt.Errorf("%w: empty default ACL", ErrInvalidOption)
	}
	for _, a := range c.acl {
		if a.Perms == 0 || a.Perms&^zk.PermAll != 0 || a.Scheme == "" {
			return fmt.Errorf("%w: default ACL entry %+v: needs a scheme and permissions among zk.PermAll", ErrInvalidOption, a)
		}
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.tracerProvider == nil {
		c.tracerProvider = otel.GetTracerProvider()
	}
	if c.meterProvider == nil {
		c.meterProvider = otel.GetMeterProvider()
	}
	return nil
}

// WithSessionTimeout sets the session timeout the client asks for (default
// 10s; at least 1ms). The ensemble clamps it to [2, 20] ticks unless
// configured otherwise; the negotiated value is in every Transition.
func WithSessionTimeout(d time.Duration) Option {
	return func(c *config) { c.sessionTimeout = d }
}

// WithLogger sets the logger (default slog.Default()); see the package
// documentation, "Logging", for what the Session logs. A nil logger is
// rejected: to log nothing, pass slog.New(slog.DiscardHandler).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l == nil {
			c.reject("nil logger (for none, use slog.New(slog.DiscardHandler))")
		}
		c.logger = l
	}
}

// WithTracerProvider sets the OpenTelemetry tracer provider (default the
// global one).
// A nil provider is rejected (trace/noop has one that records nothing).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) {
		if tp == nil {
			c.reject("nil tracer provider")
		}
		c.tracerProvider = tp
	}
}

// WithMeterProvider sets the OpenTelemetry meter provider (default the
// global one).
// A nil provider is rejected (metric/noop has one that records nothing).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) {
		if mp == nil {
			c.reject("nil meter provider")
		}
		c.meterProvider = mp
	}
}

// WithDialer sets how TCP connections to servers are opened (default
// net.DialTimeout); nil is rejected.
func WithDialer(d Dialer) Option {
	return func(c *config) { c.dialer = d }
}

// WithDigestAuth adds digest credentials ("user:password"). They are applied
// before any request on every session, including new sessions after Lost.
// The user must be non-empty and must not contain ':'.
func WithDigestAuth(user, password string) Option {
	return func(c *config) {
		if user == "" || strings.Contains(user, ":") {
			c.reject("digest user %q must be non-empty and free of ':'", user)
		}
		c.auth = append(c.auth, authCred{scheme: "digest", auth: []byte(user + ":" + password)})
	}
}

// WithACL sets the ACL used by creates that pass a nil ACL (default
// zk.WorldACL(zk.PermAll)); it must have at least one entry, each with a
// scheme and permissions. With WithDigestAuth, zk.AuthACL(zk.PermAll)
// makes nodes accessible to their creator only.
func WithACL(acl []zk.ACL) Option {
	return func(c *config) { c.acl = acl }
}

// WithBackoff sets the range of the jittered exponential backoff between
// retries of an operation (default 10ms to 1s; min must be positive and
// max at least min). Retries are bounded by the
// operation's context.
func WithBackoff(min, max time.Duration) Option {
	return func(c *config) { c.backoffMin, c.backoffMax = min, max }
}

// WithPresumedExpiry makes a suspended session count as Lost (cause
// CausePresumedExpired) once fraction x the negotiated timeout has passed
// since the last contact the ensemble's leader provably heard of, less a
// twentieth of the timeout (SafeUntil is the same bound with a fraction
// of 1). Off (0) by default: the session is then Lost only when the
// ensemble says so, so a session the ensemble still holds is never given
// up, through a leader election or a quorum loss of any length. Holders
// do not need the presumption: under lock and election's
// LoseOnSessionLoss a holding ends at SafeUntil while suspended.
//
// With presumption on, a presumed-lost session that turns out to be alive
// after all (the ensemble kept it, for example through an election that
// outlasted the fraction) is closed so its ephemeral nodes disappear
// promptly, and the Session continues on a new session. A fraction above
// 1 may presume later than the ensemble could expire the session. A
// negative, infinite or NaN fraction is rejected.
func WithPresumedExpiry(fraction float64) Option {
	return func(c *config) { c.presumeFraction = fraction }
}

// WithConcurrency bounds how many rebuild steps (see Session.OnNewSession)
// run at once after a new session (default 16). n must be positive.
func WithConcurrency(n int) Option {
	return func(c *config) { c.concurrency = n }
}
