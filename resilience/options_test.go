package resilience

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Every bad option value makes Connect fail with ErrInvalidOption before it
// dials; good values of the same options pass.
func TestOptionsRejectBadValues(t *testing.T) {
	bad := map[string]Option{
		"zero timeout":          WithSessionTimeout(0),
		"negative timeout":      WithSessionTimeout(-time.Second),
		"sub-ms timeout":        WithSessionTimeout(time.Microsecond),
		"huge timeout":          WithSessionTimeout(math.MaxInt64),
		"nil logger":            WithLogger(nil),
		"nil tracer provider":   WithTracerProvider(nil),
		"nil meter provider":    WithMeterProvider(nil),
		"nil dialer":            WithDialer(nil),
		"empty digest user":     WithDigestAuth("", "pw"),
		"digest user with ':'":  WithDigestAuth("a:b", "pw"),
		"nil ACL":               WithACL(nil),
		"ACL without perms":     WithACL([]zk.ACL{{Perms: 0, Scheme: "world", ID: "anyone"}}),
		"ACL with unknown perm": WithACL([]zk.ACL{{Perms: 64, Scheme: "world", ID: "anyone"}}),
		"ACL without scheme":    WithACL([]zk.ACL{{Perms: zk.PermAll}}),
		"zero backoff":          WithBackoff(0, time.Second),
		"inverted backoff":      WithBackoff(time.Second, time.Millisecond),
		"negative fraction":     WithPresumedExpiry(-0.5),
		"NaN fraction":          WithPresumedExpiry(math.NaN()),
		"infinite fraction":     WithPresumedExpiry(math.Inf(1)),
		"zero concurrency":      WithConcurrency(0),
		"negative concurrency":  WithConcurrency(-3),
		"nil rebuild report":    WithRebuildReport(nil),
		"nil option":            nil,
	}
	for name, o := range bad {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := Connect(ctx, []string{"127.0.0.1:1"}, o)
			if !errors.Is(err, ErrInvalidOption) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("Connect = %v, want ErrInvalidOption", err)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Connect dialled before rejecting: %v", err)
			}
		})
	}
	good := []Option{
		WithSessionTimeout(time.Millisecond), WithSessionTimeout(time.Hour),
		WithLogger(slog.New(slog.DiscardHandler)),
		WithTracerProvider(tracenoop.NewTracerProvider()), WithMeterProvider(metricnoop.NewMeterProvider()),
		WithDigestAuth("user", ""),
		WithACL(zk.AuthACL(zk.PermRead | zk.PermWrite)),
		WithBackoff(time.Millisecond, time.Millisecond),
		WithPresumedExpiry(0), WithPresumedExpiry(2.5),
		WithConcurrency(1),
		WithRebuildReport(func(RebuildReport) {}),
	}
	cfg := defaultConfig()
	for _, o := range good {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		t.Fatalf("good options rejected: %v", err)
	}
}
