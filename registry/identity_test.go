package registry

import (
	"context"
	"errors"
	"os"
	"path"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// identityWindow is how long two live registrants of one id are watched
// (REGISTRY_ID_WINDOW, a Go duration, overrides it).
func identityWindow(t *testing.T) time.Duration {
	if v := os.Getenv("REGISTRY_ID_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("REGISTRY_ID_WINDOW: %v", err)
		}
		return d
	}
	return 5 * time.Second
}

// stat reads p after a sync (nil if absent).
func stat(t testing.TB, s *resilience.Session, p string) ([]byte, *zk.Stat) {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	if err := znode.Settle(ctx, s); err != nil {
		t.Fatal(err)
	}
	d, st, err := s.Get(ctx, p)
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return d, st
}

// deletions counts how often the node at p is deleted, through watches,
// until stop is called. The first watch is set before it returns.
func deletions(t testing.TB, s *resilience.Session, p string) (stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int64
	var wg sync.WaitGroup
	ok, _, ch, err := s.ExistsW(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case ev := <-ch:
				if ok && ev.Type == zk.EventNodeDeleted {
					n.Add(1)
				}
			case <-ctx.Done():
				// stop synced first: an event for a deletion before it is
				// in ch by now.
				select {
				case ev := <-ch:
					if ok && ev.Type == zk.EventNodeDeleted {
						n.Add(1)
					}
				default:
				}
				return
			}
			for {
				ok, _, ch, err = s.ExistsW(ctx, p)
				if err == nil || ctx.Err() != nil {
					break
				}
			}
			if ctx.Err() != nil {
				return
			}
		}
	}()
	return func() int {
		// Watch events reach the client before the reply to a later
		// request of its session.
		if err := znode.Settle(ctxT(t, 10*time.Second), s); err != nil {
			t.Error(err)
		}
		cancel()
		wg.Wait()
		return int(n.Load())
	}
}

// Two live sessions register one id (a rolling restart with ID = hostname,
// say): the second is told ErrIDInUse, with the path and the owner, and
// the first's node is never deleted, however often the second retries.
func TestSecondLiveRegistrantGetsIDInUse(t *testing.T) {
	needZK(t)
	base := basePath()
	ctx := ctxT(t, 2*time.Minute)
	sa, sb, obs := connect(t, ens.Addrs()), connect(t, ens.Addrs()), connect(t, ens.Addrs())
	ra, _ := New(sa, base)
	defer ra.Close()
	rb, _ := New(sb, base)
	defer rb.Close()
	a, err := ra.Register(ctx, instance("api", "host-1", 1))
	if err != nil {
		t.Fatal(err)
	}
	p := a.Path()
	_, first := stat(t, obs, p)
	if first == nil || first.EphemeralOwner != sa.SessionID() {
		t.Fatalf("A's node: %+v", first)
	}
	count := deletions(t, obs, p)
	window := identityWindow(t)
	tries := 0
	for end := time.Now().Add(window); time.Now().Before(end); tries++ {
		_, err := rb.Register(ctx, instance("api", "host-1", 2))
		var inUse *IDInUseError
		if !errors.Is(err, ErrIDInUse) || !errors.As(err, &inUse) {
			t.Fatalf("second live registrant, try %d: %v, want ErrIDInUse", tries, err)
		}
		if inUse.Path != p || inUse.Owner != sa.SessionID() || inUse.Czxid != first.Czxid {
			t.Fatalf("ErrIDInUse names %s owner 0x%x czxid %d, want %s 0x%x %d", inUse.Path, inUse.Owner, inUse.Czxid, p, sa.SessionID(), first.Czxid)
		}
		time.Sleep(20 * time.Millisecond) // a retrying caller's pace, not a wait for a result
	}
	n := count()
	_, now := stat(t, obs, p)
	if now == nil || now.Czxid != first.Czxid || now.EphemeralOwner != sa.SessionID() {
		t.Fatalf("A's node was replaced: %+v, was czxid %d", now, first.Czxid)
	}
	if n > 1 {
		t.Fatalf("%d deletions of the node in %v", n, window)
	}
	select {
	case <-a.Done():
		t.Fatalf("A's registration ended: %v", a.Err())
	default:
	}
	t.Logf("Two live registrations with one ID for %v: %d deletions of the node between them, %d tries by the second, each ErrIDInUse naming %s and owner 0x%x",
		window, n, tries, p, sa.SessionID())

	// Through the same Session: ErrIDInUse too (Local), nothing written.
	ra2, _ := New(sa, base)
	defer ra2.Close()
	var inUse *IDInUseError
	if _, err := ra2.Register(ctx, instance("api", "host-1", 3)); !errors.As(err, &inUse) || !inUse.Local {
		t.Fatalf("second registration through one session: %v", err)
	}

	// The rolling restart's way: RegisterWait takes over once the old
	// registrant leaves, with exactly one deletion (the old one's own).
	count = deletions(t, obs, p)
	got := make(chan *Registration, 1)
	errc := make(chan error, 1)
	go func() {
		reg, err := rb.RegisterWait(ctx, instance("api", "host-1", 2))
		errc <- err
		got <- reg
	}()
	if err := a.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	b := <-got
	if _, st := stat(t, obs, p); st == nil || st.EphemeralOwner != sb.SessionID() {
		t.Fatalf("after the takeover the node is %+v, want B's", st)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d deletions during the takeover, want 1", n)
	}
	if err := b.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
}

// A registration whose node another live session replaces does not fight:
// it ends (Done, Err ErrIDInUse) and leaves the other node alone.
func TestReplacedRegistrationEndsWithoutFighting(t *testing.T) {
	needZK(t)
	base := basePath()
	ctx := ctxT(t, time.Minute)
	sa, sb := connect(t, ens.Addrs()), connect(t, ens.Addrs())
	ra, _ := New(sa, base)
	defer ra.Close()
	a, err := ra.Register(ctx, instance("api", "host-1", 1))
	if err != nil {
		t.Fatal(err)
	}
	p := a.Path()
	// B deletes A's node and makes its own in one transaction, so A's
	// guard cannot restore in between.
	_, st := stat(t, sb, p)
	if _, err := sb.Multi(ctx, &zk.DeleteRequest{Path: p, Version: st.Version},
		&zk.CreateRequest{Path: p, Data: mustJSON(t, instance("api", "host-1", 2)), Flags: zk.FlagEphemeral}); err != nil {
		t.Fatal(err)
	}
	_, theirs := stat(t, sb, p)
	count := deletions(t, sb, p)
	select {
	case <-a.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("A's registration did not notice that its node was replaced")
	}
	if !errors.Is(a.Err(), ErrIDInUse) {
		t.Fatalf("Err after the replacement: %v", a.Err())
	}
	if err := a.Update(ctx, instance("api", "host-1", 5)); !errors.Is(err, ErrIDInUse) {
		t.Fatalf("Update after the replacement: %v", err)
	}
	if err := a.Unregister(ctx); err != nil {
		t.Fatalf("Unregister after the replacement: %v", err)
	}
	if n := count(); n != 0 {
		t.Fatalf("B's node was deleted %d times", n)
	}
	if _, st := stat(t, sb, p); st == nil || st.Czxid != theirs.Czxid {
		t.Fatalf("B's node is %+v, was czxid %d", st, theirs.Czxid)
	}
}

// A persistent instance Curator registered (or anyone's persistent node)
// is never deleted or overwritten by Register, of any service type.
func TestRegisterLeavesPersistentNodeAlone(t *testing.T) {
	needZK(t)
	base := basePath()
	ctx := ctxT(t, time.Minute)
	raw := connect(t, ens.Addrs())
	p := path.Join(base, "api", "static-1")
	// What Curator's ServiceDiscovery writes for a STATIC instance.
	curator := []byte(`{"name":"api","id":"static-1","address":"10.0.0.9","port":7000,"sslPort":null,"payload":null,"registrationTimeUTC":1700000000000,"serviceType":"STATIC","uriSpec":null}`)
	if err := ensure(ctx, raw, path.Join(base, "api")); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Create(ctx, p, curator, 0, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Delete(context.Background(), p, -1) })
	_, before := stat(t, raw, p)
	s := connect(t, ens.Addrs())
	r, _ := New(s, base)
	defer r.Close()
	count := deletions(t, raw, p)
	for _, typ := range []ServiceType{Dynamic, Static, Permanent} {
		in := instance("api", "static-1", 1)
		in.ServiceType = typ
		_, err := r.Register(ctx, in)
		var inUse *IDInUseError
		if !errors.As(err, &inUse) || inUse.Owner != 0 || inUse.Path != p {
			t.Fatalf("Register %s over a persistent node: %v, want ErrIDInUse with owner 0", typ, err)
		}
		if _, err := r.RegisterWait(ctx, in); !errors.Is(err, ErrIDInUse) {
			t.Fatalf("RegisterWait %s over a persistent node: %v, want ErrIDInUse at once", typ, err)
		}
	}
	if n := count(); n != 0 {
		t.Fatalf("the persistent node was deleted %d times", n)
	}
	d, after := stat(t, raw, p)
	if after == nil || after.Czxid != before.Czxid || after.Version != before.Version || string(d) != string(curator) {
		t.Fatalf("the persistent node changed: %+v %s", after, d)
	}
}

func ensure(ctx context.Context, s *resilience.Session, p string) error {
	if p == "/" {
		return nil
	}
	if err := ensure(ctx, s, path.Dir(p)); err != nil {
		return err
	}
	if _, err := s.Create(ctx, p, nil, 0, nil); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return err
	}
	return nil
}

// A node left at the path by one of this client's own earlier sessions is
// replaced at once. The registry learns its Session's ids from the
// session's transitions; the leftover node (one that the Session's close
// of its old session has not removed yet) is stood in for by another live
// session's node whose id the registry is told is its own, which is what
// its transition listener records.
func TestRegisterReplacesOwnEarlierSessionNode(t *testing.T) {
	needZK(t)
	restore(t)
	base := basePath()
	ctx := ctxT(t, time.Minute)
	s := connect(t, ens.Addrs(), resilience.WithSessionTimeout(4*time.Second))
	r, _ := New(s, base)
	defer r.Close()

	// The listener records the Session's sessions.
	old := s.SessionID()
	if err := ens.ExpireSession(ctx, old); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.SessionID() == old || s.SessionID() == 0 || !r.isOwn(s.SessionID()) {
		if time.Now().After(deadline) {
			t.Fatal("no new session")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !r.isOwn(old) {
		t.Fatalf("the registry does not know its expired session 0x%x as its own", old)
	}

	left := connect(t, ens.Addrs())
	p := path.Join(base, "api", "host-1")
	if err := ensure(ctx, left, path.Dir(p)); err != nil {
		t.Fatal(err)
	}
	if _, err := left.Create(ctx, p, mustJSON(t, instance("api", "host-1", 1)), zk.FlagEphemeral, nil); err != nil {
		t.Fatal(err)
	}
	// Not ours yet: Register refuses it.
	if _, err := r.Register(ctx, instance("api", "host-1", 2)); !errors.Is(err, ErrIDInUse) {
		t.Fatalf("Register over a stranger's node: %v", err)
	}
	r.noteOwn(left.SessionID())
	reg, err := r.Register(ctx, instance("api", "host-1", 2))
	if err != nil {
		t.Fatalf("Register over a node of an own earlier session: %v", err)
	}
	if _, st := stat(t, left, p); st == nil || st.EphemeralOwner != s.SessionID() {
		t.Fatalf("the node is %+v, want one of the current session 0x%x", st, s.SessionID())
	}
	if err := reg.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
}

// A node whose JSON name or id disagrees with its path is malformed: not
// returned by Instances, reported as Malformed by a Cache.
func TestNodeDisagreeingWithPathIsMalformed(t *testing.T) {
	needZK(t)
	base := basePath()
	ctx := ctxT(t, time.Minute)
	s := connect(t, ens.Addrs())
	r, _ := New(s, base)
	defer r.Close()
	if _, err := r.Register(ctx, instance("svc", "good", 1)); err != nil {
		t.Fatal(err)
	}
	seq, err := r.Register(ctx, Instance{Name: "svc", ID: "seq", Address: "b", Port: Int(2), ServiceType: DynamicSequential})
	if err != nil {
		t.Fatal(err)
	}
	svc := path.Join(base, "svc")
	curatorSeq := Instance{Name: "svc", ID: "cseq", Address: "c", Port: Int(3), ServiceType: DynamicSequential}
	nodes := map[string][]byte{
		"other-id":          mustJSON(t, instance("svc", "someone", 4)),
		"other-name":        mustJSON(t, instance("elsewhere", "other-name", 5)),
		"cseq0000000007":    mustJSON(t, curatorSeq), // Curator's sequential name: valid
		"cseq-not-a-number": mustJSON(t, curatorSeq),
	}
	for n, d := range nodes {
		if _, err := s.Create(ctx, path.Join(svc, n), d, 0, nil); err != nil {
			t.Fatal(n, err)
		}
		t.Cleanup(func() { _ = s.Delete(context.Background(), path.Join(svc, n), -1) })
	}
	bad := map[string]bool{"other-id": true, "other-name": true, "cseq-not-a-number": true}
	want := map[string]int{"good": 1, "seq": 2, "cseq": 3}
	waitInstances(t, r, "svc", want, 10*time.Second)
	cache, err := r.NewCache(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	reported := map[string]bool{}
	for len(reported) < len(bad) {
		select {
		case e := <-cache.Events():
			if e.Type == Malformed {
				if !bad[e.Node] || !errors.Is(e.Err, ErrMalformed) {
					t.Fatalf("malformed event for %s: %v", e.Node, e.Err)
				}
				reported[e.Node] = true
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("reported %v of %v", keys(reported), keys(bad))
		}
	}
	got := map[string]int{}
	for _, in := range cache.Instances() {
		got[in.ID] = *in.Port
	}
	if len(got) != len(want) || got["good"] != 1 || got["seq"] != 2 || got["cseq"] != 3 {
		t.Fatalf("cache serves %v, want %v", got, want)
	}
	if err := seq.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
}
