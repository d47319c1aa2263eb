package recipes_test

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// znode.Create, the create-with-parents every recipe uses: missing parents
// are made, a node already there is an error or not as
// asked, sequential and ephemeral nodes get their flags, concurrent
// creators under the same missing parents all succeed.
func TestZnodeCreate(t *testing.T) {
	needZK(t)
	ctx := ctxT(t, time.Minute)
	s := connect(t, ens.Addrs())
	base := testkit.Path("/znode")
	leaf := base + "/a/b/leaf"

	got, err := znode.Create(ctx, s, leaf, []byte("v1"), zk.FlagPersistent, false)
	if err != nil || got != leaf {
		t.Fatalf("Create(%s) = %q, %v", leaf, got, err)
	}
	if data, _, err := s.Get(ctx, leaf); err != nil || !bytes.Equal(data, []byte("v1")) {
		t.Fatalf("leaf holds %q, %v", data, err)
	}
	if _, st, err := s.Get(ctx, leaf); err != nil || st.EphemeralOwner != 0 {
		t.Fatalf("leaf: owner %#x, %v; want a persistent node", st.EphemeralOwner, err)
	}
	// The parents exist and belong to no session. (That they are
	// containers cannot be seen from a client: ZooKeeper reports a
	// container's ephemeralOwner as 0, and deletes an empty one only at
	// its container check, every 60 s by default.)
	for _, parent := range []string{base, base + "/a", base + "/a/b"} {
		ok, st, err := s.Exists(ctx, parent)
		if err != nil || !ok {
			t.Fatalf("parent %s: exists %v, %v", parent, ok, err)
		}
		if st.EphemeralOwner != 0 {
			t.Errorf("parent %s has ephemeralOwner %#x, want 0", parent, st.EphemeralOwner)
		}
	}

	if _, err := znode.Create(ctx, s, leaf, []byte("v2"), zk.FlagPersistent, false); !errors.Is(err, zk.ErrNodeExists) {
		t.Errorf("Create of an existing node, existsOK false: %v, want ErrNodeExists", err)
	}
	if got, err := znode.Create(ctx, s, leaf, []byte("v3"), zk.FlagPersistent, true); err != nil || got != leaf {
		t.Errorf("Create of an existing node, existsOK true: %q, %v; want %q, nil", got, err, leaf)
	}
	if data, _, err := s.Get(ctx, leaf); err != nil || !bytes.Equal(data, []byte("v1")) {
		t.Errorf("an existing node's data became %q (%v): Create must leave it alone", data, err)
	}

	seq, err := znode.Create(ctx, s, base+"/q/n-", nil, zk.FlagSequence, false)
	if err != nil || !regexp.MustCompile(`^`+regexp.QuoteMeta(base)+`/q/n-\d{10}$`).MatchString(seq) {
		t.Fatalf("sequential Create under a missing parent = %q, %v", seq, err)
	}
	eph, err := znode.Create(ctx, s, base+"/e/f/mine", nil, zk.FlagEphemeral, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, st, err := s.Get(ctx, eph); err != nil || st.EphemeralOwner != s.SessionID() {
		t.Errorf("ephemeral node: owner %#x, %v; want this session %#x", st.EphemeralOwner, err, s.SessionID())
	}

	// Concurrent creators racing to make the same parents.
	others := []*resilience.Session{s, connect(t, ens.Addrs()), connect(t, ens.Addrs())}
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = znode.Create(ctx, others[i%3], fmt.Sprintf("%s/race/x/y/n%d", base, i), nil, zk.FlagPersistent, false)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("racing creator %d: %v", i, err)
		}
	}
	if n := len(testkit.Children(t, s, base+"/race/x/y")); n != len(errs) {
		t.Errorf("%d nodes under the raced parent, want %d", n, len(errs))
	}

	if _, err := znode.Create(ctx, s, base+"/bad/", nil, zk.FlagPersistent, false); !errors.Is(err, resilience.ErrInvalidPath) {
		t.Errorf("Create of an invalid path: %v, want ErrInvalidPath", err)
	}
	if err := znode.EnsurePath(ctx, s, "no-slash"); !errors.Is(err, resilience.ErrInvalidPath) {
		t.Errorf("EnsurePath of an invalid path: %v, want ErrInvalidPath", err)
	}
}
