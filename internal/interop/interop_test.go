package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/goleak"

	"github.com/zkrecipes/zkrecipes/zktest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const session = 5 * time.Second

// rig is a standalone ZooKeeper plus a plain Go connection for inspecting
// the znodes the drivers create.
type rig struct {
	e    *zktest.Ensemble
	conn *zk.Conn
	ctx  context.Context
}

func newRig(t *testing.T, timeout time.Duration) *rig {
	t.Helper()
	if testing.Short() {
		t.Skip("interop tests start ZooKeeper, a JVM and Python")
	}
	e := zktest.StartEnsemble(t, zktest.WithServers(1))
	conn, _, err := zk.Connect(e.Addrs(), session, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return &rig{e: e, conn: conn, ctx: ctx}
}

func (r *rig) connect(t *testing.T, d *Driver, clients ...string) {
	t.Helper()
	for _, c := range clients {
		if err := d.Connect(r.ctx, c, r.e.ConnectString(), session); err != nil {
			t.Fatal(err)
		}
	}
}

// children returns the sorted children of p ("" entries never).
func (r *rig) children(t *testing.T, p string) []string {
	t.Helper()
	ch, _, err := r.conn.Children(p)
	if err != nil {
		t.Fatalf("children of %s: %v", p, err)
	}
	sort.Strings(ch)
	return ch
}

// waitChildren waits, with watches, until p has at least n children.
func (r *rig) waitChildren(t *testing.T, p string, n int) []string {
	t.Helper()
	for {
		ch, _, w, err := r.conn.ChildrenW(p)
		if errors.Is(err, zk.ErrNoNode) {
			var ok bool
			ok, _, w, err = r.conn.ExistsW(p)
			if err == nil && ok {
				continue
			}
		}
		if err != nil {
			t.Fatalf("watching %s: %v", p, err)
		}
		if len(ch) >= n {
			sort.Strings(ch)
			return ch
		}
		select {
		case <-w:
		case <-r.ctx.Done():
			t.Fatalf("%s has %d children, want %d: %v", p, len(ch), n, ch)
		}
	}
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func TestProtocol(t *testing.T) {
	r := newRig(t, 30*time.Second)
	began := time.Now()
	cur := Curator(t)
	t.Logf("Curator driver ready after %v (javac: %v)", time.Since(began), CompileTime())
	began = time.Now()
	kz := Kazoo(t)
	t.Logf("Kazoo driver ready after %v", time.Since(began))
	for _, d := range []*Driver{cur, kz} {
		t.Run(d.Name(), func(t *testing.T) {
			ctx := r.ctx
			t.Logf("%s driver: %s", d.Name(), d.Info())
			if p, err := d.Do(ctx, "ping"); err != nil || p != "pong" {
				t.Fatalf("ping = %q, %v", p, err)
			}
			var ce *CommandError
			if _, err := d.Do(ctx, "no.such.command", "x"); !errors.As(err, &ce) || !strings.Contains(ce.Msg, "unknown command") {
				t.Errorf("unknown command: err = %v", err)
			}
			if _, err := d.Do(ctx, "counter.get", "nobody", "/x"); !errors.As(err, &ce) || !strings.Contains(ce.Msg, "no such client") {
				t.Errorf("unknown client: err = %v", err)
			}
			if _, err := d.Do(ctx, "counter.get", "a b", "/x"); err == nil || errors.As(err, &ce) {
				t.Errorf("argument with a space: err = %v, want a local error", err)
			}
			if _, err := d.Do(ctx, "counter.get", "", "/x"); err == nil {
				t.Error("empty argument accepted")
			}

			r.connect(t, d, "a", "b")
			if err := d.Connect(ctx, "a", r.e.ConnectString(), session); err == nil {
				t.Error("connecting an existing client succeeded")
			}
			ev, err := d.WaitEvent(ctx, func(e Event) bool { return e.Client == "b" && e.Kind == "state" })
			if err != nil || ev.Detail != "CONNECTED" {
				t.Errorf("state event of b = %v, %v", ev, err)
			}
			select {
			case ev := <-d.Events():
				if ev.Kind != "state" || ev.Detail != "CONNECTED" {
					t.Errorf("first event = %v", ev)
				}
			case <-ctx.Done():
				t.Fatal("no event on the Events channel")
			}

			lock := "/protocol/" + d.Name()
			if _, _, err := d.MutexAcquire(ctx, "a", lock, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			// A short deadline that runs out is reported as ErrTimeout.
			began := time.Now()
			_, _, err = d.MutexAcquire(ctx, "b", lock, 200*time.Millisecond)
			if !errors.Is(err, ErrTimeout) {
				t.Fatalf("acquiring a held lock: err = %v, want ErrTimeout", err)
			}
			if waited := time.Since(began); waited < 200*time.Millisecond {
				t.Errorf("timed out after %v, before its 200ms", waited)
			}
			if _, err := d.MutexRelease(ctx, "b", lock); err == nil {
				t.Error("b released a lock it does not hold")
			}
			// A Do whose context has ended returns at once.
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			if _, err := d.Do(cctx, "ping"); !errors.Is(err, context.Canceled) {
				t.Errorf("Do with a canceled context: err = %v", err)
			}
			if _, err := d.MutexRelease(ctx, "a", lock); err != nil {
				t.Fatal(err)
			}
			if got := r.children(t, lock); len(got) != 0 {
				t.Errorf("%s left %v", lock, got)
			}
			for _, c := range []string{"a", "b"} {
				if err := d.CloseClient(ctx, c); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// hold is one contender's tenure of a lock.
type hold struct {
	who      string
	node     string
	acquired time.Time
	released time.Time
}

func seq(node string) int {
	n, err := strconv.Atoi(node[len(node)-10:])
	if err != nil {
		return -1
	}
	return n
}

// contend makes first acquire lock, queues the other contenders behind it
// (waiting until their nodes exist), releases first, and returns every
// tenure in the order the locks were acquired. Each waiter releases as
// soon as it has acquired.
func contend(t *testing.T, r *rig, lock string, first contender, waiters ...contender) []hold {
	t.Helper()
	ctx := r.ctx
	node, at, err := first.d.MutexAcquire(ctx, first.client, lock, 10*time.Second, first.opts...)
	if err != nil {
		t.Fatalf("%s: %v", first, err)
	}
	holds := []hold{{who: first.String(), node: node, acquired: at}}
	type result struct {
		h   hold
		err error
	}
	results := make(chan result, len(waiters))
	for i, w := range waiters {
		go func() {
			node, acq, err := w.d.MutexAcquire(ctx, w.client, lock, 15*time.Second, w.opts...)
			if err != nil {
				results <- result{err: fmt.Errorf("%s: %w", w, err)}
				return
			}
			rel, err := w.d.MutexRelease(ctx, w.client, lock)
			results <- result{h: hold{who: w.String(), node: node, acquired: acq, released: rel}, err: err}
		}()
		// Queue them one by one, so their sequence numbers follow the
		// order of the arguments.
		r.waitChildren(t, lock, i+2)
	}
	queued := r.children(t, lock)
	if len(queued) != len(waiters)+1 {
		t.Fatalf("%s while %s holds it: %v, want %d nodes", lock, first, queued, len(waiters)+1)
	}
	t.Logf("%s while %s holds it: %v", lock, first, queued)
	holds[0].released, err = first.d.MutexRelease(ctx, first.client, lock)
	if err != nil {
		t.Fatal(err)
	}
	for range waiters {
		res := <-results
		if res.err != nil {
			t.Fatal(res.err)
		}
		holds = append(holds, res.h)
	}
	sort.Slice(holds, func(i, j int) bool { return holds[i].acquired.Before(holds[j].acquired) })
	return holds
}

type contender struct {
	d      *Driver
	client string
	opts   []string
}

func (c contender) String() string { return c.d.Name() + ":" + c.client }

// checkExclusive checks that the tenures do not overlap and that the lock
// went to the contenders in the order of their sequence numbers.
func checkExclusive(t *testing.T, holds []hold) {
	t.Helper()
	for i, h := range holds {
		t.Logf("  %-12s %s acquired %d released %d", h.who, path.Base(h.node), h.acquired.UnixNano(), h.released.UnixNano())
		if !h.released.After(h.acquired) {
			t.Errorf("%s released (%d) before it acquired (%d)", h.who, h.released.UnixNano(), h.acquired.UnixNano())
		}
		if i == 0 {
			continue
		}
		prev := holds[i-1]
		if !h.acquired.After(prev.released) {
			t.Errorf("%s acquired at %d, before %s released at %d: overlap", h.who, h.acquired.UnixNano(), prev.who, prev.released.UnixNano())
		}
		if seq(h.node) < seq(prev.node) {
			t.Errorf("%s (%s) acquired after %s (%s): not in sequence order", h.who, h.node, prev.who, prev.node)
		}
	}
}

// TestMutexCuratorAndKazoo has two Curator clients and one Kazoo client
// contend for one mutex. Kazoo's lock is given Curator's "-lock-" node
// name (node=-lock-), since Curator cannot order Kazoo's default
// "__lock__" nodes (see TestCuratorIgnoresKazooDefaultLockNodes).
func TestMutexCuratorAndKazoo(t *testing.T) {
	r := newRig(t, 40*time.Second)
	cur, kz := Curator(t), Kazoo(t)
	r.connect(t, cur, "c1", "c2")
	r.connect(t, kz, "k1")
	c1, c2 := contender{d: cur, client: "c1"}, contender{d: cur, client: "c2"}
	k1 := contender{d: kz, client: "k1", opts: []string{"node=-lock-"}}

	t.Run("curator first", func(t *testing.T) {
		checkExclusive(t, contend(t, r, "/interop/mutex", c1, k1, c2))
	})
	t.Run("kazoo first", func(t *testing.T) {
		checkExclusive(t, contend(t, r, "/interop/mutex", k1, c1, c2))
	})
	t.Run("kazoo last", func(t *testing.T) {
		checkExclusive(t, contend(t, r, "/interop/mutex", c2, c1, k1))
	})
}

// TestMutexKazooDefaultHonoursCurator: Kazoo's stock Lock, with
// extra_lock_patterns=["-lock-"] (the driver's default), waits for Curator
// holders queued before it.
func TestMutexKazooDefaultHonoursCurator(t *testing.T) {
	r := newRig(t, 30*time.Second)
	cur, kz := Curator(t), Kazoo(t)
	r.connect(t, cur, "c1", "c2")
	r.connect(t, kz, "k1")
	holds := contend(t, r, "/interop/kazoo-default",
		contender{d: cur, client: "c1"}, contender{d: cur, client: "c2"}, contender{d: kz, client: "k1"})
	checkExclusive(t, holds)
	if !strings.Contains(holds[2].node, "__lock__") {
		t.Errorf("Kazoo's node %s lacks __lock__", holds[2].node)
	}

	// Without the extra pattern Kazoo does not see Curator's nodes at all.
	if _, _, err := cur.MutexAcquire(r.ctx, "c1", "/interop/kazoo-blind", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, _, err := kz.MutexAcquire(r.ctx, "k1", "/interop/kazoo-blind", 5*time.Second, "extra="); err != nil {
		t.Errorf("Kazoo without extra_lock_patterns waited for Curator's holder: %v", err)
	} else if both := r.children(t, "/interop/kazoo-blind"); len(both) != 2 {
		t.Errorf("Kazoo acquired next to Curator's holder, but the lock has nodes %v, want both", both)
	} else {
		t.Logf("as expected, Kazoo without extra_lock_patterns acquired while Curator held: %v", both)
	}
}

// TestCuratorIgnoresKazooDefaultLockNodes documents a real incompatibility:
// Curator sorts lock nodes by the text after their last "lock-" and a
// Kazoo node ("<hex>__lock__<seq>") has none, so Curator sorts it by its
// whole name, after its own "0000000001"-style keys, and takes the lock
// while Kazoo holds it. If this test fails, Curator changed.
func TestCuratorIgnoresKazooDefaultLockNodes(t *testing.T) {
	r := newRig(t, 30*time.Second)
	cur, kz := Curator(t), Kazoo(t)
	r.connect(t, cur, "c1")
	r.connect(t, kz, "k1")
	const lock = "/interop/curator-blind"
	knode, _, err := kz.MutexAcquire(r.ctx, "k1", lock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cnode, _, err := cur.MutexAcquire(r.ctx, "c1", lock, 3*time.Second)
	if err != nil {
		t.Fatalf("Curator waited for Kazoo's %s (%v): Curator now honours Kazoo's lock nodes; update the interop notes", knode, err)
	}
	parts := must[string](t)(cur.Do(r.ctx, "mutex.participants", "c1", lock))
	t.Logf("both hold %s: Kazoo %s, Curator %s; Curator's order: %s", lock, path.Base(knode), path.Base(cnode), parts)
	// Curator orders Kazoo's node, which has no "lock-", after its own.
	if order := strings.Fields(parts); len(order) != 2 || path.Base(order[0]) != path.Base(cnode) || path.Base(order[1]) != path.Base(knode) {
		t.Errorf("Curator's order %q, want its own %s before Kazoo's %s", parts, path.Base(cnode), path.Base(knode))
	}
}

func TestLeaderLatch(t *testing.T) {
	r := newRig(t, 30*time.Second)
	cur := Curator(t)
	ctx := r.ctx
	r.connect(t, cur, "c1", "c2")
	const latch = "/interop/latch"
	ids := map[string]string{"c1": "alpha", "c2": "beta"}
	for _, c := range []string{"c1", "c2"} {
		if err := cur.LatchStart(ctx, c, latch, ids[c]); err != nil {
			t.Fatal(err)
		}
	}
	first, err := cur.WaitEvent(ctx, func(e Event) bool { return e.Kind == "leader" && e.Detail == "true" })
	if err != nil {
		t.Fatal(err)
	}
	leader, other := first.Client, map[string]string{"c1": "c2", "c2": "c1"}[first.Client]
	r.waitChildren(t, latch, 2)
	if nodes := r.children(t, latch); len(nodes) != 2 {
		t.Errorf("latch nodes %v, want one per participant", nodes)
	}
	for _, c := range []string{"c1", "c2"} {
		has := must[bool](t)(cur.LatchHas(ctx, c))
		if has != (c == leader) {
			t.Errorf("%s has leadership = %v, leader event came from %s", c, has, leader)
		}
		if id := must[string](t)(cur.LatchLeader(ctx, c)); id != ids[leader] {
			t.Errorf("%s sees leader %q, want %q", c, id, ids[leader])
		}
	}

	closed := time.Now()
	if err := cur.LatchClose(ctx, leader); err != nil {
		t.Fatal(err)
	}
	if _, err := cur.WaitEvent(ctx, func(e Event) bool {
		return e.Client == leader && e.Kind == "leader" && e.Detail == "false"
	}); err != nil {
		t.Errorf("no notLeader event from the closed leader: %v", err)
	}
	next, err := cur.WaitEvent(ctx, func(e Event) bool {
		return e.Client == other && e.Kind == "leader" && e.Detail == "true"
	})
	if err != nil {
		t.Fatal(err)
	}
	if next.At.Before(closed) {
		t.Errorf("%s became leader at %d, before %s's latch was closed at %d", other, next.At.UnixNano(), leader, closed.UnixNano())
	}
	if !must[bool](t)(cur.LatchHas(ctx, other)) {
		t.Errorf("%s has no leadership after the leader's latch closed", other)
	}
	if id := must[string](t)(cur.LatchLeader(ctx, other)); id != ids[other] {
		t.Errorf("leader = %q, want %q", id, ids[other])
	}
	// The closed latch's node is gone; the new leader's remains.
	if nodes := r.children(t, latch); len(nodes) != 1 {
		t.Errorf("after %s's latch closed: nodes %v, want only %s's", leader, nodes, other)
	}
}

func TestDiscovery(t *testing.T) {
	r := newRig(t, 30*time.Second)
	cur := Curator(t)
	ctx := r.ctx
	r.connect(t, cur, "c1", "c2")
	const base = "/interop/services"
	in := []byte(`{"name":"echo","id":"echo-1","address":"10.0.0.7","port":8080,"sslPort":8443,` +
		`"payload":{"zone":"a","weight":3},"registrationTimeUTC":1700000000000,"serviceType":"DYNAMIC",` +
		`"uriSpec":{"parts":[{"value":"http://","variable":false},{"value":"address","variable":true}]}}`)
	if id := must[string](t)(cur.DiscoveryRegister(ctx, "c1", base, in)); id != "echo-1" {
		t.Errorf("registered id %q", id)
	}

	raw, stat, err := r.conn.Get(base + "/echo/echo-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("znode %s/echo/echo-1 (ephemeral owner %#x): %s", base, stat.EphemeralOwner, raw)
	if stat.EphemeralOwner == 0 {
		t.Error("instance node is not ephemeral")
	}

	// Another client reads it back.
	out := must[[]byte](t)(cur.DiscoveryQuery(ctx, "c2", base, "echo"))
	var got []map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("query result %s: %v", out, err)
	}
	if len(got) != 1 {
		t.Fatalf("query = %s, want one instance", out)
	}
	for k, want := range map[string]any{"name": "echo", "id": "echo-1", "address": "10.0.0.7", "port": 8080.0, "sslPort": 8443.0, "serviceType": "DYNAMIC", "registrationTimeUTC": 1700000000000.0} {
		if got[0][k] != want {
			t.Errorf("%s = %v, want %v", k, got[0][k], want)
		}
	}
	if p, _ := got[0]["payload"].(map[string]any); p["zone"] != "a" || p["weight"] != 3.0 {
		t.Errorf("payload = %v", got[0]["payload"])
	}
	var stored any
	if err := json.Unmarshal(raw, &stored); err != nil {
		t.Errorf("znode data is not JSON: %v", err)
	}
	// The driver's query output is Curator's serializer applied to what
	// Curator read back: the znode's bytes, unchanged.
	if !bytes.Equal(bytes.TrimSpace(out), append(append([]byte("["), raw...), ']')) {
		t.Errorf("query output differs from the znode bytes:\n%s\n%s", out, raw)
	}

	// A minimal instance, as a Go registry might write it.
	minimal := []byte(`{"name":"echo","id":"echo-2","address":"10.0.0.8","port":9090,"payload":null,"registrationTimeUTC":0,"serviceType":"DYNAMIC"}`)
	must[string](t)(cur.DiscoveryRegister(ctx, "c2", base, minimal))
	if names := must[[]string](t)(cur.DiscoveryNames(ctx, "c1", base)); len(names) != 1 || names[0] != "echo" {
		t.Errorf("names = %v", names)
	}
	if err := json.Unmarshal(must[[]byte](t)(cur.DiscoveryQuery(ctx, "c1", base, "echo")), &got); err != nil || len(got) != 2 {
		t.Errorf("after a second registration: %v instances, %v", len(got), err)
	}
	raw2, _, err := r.conn.Get(base + "/echo/echo-2")
	if err != nil {
		t.Fatal(err)
	}
	var stored2 map[string]any
	if err := json.Unmarshal(raw2, &stored2); err != nil {
		t.Fatalf("minimal instance as Curator stored it: %s: %v", raw2, err)
	}
	for k, want := range map[string]any{"name": "echo", "id": "echo-2", "address": "10.0.0.8", "port": 9090.0, "serviceType": "DYNAMIC"} {
		if stored2[k] != want {
			t.Errorf("minimal instance as Curator stored it: %s = %v, want %v (%s)", k, stored2[k], want, raw2)
		}
	}

	if err := cur.DiscoveryUnregister(ctx, "c1", base, "echo", "echo-1"); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := r.conn.Exists(base + "/echo/echo-1"); ok {
		t.Error("echo-1 still registered")
	}
	// Closing a client drops its registrations with its session.
	if err := cur.CloseClient(ctx, "c2"); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(must[[]byte](t)(cur.DiscoveryQuery(ctx, "c1", base, "echo")), &got); err != nil || len(got) != 0 {
		t.Errorf("after unregistering and closing: %v, %v", got, err)
	}
	if got := r.children(t, base); len(got) != 1 || got[0] != "echo" {
		t.Errorf("layout: %s -> %v, want one service node, echo", base, got)
	}
}

func TestCounter(t *testing.T) {
	r := newRig(t, 30*time.Second)
	cur, kz := Curator(t), Kazoo(t)
	ctx := r.ctx
	r.connect(t, cur, "c1")
	r.connect(t, kz, "k1")
	const counter = "/interop/counter"

	if err := cur.CounterSet(ctx, "c1", counter, 42); err != nil {
		t.Fatal(err)
	}
	raw, _, err := r.conn.Get(counter)
	if err != nil || !bytes.Equal(raw, []byte{0, 0, 0, 42}) {
		t.Errorf("Curator wrote %x (%v), want 0000002a", raw, err)
	}
	if v := must[int32](t)(kz.CounterGet(ctx, "k1", counter)); v != 42 {
		t.Errorf("Kazoo reads %d, want 42", v)
	}
	if err := kz.CounterSet(ctx, "k1", counter, -7); err != nil {
		t.Fatal(err)
	}
	if v := must[int32](t)(cur.CounterGet(ctx, "c1", counter)); v != -7 {
		t.Errorf("Curator reads %d, want -7", v)
	}

	// A counter Kazoo creates.
	const fresh = "/interop/counter-kazoo"
	if err := kz.CounterSet(ctx, "k1", fresh, 1<<20); err != nil {
		t.Fatal(err)
	}
	if v := must[int32](t)(cur.CounterGet(ctx, "c1", fresh)); v != 1<<20 {
		t.Errorf("Curator reads %d, want %d", v, 1<<20)
	}
	// Unset counters read as 0 on both sides.
	if v := must[int32](t)(cur.CounterGet(ctx, "c1", "/interop/counter-unset-c")); v != 0 {
		t.Errorf("unset counter via Curator = %d", v)
	}
	if v := must[int32](t)(kz.CounterGet(ctx, "k1", "/interop/counter-unset-k")); v != 0 {
		t.Errorf("unset counter via Kazoo = %d", v)
	}
	// Curator creates a missing counter with its seed, 0 as four bytes;
	// Kazoo creates it empty, and Curator's SharedCount cannot parse that
	// (see the package documentation).
	rc, _, err := r.conn.Get("/interop/counter-unset-c")
	if err != nil || !bytes.Equal(rc, []byte{0, 0, 0, 0}) {
		t.Errorf("unset counter read by Curator leaves %x (%v), want 00000000", rc, err)
	}
	rk, _, err := r.conn.Get("/interop/counter-unset-k")
	if err != nil || len(rk) != 0 {
		t.Errorf("unset counter read by Kazoo leaves %x (%v), want an empty node", rk, err)
	}
	var ce *CommandError
	if _, err = cur.CounterGet(ctx, "c1", "/interop/counter-unset-k"); !errors.As(err, &ce) || !strings.Contains(ce.Msg, "BufferUnderflowException") {
		t.Errorf("Curator reading the empty node Kazoo created: %v, want a BufferUnderflowException", err)
	}
}

// TestCuratorSemaphoreAndRWLock exercises the Curator-only lock commands
// and logs the znodes they create.
func TestCuratorSemaphoreAndRWLock(t *testing.T) {
	r := newRig(t, 30*time.Second)
	cur := Curator(t)
	ctx := r.ctx
	r.connect(t, cur, "c1", "c2", "c3")

	const sem = "/interop/semaphore"
	l1, _ := must2(t)(cur.SemaphoreAcquire(ctx, "c1", sem, 2, 5*time.Second))
	must2(t)(cur.SemaphoreAcquire(ctx, "c2", sem, 2, 5*time.Second))
	if _, _, err := cur.SemaphoreAcquire(ctx, "c3", sem, 2, 200*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("third lease of two: err = %v, want ErrTimeout", err)
	}
	// InterProcessSemaphoreV2's layout, which our Semaphore shares: a
	// mutex under locks, one "...-lease-<seq>" node per lease under leases
	// (the timed-out third took its node away).
	if got := r.children(t, sem); len(got) != 2 || got[0] != "leases" || got[1] != "locks" {
		t.Errorf("semaphore layout: %s -> %v, want [leases locks]", sem, got)
	}
	if got := r.children(t, sem+"/leases"); len(got) != 2 || !strings.Contains(got[0], "-lease-") || !strings.Contains(got[1], "-lease-") {
		t.Errorf("semaphore leases: %v, want two lease- nodes", got)
	}
	type acq struct {
		lease string
		at    time.Time
		err   error
	}
	third := make(chan acq, 1)
	go func() {
		l, at, err := cur.SemaphoreAcquire(ctx, "c3", sem, 2, 10*time.Second)
		third <- acq{l, at, err}
	}()
	r.waitChildren(t, sem+"/leases", 3)
	rel := must[time.Time](t)(cur.SemaphoreRelease(ctx, "c1", l1))
	a := <-third
	if a.err != nil {
		t.Fatal(a.err)
	}
	if !a.at.After(rel) {
		t.Errorf("third lease acquired at %d, before the release at %d", a.at.UnixNano(), rel.UnixNano())
	}
	must[time.Time](t)(cur.SemaphoreRelease(ctx, "c3", a.lease))
	if _, err := cur.SemaphoreRelease(ctx, "c3", a.lease); err == nil {
		t.Error("releasing a lease twice succeeded")
	}

	const rw = "/interop/rwlock"
	must2(t)(cur.RWLockAcquire(ctx, "c1", rw, "read", 5*time.Second))
	must2(t)(cur.RWLockAcquire(ctx, "c2", rw, "read", 5*time.Second))
	writer := make(chan acq, 1)
	go func() {
		node, at, err := cur.RWLockAcquire(ctx, "c3", rw, "write", 10*time.Second)
		writer <- acq{node, at, err}
	}()
	// Curator's read-write lock nodes, which our RWMutex uses too.
	var reads, writes int
	for _, n := range r.waitChildren(t, rw, 3) {
		switch {
		case strings.Contains(n, "__READ__"):
			reads++
		case strings.Contains(n, "__WRIT__"):
			writes++
		}
	}
	if reads != 2 || writes != 1 {
		t.Errorf("rwlock layout with two readers and a writer waiting: %v, want two __READ__ nodes and one __WRIT__", r.children(t, rw))
	}
	r1 := must[time.Time](t)(cur.RWLockRelease(ctx, "c1", rw, "read"))
	r2 := must[time.Time](t)(cur.RWLockRelease(ctx, "c2", rw, "read"))
	w := <-writer
	if w.err != nil {
		t.Fatal(w.err)
	}
	if !w.at.After(r1) || !w.at.After(r2) {
		t.Errorf("writer acquired at %d, before the readers released (%d, %d)", w.at.UnixNano(), r1.UnixNano(), r2.UnixNano())
	}
	must[time.Time](t)(cur.RWLockRelease(ctx, "c3", rw, "write"))
	if _, _, err := cur.RWLockAcquire(ctx, "c1", rw, "sideways", time.Second); err == nil {
		t.Error("bad rwlock mode accepted")
	}
}

func must2(t *testing.T) func(string, time.Time, error) (string, time.Time) {
	return func(s string, at time.Time, err error) (string, time.Time) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s, at
	}
}

// TestDriverExit: when the driver dies, pending and later commands fail
// with ErrExited, WaitEvent stops waiting and the Events channel closes.
func TestDriverExit(t *testing.T) {
	r := newRig(t, 20*time.Second)
	kz := Kazoo(t)
	ctx := r.ctx
	r.connect(t, kz, "k1", "k2")
	if _, _, err := kz.MutexAcquire(ctx, "k1", "/interop/exit", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() {
		_, _, err := kz.MutexAcquire(ctx, "k2", "/interop/exit", 15*time.Second)
		blocked <- err
	}()
	r.waitChildren(t, "/interop/exit", 2)
	if err := kz.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := <-blocked; !errors.Is(err, ErrExited) {
		t.Errorf("pending acquire: err = %v, want ErrExited", err)
	}
	if _, err := kz.Do(ctx, "ping"); !errors.Is(err, ErrExited) {
		t.Errorf("ping after exit: err = %v, want ErrExited", err)
	}
	if _, err := kz.WaitEvent(ctx, func(Event) bool { return false }); !errors.Is(err, ErrExited) {
		t.Errorf("WaitEvent after exit: err = %v, want ErrExited", err)
	}
	for range kz.Events() {
	}
}

func TestMissingPrerequisites(t *testing.T) {
	saved := javaDir
	javaDir = t.TempDir()
	_, err := curatorClasspath()
	javaDir = saved
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y libcurator-recipes-java libcurator-discovery-java python3-kazoo") ||
		!strings.Contains(err.Error(), "curator-recipes.jar (libcurator-recipes-java)") {
		t.Errorf("without jars: err = %v", err)
	}

	t.Setenv("INTEROP_PYTHON", "/nonexistent/python3")
	if _, err := startKazoo(t); err == nil || !strings.Contains(err.Error(), "python3-kazoo") {
		t.Errorf("without python: err = %v", err)
	}
	// A Python without Kazoo (such as a pyenv python3 on PATH): the driver
	// exits before it is ready.
	other, err := exec.LookPath("python3")
	probe := exec.Command(other, "-c", "import kazoo.client")
	probe.Dir = t.TempDir() // not here: ./kazoo would pass for the package
	if err != nil || probe.Run() == nil {
		t.Logf("no python3 without Kazoo on PATH (%s, %v); not testing that case", other, err)
		return
	}
	t.Setenv("INTEROP_PYTHON", other)
	if _, err := startKazoo(t); err == nil || !strings.Contains(err.Error(), "python3-kazoo") {
		t.Errorf("with a python lacking Kazoo: err = %v", err)
	} else {
		t.Logf("%v", err)
	}
}
