package registry

import (
	"encoding/json"
	"errors"
	"path"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/wirefault"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// A registration learns its new node's creation zxid from the guard's
// first watch read, and only from the node its session owns. Here that read
// loses its request; while A's reconnect is held, B replaces A's node with
// its own (one transaction). When A is back, the guard reads B's node: the
// registration must not take it for its own, but end with ErrIDInUse and
// leave B's node alone. (A Register that reads its node back itself sees
// the same thing there and returns ErrIDInUse; that answer is right too.)
func TestNewNodeLearnedOnlyFromOwnSession(t *testing.T) {
	needZK(t)
	testkit.Restore(t, ens)
	in := wirefault.New()
	t.Cleanup(in.Release)
	a := connect(t, ens.Addrs(), resilience.WithDialer(in.Dial), resilience.WithSessionTimeout(10*time.Second))
	b := connect(t, ens.Addrs())
	ctx := ctxT(t, time.Minute)
	base := basePath()
	if err := ensure(ctx, b, path.Join(base, "api")); err != nil {
		t.Fatal(err)
	}
	r, err := New(a, base)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p := path.Join(base, "api", "host-1")
	if err := znode.Settle(ctx, a); err != nil {
		t.Fatal(err)
	}
	fired := in.Arm(wirefault.LoseRequest, func(q wirefault.Request) bool { return q.Op == wirefault.OpExists && q.Path == p })
	type result struct {
		reg *Registration
		err error
	}
	done := make(chan result, 1)
	go func() {
		reg, err := r.Register(ctx, instance("api", "host-1", 1))
		done <- result{reg, err}
	}()
	select {
	case <-fired:
	case <-time.After(20 * time.Second):
		t.Fatal("no read of the new node was sent")
	}
	_, mine := stat(t, b, p)
	if mine == nil || mine.EphemeralOwner != a.SessionID() {
		t.Fatalf("A's node: %+v, want one of session %#x", mine, a.SessionID())
	}
	if _, err := b.Multi(ctx, &zk.DeleteRequest{Path: p, Version: mine.Version},
		&zk.CreateRequest{Path: p, Data: mustJSON(t, instance("api", "host-1", 2)), Flags: zk.FlagEphemeral}); err != nil {
		t.Fatal(err)
	}
	_, theirs := stat(t, b, p)
	count := deletions(t, b, p)
	in.Release()

	var res result
	select {
	case res = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Register did not return after the reconnect")
	}
	switch {
	case errors.Is(res.err, ErrIDInUse):
		t.Logf("Register itself saw B's node: %v", res.err)
	case res.err != nil:
		t.Fatalf("Register: %v", res.err)
	default:
		reg := res.reg
		select {
		case <-reg.Done():
		case <-time.After(20 * time.Second):
			reg.mu.Lock()
			czxid, fresh, sid := reg.czxid, reg.fresh, reg.sid
			reg.mu.Unlock()
			t.Fatalf("the registration goes on (czxid %d, fresh %v, session %#x) while B's node (czxid %d, owner %#x) holds its path",
				czxid, fresh, sid, theirs.Czxid, theirs.EphemeralOwner)
		}
		if !errors.Is(reg.Err(), ErrIDInUse) {
			t.Fatalf("registration ended with %v, want ErrIDInUse", reg.Err())
		}
		if reg.czxidIs(theirs.Czxid) {
			t.Fatalf("the ended registration holds B's czxid %d", theirs.Czxid)
		}
	}
	if n := count(); n != 0 {
		t.Fatalf("B's node was deleted %d times", n)
	}
	if _, st := stat(t, b, p); st == nil || st.Czxid != theirs.Czxid || st.Version != theirs.Version || st.EphemeralOwner != b.SessionID() {
		t.Fatalf("B's node is %+v, was %+v", st, theirs)
	}
}

// Update and Unregister of a registration whose new node's creation zxid
// is not known yet (the state Register leaves until the guard's first
// read) know the node by its owner: their own node is written or deleted
// (and its czxid learned), a node another session put at the path is left
// alone. The guard is stopped so that the state stays as set here.
func TestFreshNodeUpdateUnregister(t *testing.T) {
	needZK(t)
	for _, c := range []struct {
		op       string
		replaced bool
	}{{"update", false}, {"update", true}, {"unregister", false}, {"unregister", true}} {
		name := c.op + "/own"
		if c.replaced {
			name = c.op + "/replaced"
		}
		t.Run(name, func(t *testing.T) {
			ctx := ctxT(t, time.Minute)
			a, b := connect(t, ens.Addrs()), connect(t, ens.Addrs())
			r, err := New(a, basePath())
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			reg, err := r.Register(ctx, instance("api", "host-1", 1))
			if err != nil {
				t.Fatal(err)
			}
			p := reg.Path()
			reg.stop()
			reg.mu.Lock()
			reg.czxid, reg.fresh = 0, true
			reg.known++
			reg.mu.Unlock()
			_, before := stat(t, b, p)
			if before == nil || before.EphemeralOwner != a.SessionID() {
				t.Fatalf("A's node: %+v", before)
			}
			if c.replaced {
				if _, err := b.Multi(ctx, &zk.DeleteRequest{Path: p, Version: before.Version},
					&zk.CreateRequest{Path: p, Data: mustJSON(t, instance("api", "host-1", 2)), Flags: zk.FlagEphemeral}); err != nil {
					t.Fatal(err)
				}
				_, before = stat(t, b, p)
			}
			switch c.op {
			case "update":
				err = reg.Update(ctx, instance("api", "host-1", 3))
			case "unregister":
				err = reg.Unregister(ctx)
			}
			d, st := stat(t, b, p)
			switch {
			case c.replaced:
				if c.op == "update" && !errors.Is(err, ErrIDInUse) {
					t.Errorf("Update over B's node: %v, want ErrIDInUse", err)
				}
				if c.op == "unregister" && err != nil {
					t.Errorf("Unregister: %v", err)
				}
				if st == nil || st.Czxid != before.Czxid || st.Version != before.Version || st.EphemeralOwner != b.SessionID() {
					t.Errorf("B's node is %+v, was %+v", st, before)
				}
			case c.op == "update":
				if err != nil {
					t.Fatalf("Update: %v", err)
				}
				var got Instance
				if st == nil || st.Czxid != before.Czxid || json.Unmarshal(d, &got) != nil || got.Port == nil || *got.Port != 3 {
					t.Errorf("after Update the node is %+v holding %s", st, d)
				}
				if !reg.czxidIs(before.Czxid) {
					t.Errorf("Update did not learn its node's czxid %d", before.Czxid)
				}
			default:
				if err != nil {
					t.Fatalf("Unregister: %v", err)
				}
				if st != nil {
					t.Errorf("after Unregister A's node is still there: %+v", st)
				}
			}
		})
	}
}
