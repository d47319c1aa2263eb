package registry

import (
	"context"
	"errors"
	"path"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/wirefault"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// The registry's wait-and-verify matrix. Client A's Register, Update or
// Unregister loses its write's request or reply; before A may reconnect,
// client B (a plain session) does nothing, makes the same write, deletes
// the node, writes other data to it, or deletes it and creates its own
// node at the path. Every answer must be true or wrap ErrOutcomeUnknown (or
// be ErrIDInUse where another session's node holds the path), nothing may
// be applied twice and no node of B's may be deleted or overwritten. The
// expected answer of every cell is written out.
type regCase struct {
	name string
	op   int32 // the opcode of A's write that is lost
	// registered: A registers (port 1) before the fault.
	registered bool
	run        func(ctx context.Context, r *Registry, reg **Registration) error
	want       map[string]string // "request/none" -> answer
}

func regAnswer(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, resilience.ErrOutcomeUnknown):
		return "unknown"
	case errors.Is(err, ErrIDInUse):
		return "idinuse"
	}
	return "error: " + err.Error()
}

var (
	dataA1 = fixed(instance("api", "host-1", 1)) // what A registers
	dataA2 = fixed(instance("api", "host-1", 2)) // what A's Update writes
	dataB  = fixed(instance("api", "host-1", 9)) // B's other data
)

// fixed gives in the fields Register would fill in, so that B can write
// exactly what A writes.
func fixed(in Instance) Instance {
	in.RegistrationTimeUTC, in.ServiceType = 1700000000000, Dynamic
	return in
}

func regCases() []regCase {
	return []regCase{
		{
			name: "register", op: wirefault.OpCreate,
			run: func(ctx context.Context, r *Registry, reg **Registration) error {
				g, err := r.Register(ctx, dataA1)
				*reg = g
				return err
			},
			want: map[string]string{
				"request/none": "ok", "request/same": "idinuse", "request/delete": "ok", "request/other": "ok", "request/recreate": "idinuse",
				"reply/none": "ok", "reply/same": "ok", "reply/delete": "ok", "reply/other": "ok", "reply/recreate": "idinuse",
			},
		},
		{
			name: "update", op: wirefault.OpSetData, registered: true,
			run: func(ctx context.Context, r *Registry, reg **Registration) error {
				return (*reg).Update(ctx, dataA2)
			},
			want: map[string]string{
				"request/none": "ok", "request/same": "ok", "request/delete": "ok", "request/other": "ok", "request/recreate": "idinuse",
				"reply/none": "ok", "reply/same": "ok", "reply/delete": "ok", "reply/other": "unknown", "reply/recreate": "idinuse",
			},
		},
		{
			name: "unregister", op: wirefault.OpDelete, registered: true,
			run: func(ctx context.Context, r *Registry, reg **Registration) error {
				return (*reg).Unregister(ctx)
			},
			want: map[string]string{
				"request/none": "ok", "request/same": "ok", "request/other": "ok", "request/recreate": "ok",
				"reply/none": "ok", "reply/same": "ok", "reply/other": "ok", "reply/recreate": "ok",
			},
		},
	}
}

// bActs is what B does while A is cut off. It returns the stat of B's own
// node when it made one.
func bActs(ctx context.Context, t *testing.T, op, scen string, b *resilience.Session, p string) *zk.Stat {
	t.Helper()
	ignore := func(err error, what ...error) {
		t.Helper()
		for _, w := range what {
			if errors.Is(err, w) {
				return
			}
		}
		if err != nil {
			t.Fatalf("B's %s: %v", scen, err)
		}
	}
	del := func() { ignore(b.Delete(ctx, p, -1), zk.ErrNoNode) }
	switch scen {
	case "none":
	case "same":
		switch op {
		case "register":
			_, err := b.Create(ctx, p, mustJSON(t, dataA1), zk.FlagEphemeral, nil)
			ignore(err, zk.ErrNodeExists)
			if err == nil {
				_, st := stat(t, b, p)
				return st
			}
		case "update":
			_, err := b.Set(ctx, p, mustJSON(t, dataA2), -1)
			ignore(err)
		case "unregister":
			del()
		}
	case "delete":
		del()
	case "other":
		_, err := b.Set(ctx, p, mustJSON(t, dataB), -1)
		ignore(err, zk.ErrNoNode)
	case "recreate":
		del()
		if _, err := b.Create(ctx, p, mustJSON(t, dataB), zk.FlagEphemeral, nil); err != nil {
			t.Fatalf("B's create: %v", err)
		}
		_, st := stat(t, b, p)
		return st
	}
	return nil
}

func TestRegistryVerifyMatrix(t *testing.T) {
	needZK(t)
	in := wirefault.New()
	t.Cleanup(in.Release)
	a := connect(t, ens.Addrs(), resilience.WithDialer(in.Dial), resilience.WithSessionTimeout(10*time.Second))
	b := connect(t, ens.Addrs())
	root := basePath()
	modes := map[string]wirefault.Mode{"request": wirefault.LoseRequest, "reply": wirefault.LoseReply}
	for _, c := range regCases() {
		for _, m := range []string{"request", "reply"} {
			for _, scen := range []string{"none", "same", "delete", "other", "recreate"} {
				cell := m + "/" + scen
				want, ok := c.want[cell]
				if !ok {
					continue
				}
				t.Run(c.name+"/"+cell, func(t *testing.T) {
					ctx := ctxT(t, time.Minute)
					base := path.Join(root, c.name+"-"+m+"-"+scen)
					if err := ensure(ctx, b, path.Join(base, "api")); err != nil {
						t.Fatal(err)
					}
					r, err := New(a, base)
					if err != nil {
						t.Fatal(err)
					}
					defer r.Close()
					p := path.Join(base, "api", "host-1")
					var reg *Registration
					if c.registered {
						if reg, err = r.Register(ctx, dataA1); err != nil {
							t.Fatal(err)
						}
					}
					if err := znode.Settle(ctx, a); err != nil {
						t.Fatal(err)
					}
					fired := in.Arm(modes[m], func(q wirefault.Request) bool { return q.Op == c.op && q.Path == p })
					errc := make(chan error, 1)
					go func() { errc <- c.run(ctx, r, &reg) }()
					select {
					case <-fired:
					case err := <-errc:
						t.Fatalf("the operation returned (%v) before its write was lost", err)
					case <-time.After(20 * time.Second):
						t.Fatal("the armed fault never fired")
					}
					theirs := bActs(ctx, t, c.name, scen, b, p)
					in.Release()
					var got string
					select {
					case err = <-errc:
						got = regAnswer(err)
					case <-time.After(40 * time.Second):
						t.Fatal("the operation did not return after the reconnect")
					}
					if got != want {
						t.Errorf("answer %q (%v), want %q", got, err, want)
					}
					checkCell(t, c.name, cell, got, a, b, p, reg, theirs)
					if reg != nil {
						_ = reg.Unregister(ctx)
					}
					if theirs != nil {
						_ = b.Delete(ctx, p, -1)
					}
				})
			}
		}
	}
}

// checkCell looks at the tree after a cell.
func checkCell(t *testing.T, op, cell, got string, a, b *resilience.Session, p string, reg *Registration, theirs *zk.Stat) {
	t.Helper()
	d, st := stat(t, b, p)
	names, _, err := b.Children(ctxT(t, 10*time.Second), path.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) > 1 {
		t.Errorf("nodes %v under the service: applied twice", names)
	}
	if theirs != nil && got != "ok" || theirs != nil && op == "unregister" {
		// B's node must be untouched.
		if st == nil || st.Czxid != theirs.Czxid || st.Version != theirs.Version || st.EphemeralOwner != b.SessionID() {
			t.Errorf("B's node was deleted or overwritten: %+v, was %+v", st, theirs)
		}
	}
	switch {
	case op == "unregister":
		if theirs == nil && st != nil {
			t.Errorf("A's node is still there after Unregister: %+v", st)
		}
	case got == "ok":
		want := dataA1
		if op == "update" {
			want = dataA2
		}
		if st == nil || st.EphemeralOwner != a.SessionID() || string(d) != string(mustJSON(t, want)) {
			t.Errorf("answer ok, but the node is %+v holding %s, want A's with %s", st, d, mustJSON(t, want))
		}
		if reg == nil || reg.Err() != nil {
			t.Errorf("answer ok, but the registration is %v", reg)
		} else if st != nil {
			// It knows its node now: by creation zxid, or (a node it has
			// just created) by path and owner session. And it learns the
			// creation zxid without being asked to write (the guard's
			// watch read).
			if !reg.identifies(p, st) {
				t.Errorf("the registration does not know its node (czxid %d, owner %#x)", st.Czxid, st.EphemeralOwner)
			}
			deadline := time.Now().Add(10 * time.Second)
			for !reg.czxidIs(st.Czxid) && reg.Err() == nil && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if !reg.czxidIs(st.Czxid) {
				t.Errorf("the registration did not learn its node's czxid %d (err %v)", st.Czxid, reg.Err())
			}
		}
	case got == "idinuse":
		if reg != nil && !errors.Is(reg.Err(), ErrIDInUse) {
			t.Errorf("ErrIDInUse, but the registration goes on: %v", reg.Err())
		}
	case got == "unknown" && op == "update":
		// Update's reply/other: B's later write is left alone.
		if st == nil || string(d) != string(mustJSON(t, dataB)) {
			t.Errorf("B's later write was overwritten: %+v %s", st, d)
		}
	}
}

// identifies reports whether the registration takes the node st at p for
// its own: by creation zxid, or a fresh node by path and owner.
func (g *Registration) identifies(p string, st *zk.Stat) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.nodePath != p {
		return false
	}
	if g.fresh {
		return g.sid != 0 && st.EphemeralOwner == g.sid
	}
	return g.czxid != 0 && g.czxid == st.Czxid
}
