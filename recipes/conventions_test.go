package recipes_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/cache"
	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/recipes"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// Every constructor rejects a nil session, an invalid path and bad
// argument or option values with this package's sentinels, before it
// touches the session (so this runs without ZooKeeper: the session is nil
// throughout, and each case must report its own fault, not the nil
// session).
func TestConstructorsRejectBadArguments(t *testing.T) {
	ctx := context.Background()
	constructors := map[string]func(p string) error{
		"NewBarrier":       func(p string) error { _, err := recipes.NewBarrier(nil, p); return err },
		"NewDoubleBarrier": func(p string) error { _, err := recipes.NewDoubleBarrier(nil, p, 2); return err },
		"NewSharedCount":   func(p string) error { _, err := recipes.NewSharedCount(ctx, nil, p, 0); return err },
		"NewTreeCache":     func(p string) error { _, err := cache.NewTree(ctx, nil, p); return err },
		"NewNodeCache":     func(p string) error { _, err := cache.NewNode(ctx, nil, p); return err },
		"JoinGroup":        func(p string) error { _, err := recipes.JoinGroup(ctx, nil, p, "me", nil); return err },
	}
	for name, build := range constructors {
		t.Run(name, func(t *testing.T) {
			// The caches are package cache's, with its own sentinels.
			invalid := recipes.ErrInvalidArgument
			if strings.HasSuffix(name, "Cache") {
				invalid = cache.ErrInvalidArgument
			}
			err := build("/fine")
			if !errors.Is(err, invalid) || errors.Is(err, resilience.ErrInvalidPath) {
				t.Errorf("nil session: %v, want ErrInvalidArgument (and not ErrInvalidPath)", err)
			}
			for _, bad := range []string{"", "relative", "/trailing/", "/a//b", "/a/../b"} {
				err := build(bad)
				if !errors.Is(err, invalid) || !errors.Is(err, resilience.ErrInvalidPath) {
					t.Errorf("path %q: %v, want ErrInvalidArgument and resilience.ErrInvalidPath", bad, err)
				}
			}
		})
	}
	cases := []struct {
		name string
		err  error
		want error // besides the one case-specific sentinel, must not wrap the other
		not  error
	}{
		{"NewDoubleBarrier n=0", func() error { _, err := recipes.NewDoubleBarrier(nil, "/fine", 0); return err }(), recipes.ErrInvalidArgument, nil},
		{"NewDoubleBarrier n=-1", func() error { _, err := recipes.NewDoubleBarrier(nil, "/fine", -1); return err }(), recipes.ErrInvalidArgument, nil},
		{"JoinGroup id a/b", func() error { _, err := recipes.JoinGroup(ctx, nil, "/fine", "a/b", nil); return err }(), resilience.ErrInvalidPath, nil},
		{"JoinGroup id empty", func() error { _, err := recipes.JoinGroup(ctx, nil, "/fine", "", nil); return err }(), resilience.ErrInvalidPath, nil},
		{"JoinGroup id ..", func() error { _, err := recipes.JoinGroup(ctx, nil, "/fine", "..", nil); return err }(), resilience.ErrInvalidPath, nil},
		{"JoinGroup id .", func() error { _, err := recipes.JoinGroup(ctx, nil, "/fine", ".", nil); return err }(), resilience.ErrInvalidPath, nil},
		{"WithConcurrency(0)", func() error {
			_, err := cache.NewTree(ctx, nil, "/fine", cache.WithConcurrency(0))
			return err
		}(), cache.ErrInvalidOption, cache.ErrInvalidArgument},
		{"WithConcurrency(-3)", func() error {
			_, err := cache.NewTree(ctx, nil, "/fine", cache.WithConcurrency(-3))
			return err
		}(), cache.ErrInvalidOption, cache.ErrInvalidArgument},
		{"WithMaxDepth(-1)", func() error {
			_, err := cache.NewTree(ctx, nil, "/fine", cache.WithMaxDepth(-1))
			return err
		}(), cache.ErrInvalidOption, cache.ErrInvalidArgument},
	}
	_, nilSession := recipes.NewDoubleBarrier(nil, "/fine", 2)
	for _, c := range cases {
		if c.err != nil && c.err.Error() == nilSession.Error() {
			t.Errorf("%s: %v: the nil session's error, not the case's own fault", c.name, c.err)
		}
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want an error wrapping %v", c.name, c.err, c.want)
		}
		if c.not != nil && errors.Is(c.err, c.not) {
			t.Errorf("%s: %v also wraps %v", c.name, c.err, c.not)
		}
		// The case's own fault, not the nil session that follows it.
		if c.want == resilience.ErrInvalidPath && !errors.Is(c.err, recipes.ErrInvalidArgument) {
			t.Errorf("%s: %v does not wrap ErrInvalidArgument", c.name, c.err)
		}
		if c.want == recipes.ErrInvalidArgument && errors.Is(c.err, resilience.ErrInvalidPath) {
			t.Errorf("%s: %v wraps ErrInvalidPath", c.name, c.err)
		}
	}
	// The package's sentinels are its own.
	for _, e := range []error{recipes.ErrClosed, recipes.ErrInvalidArgument, recipes.ErrMalformedCount,
		cache.ErrClosed, cache.ErrInvalidArgument, cache.ErrInvalidOption} {
		if errors.Is(e, resilience.ErrClosed) || errors.Is(e, resilience.ErrInvalidPath) || errors.Is(e, resilience.ErrInvalidOption) {
			t.Errorf("%v matches a resilience sentinel", e)
		}
		for _, o := range []error{recipes.ErrClosed, recipes.ErrInvalidArgument, cache.ErrClosed, cache.ErrInvalidArgument, cache.ErrInvalidOption} {
			if o != e && errors.Is(e, o) {
				t.Errorf("%v matches another package's sentinel %v", e, o)
			}
		}
	}
}

// Closing: Close leaves nothing running (goleak checks), a second Close
// and any call after it that reports errors return ErrClosed, the Events
// channel is closed, and Group's Close deletes the member node.
func TestCloseThenErrClosed(t *testing.T) {
	needZK(t)
	ctx := ctxT(t, time.Minute)
	// Rebuild rounds are reported, so the test knows when the steps of a
	// new session have all run; the fence step makes sure there is one.
	rounds := make(chan resilience.RebuildReport, 8)
	s := connect(t, ens.Addrs(), resilience.WithRebuildReport(func(r resilience.RebuildReport) {
		select {
		case rounds <- r:
		default:
		}
	}))
	defer s.OnNewSession("test fence", func(context.Context) error { return nil })()
	p := testkit.Path("/close")

	tc, err := cache.NewTree(ctx, s, p, cache.WithConcurrency(1), cache.WithMaxDepth(0))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := cache.NewNode(ctx, s, p)
	if err != nil {
		t.Fatal(err)
	}
	g, err := recipes.JoinGroup(ctx, s, p+"/group", "m", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	member := p + "/group/m"
	if !exists(t, s, member) {
		t.Fatal("member node not created")
	}
	closers := []struct {
		name   string
		close  func() error
		events <-chan cache.Event
		closed error
	}{
		{"TreeCache", tc.Close, tc.Events(), cache.ErrClosed},
		{"NodeCache", nc.Close, nc.Events(), cache.ErrClosed},
		{"Group", g.Close, g.Events(), recipes.ErrClosed},
	}
	for _, c := range closers {
		if err := c.close(); err != nil {
			t.Errorf("%s.Close: %v", c.name, err)
		}
		if err := c.close(); !errors.Is(err, c.closed) {
			t.Errorf("second %s.Close: %v, want ErrClosed", c.name, err)
		}
		deadline := time.After(10 * time.Second)
		for open := true; open; {
			select {
			case _, open = <-c.events:
			case <-deadline:
				t.Fatalf("%s's Events channel still open after Close", c.name)
			}
		}
	}
	if err := g.Update(ctx, []byte("y")); !errors.Is(err, recipes.ErrClosed) {
		t.Errorf("Update after Close: %v, want ErrClosed", err)
	}
	if exists(t, s, member) {
		t.Error("Group.Close left the member node")
	}
	// The node is not re-created on a later session either (Close removed
	// the group's new-session step).
	old := s.SessionID()
	if err := ens.ExpireSession(ctx, old); err != nil {
		t.Fatal(err)
	}
	for done := false; !done; {
		select {
		case r := <-rounds:
			done = r.SessionID != old && r.Err == nil
		case <-ctx.Done():
			t.Fatal("no rebuild round after the session expired")
		}
	}
	if err := znode.Settle(ctx, s); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := s.Exists(ctx, member); err != nil || ok {
		t.Errorf("after a new session the closed member's node exists: %v, %v", ok, err)
	}
}

// Group.Close takes no context: it waits for the member node's delete at
// most a session timeout, then goes on deleting in the background. Under a
// quorum loss (nobody can write, and nobody expires the session) Close
// returns nil; once the ensemble is back, the node is deleted on the same
// session (so by Close's background delete, not by an expiry).
func TestGroupCloseBoundedBySessionTimeout(t *testing.T) {
	needZK(t)
	restore(t)
	ctx := ctxT(t, 2*time.Minute)
	const timeout = 4 * time.Second
	keep := ens.Server(2)
	s := connect(t, []string{keep.Addr()}, resilience.WithSessionTimeout(timeout))
	w := connect(t, ens.Addrs())
	p := testkit.Path("/group-close")
	g, err := recipes.JoinGroup(ctx, s, p, "m", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	member := p + "/m"
	sid := s.SessionID()
	for _, i := range []int{0, 1} {
		if err := ens.Server(i).Stop(); err != nil {
			t.Fatalf("stop server %d: %v", i, err)
		}
	}
	if err := s.WaitState(ctx, resilience.Suspended); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	start := time.Now()
	go func() { closed <- g.Close() }()
	select {
	case err := <-closed:
		t.Logf("Close returned after %v during the quorum loss (session timeout %v)", time.Since(start).Round(time.Millisecond), s.Timeout())
		if err != nil {
			t.Fatalf("Close during a quorum loss: %v, want nil (the delete goes on in the background)", err)
		}
	case <-time.After(5 * s.Timeout()):
		t.Fatalf("Close still waiting %v into a quorum loss: not bounded by the session timeout %v", 5*s.Timeout(), s.Timeout())
	}
	for _, i := range []int{0, 1} {
		if err := ens.Server(i).Start(ctx); err != nil {
			t.Fatalf("start server %d: %v", i, err)
		}
	}
	if err := ens.WaitServing(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 30*time.Second, "the member node to go", func() bool {
		if err := znode.Settle(ctx, w); err != nil {
			return false
		}
		ok, _, err := w.Exists(ctx, member)
		return err == nil && !ok
	})
	if got := s.SessionID(); got != sid {
		t.Fatalf("the member's session changed (%#x to %#x): the node went with it, Close's background delete is not shown", sid, got)
	}
}
