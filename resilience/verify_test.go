package resilience

import (
	"context"
	"errors"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/wirefault"
)

// The wait-and-verify matrix. Client A loses one chosen write's request or
// its reply; before A may reconnect, client B does nothing ("none"), makes
// the same write ("same"), or undoes it ("undo"); then A's operation
// returns. Every answer must be true or wrap ErrOutcomeUnknown, nothing may
// be applied twice and no node of B's may be deleted or overwritten. The
// expected answer of every cell is written out (docs/state-machine.md
// lists the same table).
type verifyCase struct {
	name string
	// setup prepares the case under base, through obs.
	setup func(t *testing.T, obs *Session, base string)
	// op is the write A makes; its request is the one lost.
	op    wirefault.Request
	run   func(ctx context.Context, a *Session, base string) error
	other map[string]func(ctx context.Context, b *Session, base string) error
	// want maps "request/none", "reply/undo", ... to the expected answer.
	want map[string]string
	// check looks at the tree afterwards.
	check func(t *testing.T, obs *Session, base, cell, got string)
}

// answer names an operation's result for the table.
func answer(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrOutcomeUnknown):
		return "unknown"
	case errors.Is(err, zk.ErrNodeExists):
		return "exists"
	case errors.Is(err, zk.ErrNoNode):
		return "nonode"
	case errors.Is(err, zk.ErrBadVersion):
		return "badversion"
	}
	return "error: " + err.Error()
}

// createAt is B's create of n(base), fine if A's got there first.
func createAt(n func(string) string, data []byte, flags int32) func(context.Context, *Session, string) error {
	return func(ctx context.Context, b *Session, base string) error {
		err := mustCreate(ctx, b, n(base), data, flags)
		if errors.Is(err, zk.ErrNodeExists) {
			return nil
		}
		return err
	}
}

// deleteChildren is B's removal of every node under base. It syncs
// first: B's server may not have applied A's write yet (seen once in ~60
// runs: create-sequential/reply/undo left A's node, B had listed none).
func deleteChildren(ctx context.Context, b *Session, base string) error {
	if err := settleFor(ctx, b); err != nil {
		return err
	}
	names, _, err := b.Children(ctx, base)
	for _, c := range names {
		if err == nil {
			err = b.Delete(ctx, base+"/"+c, -1)
		}
	}
	return err
}

// deleteAt is B's delete of n(base), fine if it is gone already.
func deleteAt(n func(string) string) func(context.Context, *Session, string) error {
	return func(ctx context.Context, b *Session, base string) error {
		err := b.Delete(ctx, n(base), -1)
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		return err
	}
}

func mustCreate(ctx context.Context, s *Session, p string, data []byte, flags int32) error {
	_, err := s.Create(ctx, p, data, flags, nil)
	return err
}

// read returns p's data and stat after a sync ("", nil if absent).
func read(t *testing.T, s *Session, p string) (string, *zk.Stat) {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	if err := settleFor(ctx, s); err != nil {
		t.Fatal(err)
	}
	d, st, err := s.Get(ctx, p)
	if errors.Is(err, zk.ErrNoNode) {
		return "", nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(d), st
}

func verifyCases(aSession func() int64) []verifyCase {
	n := func(base string) string { return base + "/n" }
	none := func(context.Context, *Session, string) error { return nil }
	return []verifyCase{
		{
			name: "create-persistent",
			op:   wirefault.Request{Op: wirefault.OpCreate, Path: "/n"},
			run: func(ctx context.Context, a *Session, base string) error {
				return mustCreate(ctx, a, n(base), []byte("a"), 0)
			},
			other: map[string]func(context.Context, *Session, string) error{
				"none": none,
				"same": createAt(n, []byte("a"), 0),
				"undo": func(ctx context.Context, b *Session, base string) error {
					if err := b.Delete(ctx, n(base), -1); err == nil || !errors.Is(err, zk.ErrNoNode) {
						return err
					}
					// A's request was lost: make and unmake the node (ABA).
					if err := mustCreate(ctx, b, n(base), []byte("a"), 0); err != nil {
						return err
					}
					return b.Delete(ctx, n(base), -1)
				},
			},
			want: map[string]string{
				"request/none": "ok", "request/same": "unknown", "request/undo": "unknown",
				"reply/none": "unknown", "reply/same": "unknown", "reply/undo": "unknown",
			},
			check: func(t *testing.T, obs *Session, base, cell, got string) {
				_, st := read(t, obs, n(base))
				if strings.HasSuffix(cell, "/undo") && st != nil {
					t.Errorf("the node B removed is back (czxid %d): A created it again", st.Czxid)
				}
				if got == "ok" && st == nil {
					t.Error("create reported ok, but there is no node")
				}
			},
		},
		{
			name: "create-ephemeral",
			op:   wirefault.Request{Op: wirefault.OpCreate, Path: "/n"},
			run: func(ctx context.Context, a *Session, base string) error {
				return mustCreate(ctx, a, n(base), []byte("a"), zk.FlagEphemeral)
			},
			other: map[string]func(context.Context, *Session, string) error{
				"none": none,
				"same": createAt(n, []byte("a"), zk.FlagEphemeral),
				"undo": deleteAt(n),
			},
			want: map[string]string{
				"request/none": "ok", "request/same": "unknown", "request/undo": "ok",
				"reply/none": "ok", "reply/same": "ok", "reply/undo": "unknown",
			},
			check: func(t *testing.T, obs *Session, base, cell, got string) {
				_, st := read(t, obs, n(base))
				if got == "ok" && (st == nil || st.EphemeralOwner != aSession()) {
					t.Errorf("create reported ok, but the node is %+v, not A's", st)
				}
				if cell == "reply/undo" && st != nil {
					t.Error("the node B removed is back: A created it again")
				}
			},
		},
		{
			name: "create-sequential",
			op:   wirefault.Request{Op: wirefault.OpCreate, Path: "/n-"},
			run: func(ctx context.Context, a *Session, base string) error {
				return mustCreate(ctx, a, base+"/n-", []byte("a"), zk.FlagSequence)
			},
			other: map[string]func(context.Context, *Session, string) error{
				"none": none,
				"same": func(ctx context.Context, b *Session, base string) error {
					return mustCreate(ctx, b, base+"/n-", []byte("a"), zk.FlagSequence)
				},
				"undo": deleteChildren,
			},
			want: map[string]string{
				"request/none": "ok", "request/same": "unknown", "request/undo": "ok",
				"reply/none": "unknown", "reply/same": "unknown", "reply/undo": "unknown",
			},
			check: func(t *testing.T, obs *Session, base, cell, got string) {
				names := childrenOf(t, obs, base)
				want := map[string]int{"request/none": 1, "request/same": 1, "request/undo": 1, "reply/none": 1, "reply/same": 2, "reply/undo": 0}[cell]
				if len(names) != want {
					t.Errorf("children %v, want %d: applied twice or lost", names, want)
				}
			},
		},
		{
			name: "create-protected",
			op:   wirefault.Request{Op: wirefault.OpCreate, Path: "/" + ProtectedPrefix},
			run: func(ctx context.Context, a *Session, base string) error {
				_, err := a.CreateProtected(ctx, base+"/lock-", []byte("a"), zk.FlagEphemeralSequential, nil)
				return err
			},
			other: map[string]func(context.Context, *Session, string) error{
				"none": none,
				"same": func(ctx context.Context, b *Session, base string) error {
					_, err := b.CreateProtected(ctx, base+"/lock-", []byte("a"), zk.FlagEphemeralSequential, nil)
					return err
				},
				"undo": deleteChildren,
			},
			want: map[string]string{
				"request/none": "ok", "request/same": "unknown", "request/undo": "ok",
				"reply/none": "ok", "reply/same": "ok", "reply/undo": "unknown",
			},
			check: func(t *testing.T, obs *Session, base, cell, got string) {
				mine := 0
				for _, c := range childrenOf(t, obs, base) {
					if _, st := read(t, obs, base+"/"+c); st != nil && st.EphemeralOwner == aSession() {
						mine++
					}
				}
				if want := map[bool]int{true: 1, false: 0}[got == "ok"]; mine != want {
					t.Errorf("A owns %d nodes after %s, want %d", mine, got, want)
				}
			},
		},
		setCase("set-version", 0),
		setCase("set-any-version", -1),
		{
			name: "delete",
			op:   wirefault.Request{Op: wirefault.OpDelete, Path: "/n"},
			setup: func(t *testing.T, obs *Session, base string) {
				if err := mustCreate(ctxT(t, 10*time.Second), obs, n(base), []byte("old"), 0); err != nil {
					t.Fatal(err)
				}
			},
			run: func(ctx context.Context, a *Session, base string) error {
				return a.Delete(ctx, n(base), -1)
			},
			other: map[string]func(context.Context, *Session, string) error{
				"none": none,
				"same": deleteAt(n),
				"undo": func(ctx context.Context, b *Session, base string) error {
					// Delete (if A's did not) and make a new node there.
					if err := b.Delete(ctx, n(base), -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
						return err
					}
					return mustCreate(ctx, b, n(base), []byte("B's"), 0)
				},
			},
			want: map[string]string{
				"request/none": "ok", "request/same": "unknown", "request/undo": "unknown",
				"reply/none": "unknown", "reply/same": "unknown", "reply/undo": "unknown",
			},
			check: func(t *testing.T, obs *Session, base, cell, got string) {
				d, st := read(t, obs, n(base))
				if strings.HasSuffix(cell, "/undo") && (st == nil || d != "B's") {
					t.Errorf("B's new node was deleted or changed: %q %v", d, st)
				}
				if !strings.HasSuffix(cell, "/undo") && st != nil {
					t.Errorf("the node is still there after %s", got)
				}
			},
		},
		{
			name: "multi-create",
			op:   wirefault.Request{Op: wirefault.OpMulti, Path: "/n"},
			run: func(ctx context.Context, a *Session, base string) error {
				_, err := a.Multi(ctx, &zk.CreateRequest{Path: n(base), Data: []byte("a")})
				return err
			},
			other: map[string]func(context.Context, *Session, string) error{
				"none": none,
				"same": createAt(n, []byte("a"), 0),
				"undo": deleteAt(n),
			},
			want: map[string]string{
				"request/none": "ok", "request/same": "unknown", "request/undo": "ok",
				"reply/none": "unknown", "reply/same": "unknown", "reply/undo": "unknown",
			},
			check: func(t *testing.T, obs *Session, base, cell, got string) {
				if _, st := read(t, obs, n(base)); cell == "reply/undo" && st != nil {
					t.Error("the node B removed is back: the transaction ran twice")
				}
			},
		},
		{
			name: "multi-create-and-set",
			op:   wirefault.Request{Op: wirefault.OpMulti, Path: "/n"},
			setup: func(t *testing.T, obs *Session, base string) {
				if err := mustCreate(ctxT(t, 10*time.Second), obs, base+"/q", []byte("0"), 0); err != nil {
					t.Fatal(err)
				}
			},
			run: func(ctx context.Context, a *Session, base string) error {
				_, err := a.Multi(ctx, &zk.CreateRequest{Path: n(base), Data: []byte("a")}, &zk.SetDataRequest{Path: base + "/q", Data: []byte("1"), Version: 0})
				return err
			},
			other: map[string]func(context.Context, *Session, string) error{
				"none": none,
				"same": createAt(n, []byte("a"), 0),
				"undo": func(ctx context.Context, b *Session, base string) error {
					_, err := b.Set(ctx, base+"/q", []byte("B's"), -1)
					return err
				},
			},
			want: map[string]string{
				"request/none": "ok", "request/same": "exists", "request/undo": "badversion",
				"reply/none": "unknown", "reply/same": "unknown", "reply/undo": "unknown",
			},
			check: func(t *testing.T, obs *Session, base, cell, got string) {
				d, st := read(t, obs, base+"/q")
				if strings.HasSuffix(cell, "/undo") && d != "B's" {
					t.Errorf("B's write to q was overwritten: %q", d)
				}
				if cell == "request/none" && (d != "1" || st.Version != 1) {
					t.Errorf("q = %q v%d, want the transaction applied once", d, st.Version)
				}
			},
		},
		{
			name: "multi-ephemeral-proof",
			op:   wirefault.Request{Op: wirefault.OpMulti, Path: "/mark"},
			setup: func(t *testing.T, obs *Session, base string) {
				if err := mustCreate(ctxT(t, 10*time.Second), obs, base+"/q", []byte("0"), 0); err != nil {
					t.Fatal(err)
				}
			},
			run: func(ctx context.Context, a *Session, base string) error {
				_, err := a.Multi(ctx, &zk.CreateRequest{Path: base + "/mark", Data: []byte("a"), Flags: zk.FlagEphemeral}, &zk.SetDataRequest{Path: base + "/q", Data: []byte("1"), Version: -1})
				return err
			},
			other: map[string]func(context.Context, *Session, string) error{
				"none": none,
				"same": func(ctx context.Context, b *Session, base string) error {
					_, err := b.Set(ctx, base+"/q", []byte("1"), -1)
					return err
				},
				"undo": func(ctx context.Context, b *Session, base string) error {
					_, err := b.Set(ctx, base+"/q", []byte("0"), -1)
					return err
				},
			},
			want: map[string]string{
				"request/none": "ok", "request/same": "ok", "request/undo": "ok",
				"reply/none": "ok", "reply/same": "ok", "reply/undo": "ok",
			},
			check: func(t *testing.T, obs *Session, base, cell, got string) {
				if _, st := read(t, obs, base+"/mark"); st == nil || st.EphemeralOwner != aSession() {
					t.Errorf("the transaction's marker is %+v, want A's", st)
				}
			},
		},
	}
}

// setCase is a Set of "1" over "0" at version (or any version with -1).
func setCase(name string, version int32) verifyCase {
	n := func(base string) string { return base + "/n" }
	want := map[string]string{
		"request/none": "ok", "request/same": "unknown", "request/undo": "badversion",
		"reply/none": "unknown", "reply/same": "unknown", "reply/undo": "unknown",
	}
	if version < 0 {
		want["request/undo"] = "unknown"
	}
	return verifyCase{
		name: name,
		op:   wirefault.Request{Op: wirefault.OpSetData, Path: "/n"},
		setup: func(t *testing.T, obs *Session, base string) {
			if err := mustCreate(ctxT(t, 10*time.Second), obs, n(base), []byte("0"), 0); err != nil {
				t.Fatal(err)
			}
		},
		run: func(ctx context.Context, a *Session, base string) error {
			_, err := a.Set(ctx, n(base), []byte("1"), version)
			return err
		},
		other: map[string]func(context.Context, *Session, string) error{
			"none": func(context.Context, *Session, string) error { return nil },
			"same": func(ctx context.Context, b *Session, base string) error {
				_, err := b.Set(ctx, n(base), []byte("1"), -1)
				return err
			},
			"undo": func(ctx context.Context, b *Session, base string) error {
				_, err := b.Set(ctx, n(base), []byte("B's"), -1)
				return err
			},
		},
		want: want,
		check: func(t *testing.T, obs *Session, base, cell, got string) {
			d, st := read(t, obs, n(base))
			if strings.HasSuffix(cell, "/undo") && d != "B's" {
				t.Errorf("B's later write was overwritten: %q", d)
			}
			if cell == "request/none" && (d != "1" || st.Version != 1) {
				t.Errorf("node %q v%d, want the write applied once", d, st.Version)
			}
		},
	}
}

// seenBy waits until a has seen every transaction obs has, so that each
// of a's later tries counts obs's writes as made before it was sent. A
// Sync was not enough: one answered by the leader itself does not wait for
// the leader to apply writes that a follower has already acknowledged to
// obs, so its reply can carry a zxid below them (measured: 2 Syncs in 300
// on the leader, none on a follower), and the cell's answer was then
// "unknown": safe, but not the answer the cell tests.
func seenBy(t *testing.T, a, obs *Session) {
	t.Helper()
	want := obs.snap.Load().gen.info.lastZxid.Load()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := settleFor(ctxT(t, 10*time.Second), a); err != nil {
			t.Fatal(err)
		}
		got := a.snap.Load().gen.info.lastZxid.Load()
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a has seen zxid %#x after 10s of syncs, obs wrote at %#x", got, want)
		}
	}
}

// settleFor makes s's server apply every write acknowledged before the
// call (see settle), with the session's retries.
func settleFor(ctx context.Context, s *Session) error {
	_, err := s.Multi(ctx, &zk.CheckVersionRequest{Path: "/", Version: -1})
	return err
}

func childrenOf(t *testing.T, s *Session, p string) []string {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	if err := settleFor(ctx, s); err != nil {
		t.Fatal(err)
	}
	names, _, err := s.Children(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestVerifyMatrix(t *testing.T) {
	needZK(t)
	in := wirefault.New()
	t.Cleanup(in.Release)
	a := connect(t, ens.Addrs(), WithDialer(in.Dial), WithSessionTimeout(10*time.Second))
	obs := connect(t, ens.Addrs())
	root := testPath(t, obs)
	modes := map[string]wirefault.Mode{"request": wirefault.LoseRequest, "reply": wirefault.LoseReply}
	for _, c := range verifyCases(a.SessionID) {
		for _, m := range []string{"request", "reply"} {
			for _, scen := range []string{"none", "same", "undo"} {
				cell := m + "/" + scen
				t.Run(c.name+"/"+cell, func(t *testing.T) {
					base := path.Join(root, c.name+"-"+m+"-"+scen)
					if err := mustCreate(ctxT(t, 10*time.Second), obs, base, nil, 0); err != nil {
						t.Fatal(err)
					}
					if c.setup != nil {
						c.setup(t, obs, base)
					}
					seenBy(t, a, obs)
					fired := in.Arm(modes[m], func(r wirefault.Request) bool {
						return r.Op == c.op.Op && strings.HasPrefix(r.Path, base+c.op.Path)
					})
					errc := make(chan error, 1)
					go func() { errc <- c.run(ctxT(t, 30*time.Second), a, base) }()
					select {
					case <-fired:
					case err := <-errc:
						t.Fatalf("the operation returned (%v) before its request was lost", err)
					case <-time.After(10 * time.Second):
						t.Fatal("the armed fault never fired")
					}
					if err := c.other[scen](ctxT(t, 10*time.Second), obs, base); err != nil {
						t.Fatalf("B's %s: %v", scen, err)
					}
					in.Release()
					var err error
					select {
					case err = <-errc:
					case <-time.After(30 * time.Second):
						t.Fatal("the operation did not return after the reconnect")
					}
					got := answer(err)
					if want := c.want[cell]; got != want {
						t.Errorf("answer %q (%v), want %q", got, err, want)
					}
					c.check(t, obs, base, cell, got)
				})
			}
		}
	}
}

// A protected ephemeral create that go-zookeeper/zk sends on the session
// after the one it was meant for, and whose reply is lost too, fails with
// ErrSessionLost and leaves no node on the new session (where it would
// block every later contender of a queue for that session's lifetime).
func TestQueuedProtectedCreateWithLostReplyLeavesNoNode(t *testing.T) {
	needZK(t)
	restore(t)
	in := wirefault.New()
	t.Cleanup(in.Release)
	obs := connect(t, ens.Addrs())
	a := connect(t, ens.Addrs(), WithDialer(in.Dial), WithSessionTimeout(4*time.Second), WithPresumedExpiry(0))
	base := testPath(t, obs)
	old := a.SessionID()
	fired := in.Arm(wirefault.LoseReply, func(r wirefault.Request) bool {
		return r.Op == wirefault.OpCreate && strings.HasPrefix(r.Path, base+"/")
	})
	go func() {
		<-fired
		in.Release() // the new session reconnects at once
	}()
	first := true
	a.testHookTry = func(sn *snapshot) {
		if !first {
			return
		}
		first = false
		// The try below runs on this snapshot of session old while
		// go-zookeeper/zk is already reconnecting after old expired, so
		// its request waits in go-zookeeper/zk's queue and goes out on
		// the next session.
		in.Hold()
		if err := ens.ExpireSession(ctxT(t, 10*time.Second), old); err != nil {
			t.Error(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for sn.gen.conn.State() == zk.StateHasSession && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		go func() {
			time.Sleep(100 * time.Millisecond) // lets the create into the queue; either order sends it on the next session
			in.Release()
		}()
	}
	_, err := a.CreateProtected(ctxT(t, 30*time.Second), base+"/lock-", nil, zk.FlagEphemeralSequential, nil)
	if !errors.Is(err, ErrSessionLost) {
		t.Fatalf("create: %v, want ErrSessionLost", err)
	}
	if a.SessionID() == old {
		t.Fatal("no new session; the scenario did not happen")
	}
	select {
	case <-fired:
	default:
		t.Fatal("the create's reply was not lost; the scenario did not happen")
	}
	next := a.SessionID()
	deadline := time.Now().Add(10 * time.Second)
	for {
		names := childrenOf(t, obs, base)
		if len(names) == 0 {
			if a.SessionID() != next {
				t.Fatal("the new session ended too, taking the node with it: nothing was shown")
			}
			return
		}
		if time.Now().After(deadline) {
			_, st := read(t, obs, base+"/"+names[0])
			t.Fatalf("stray node %v left (owner %#x, new session %#x)", names, st.EphemeralOwner, a.SessionID())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
