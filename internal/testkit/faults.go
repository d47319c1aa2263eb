package testkit

import (
	"context"
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
	"github.com/zkrecipes/zkrecipes/zktest"
)

// Client is a session with a network path of its own to every server (a
// zktest.Link), so a fault can hit this client alone.
type Client struct {
	S    *resilience.Session
	Link *zktest.Link
	ens  *zktest.Ensemble
}

// NewClient connects a session to every server of ens through a new Link;
// both close at cleanup.
func NewClient(t testing.TB, ens *zktest.Ensemble, opts ...resilience.Option) *Client {
	t.Helper()
	l, err := ens.NewLink()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &Client{S: Connect(t, l.Addrs(), opts...), Link: l, ens: ens}
}

// ServerIndex returns the index of the server the client is connected to
// now, or -1.
func (c *Client) ServerIndex() int {
	addr := c.S.Server()
	for i, a := range c.Link.Addrs() {
		if a == addr {
			return i
		}
	}
	return -1
}

// Fault is one kind of fault of the fault matrix, aimed at one client.
type Fault struct {
	// Name is the matrix column: drop, blackhole-short, blackhole-long,
	// expire, server-kill, quorum-loss.
	Name string
	// Expires says the fault ends the client's session: the ensemble
	// expires it (or it is expired on purpose), so every ephemeral of the
	// session goes and every holding ends.
	Expires bool
	// Inject starts the fault against c and returns once it is in place
	// (for a timed fault: once it has lasted its time). Heal, which Inject
	// returns, ends it and waits until the ensemble serves again.
	Inject func(t testing.TB, c *Client) (heal func())
}

// Faults returns the fault matrix's kinds for sessions whose timeout is
// timeout:
//
//   - drop: every connection of the client is closed; it reconnects at once
//     and keeps its session.
//   - blackhole-short: the client's links go silent for timeout/3, short of
//     the timeout, then heal.
//   - blackhole-long: silent for 2*timeout: the ensemble expires the session.
//   - expire: the ensemble expires the session now (zktest.ExpireSession).
//   - server-kill: the server the client is connected to is killed; it is
//     restarted at heal. The client moves to another server.
//   - quorum-loss: the two servers other than the client's are stopped for
//     timeout, so its server cannot serve, then restarted.
//
// Context cancellation, lost requests and lost replies are operation
// specific and not part of this list.
func Faults(ens *zktest.Ensemble, timeout time.Duration) []Fault {
	waitServing := func(t testing.TB) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := ens.WaitServing(ctx); err != nil {
			t.Fatalf("ensemble not serving after fault: %v", err)
		}
	}
	startAll := func(t testing.TB) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, srv := range ens.Servers() {
			if !srv.Running() {
				if err := srv.Start(ctx); err != nil {
					t.Fatalf("restarting server %d: %v", srv.ID(), err)
				}
			}
		}
		waitServing(t)
	}
	blackhole := func(d time.Duration) func(testing.TB, *Client) func() {
		return func(t testing.TB, c *Client) func() {
			c.Link.Blackhole()
			time.Sleep(d) // the fault's length, not a wait for a condition
			return func() { c.Link.Heal(); waitServing(t) }
		}
	}
	return []Fault{
		{Name: "drop", Inject: func(t testing.TB, c *Client) func() {
			c.Link.DropConnections()
			return func() { waitServing(t) }
		}},
		{Name: "blackhole-short", Inject: blackhole(timeout / 3)},
		{Name: "blackhole-long", Expires: true, Inject: blackhole(2 * timeout)},
		{Name: "expire", Expires: true, Inject: func(t testing.TB, c *Client) func() {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.ens.ExpireSession(ctx, c.S.SessionID()); err != nil {
				t.Fatalf("expire session: %v", err)
			}
			return func() { waitServing(t) }
		}},
		{Name: "server-kill", Inject: func(t testing.TB, c *Client) func() {
			t.Helper()
			i := c.ServerIndex()
			if i < 0 {
				t.Fatalf("client is not connected to any server (at %q)", c.S.Server())
			}
			if err := ens.Server(i).Kill(); err != nil {
				t.Fatalf("kill server %d: %v", i, err)
			}
			return func() { startAll(t) }
		}},
		{Name: "quorum-loss", Inject: func(t testing.TB, c *Client) func() {
			t.Helper()
			keep := c.ServerIndex()
			for i, srv := range ens.Servers() {
				if i != keep {
					if err := srv.Stop(); err != nil {
						t.Fatalf("stop server %d: %v", i, err)
					}
				}
			}
			time.Sleep(timeout) // the outage's length
			return func() { startAll(t) }
		}},
	}
}

// ForEachFault runs body as a subtest per fault, putting the ensemble back
// after each.
func ForEachFault(t *testing.T, ens *zktest.Ensemble, timeout time.Duration, body func(t *testing.T, f Fault)) {
	for _, f := range Faults(ens, timeout) {
		t.Run(f.Name, func(t *testing.T) {
			Restore(t, ens)
			body(t, f)
		})
	}
}

// OwnedBy reports whether p exists and is an ephemeral of session sid, as
// obs sees the ensemble after znode.Settle.
func OwnedBy(t testing.TB, obs *resilience.Session, p string, sid int64) bool {
	t.Helper()
	ctx := Ctx(t, 10*time.Second)
	if err := znode.Settle(ctx, obs); err != nil {
		return false
	}
	ok, st, err := obs.Exists(ctx, p)
	return err == nil && ok && st.EphemeralOwner == sid
}

// WaitFor polls cond every 20ms until it holds or d passes, then fails t
// with what.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
