package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/cache"
	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
	"github.com/zkrecipes/zkrecipes/zktest"
)

var ens *zktest.Ensemble

func TestMain(m *testing.M) { testkit.Main(m, &ens, 3) }

var (
	needZK  = testkit.NeedZK
	ctxT    = testkit.Ctx
	connect = testkit.Connect
)

func restore(t testing.TB) { testkit.Restore(t, ens) }

// truth reads the subtree at root afresh (after a sync).
func truth(t testing.TB, s *resilience.Session, root string) map[string]string {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	if err := znode.Settle(ctx, s); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var walk func(p string)
	walk = func(p string) {
		data, _, err := s.Get(ctx, p)
		if errors.Is(err, zk.ErrNoNode) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		out[p] = string(data)
		kids, _, err := s.Children(ctx, p)
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			t.Fatal(err)
		}
		for _, k := range kids {
			walk(path.Join(p, k))
		}
	}
	walk(root)
	return out
}

func asMap(snap map[string]cache.Entry) map[string]string {
	out := map[string]string{}
	for p, n := range snap {
		out[p] = string(n.Data)
	}
	return out
}

func diff(a, b map[string]string) string {
	var ks []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			ks = append(ks, fmt.Sprintf("%s: %q vs %q", k, v, b[k]))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			ks = append(ks, fmt.Sprintf("%s: missing vs %q", k, b[k]))
		}
	}
	sort.Strings(ks)
	if len(ks) > 5 {
		ks = append(ks[:5], fmt.Sprintf("... %d more", len(ks)-5))
	}
	return fmt.Sprint(ks)
}

// Random concurrent writers change a subtree while the cache's own session
// is partitioned past its timeout (so it expires). After the heal the cache
// equals a fresh read, and its events applied to its initial snapshot give
// the same contents.
func TestTreeCacheConvergesUnderPartitionAndExpiry(t *testing.T) {
	needZK(t)
	restore(t)
	ctx := ctxT(t, 2*time.Minute)
	root := testkit.Path("/treecache")
	w := connect(t, []string{ens.Server(1).Addr(), ens.Server(2).Addr()})
	if err := znode.EnsurePath(ctx, w, root); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Create(ctx, root+"/seed", []byte("0"), 0, nil); err != nil {
		t.Fatal(err)
	}
	cs := connect(t, []string{ens.Server(0).Addr()}, resilience.WithSessionTimeout(1500*time.Millisecond))
	tc, err := cache.NewTree(ctx, cs, root)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	view := map[string]string{}
	var initialized bool
	var vmu sync.Mutex
	eventsDone := make(chan struct{})
	go func() {
		defer close(eventsDone)
		for e := range tc.Events() {
			vmu.Lock()
			switch e.Type {
			case cache.NodeAdded, cache.NodeUpdated:
				view[e.Node.Path] = string(e.Node.Data)
			case cache.NodeRemoved:
				delete(view, e.Node.Path)
			case cache.Initialized:
				initialized = true
			}
			vmu.Unlock()
		}
	}()

	// Writers: create, update and delete nodes two levels deep.
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for wctx.Err() == nil {
				a := fmt.Sprintf("%s/a%d", root, rng.IntN(4))
				b := fmt.Sprintf("%s/b%d", a, rng.IntN(4))
				v := []byte(fmt.Sprint(rng.IntN(1000)))
				var err error
				switch rng.IntN(4) {
				case 0:
					_, err = w.Create(wctx, a, v, 0, nil)
				case 1:
					_, err = w.Create(wctx, b, v, 0, nil)
				case 2:
					_, err = w.Set(wctx, b, v, -1)
				case 3:
					err = w.Delete(wctx, b, -1)
					if err == nil || errors.Is(err, zk.ErrNoNode) {
						err = w.Delete(wctx, a, -1)
					}
				}
				_ = err // conflicts are part of the game
				time.Sleep(time.Millisecond)
			}
		}()
	}
	// An ephemeral of the cache's session: its going shows the ensemble
	// expired the session (the session is Lost only on the ensemble's word).
	marker, err := cs.Create(ctx, root+"-marker", nil, zk.FlagEphemeral, nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	ens.Server(0).Proxy().Blackhole()
	testkit.WaitFor(t, time.Minute, "the cache's session to expire", func() bool {
		ok, _, err := w.Exists(ctx, marker)
		return err == nil && !ok
	})
	time.Sleep(time.Second) // keep writing while the cache is cut off
	ens.Server(0).Proxy().Heal()
	if err := cs.WaitState(ctx, resilience.Connected); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	stop()
	wg.Wait()

	want := truth(t, w, root)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := asMap(tc.Snapshot())
		vmu.Lock()
		v := map[string]string{}
		for k, x := range view {
			v[k] = x
		}
		vmu.Unlock()
		if diff(got, want) == "[]" && diff(v, want) == "[]" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cache never converged\ncache vs truth: %s\nevents vs truth: %s", diff(got, want), diff(v, want))
		}
		time.Sleep(20 * time.Millisecond)
	}
	vmu.Lock()
	if !initialized {
		t.Error("no Initialized event")
	}
	vmu.Unlock()
	t.Logf("converged on %d nodes", len(want))
	tc.Close()
	<-eventsDone
}

func TestNodeCache(t *testing.T) {
	needZK(t)
	ctx := ctxT(t, time.Minute)
	s := connect(t, ens.Addrs())
	p := testkit.Path("/nodecache")
	if err := znode.EnsurePath(ctx, s, path.Dir(p)); err != nil {
		t.Fatal(err)
	}
	nc, err := cache.NewNode(ctx, s, p)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	next := func(want cache.EventType) cache.Event {
		t.Helper()
		for {
			select {
			case e := <-nc.Events():
				if e.Type == want {
					return e
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no %v event", want)
			}
		}
	}
	next(cache.Initialized)
	if _, ok := nc.Entry(); ok {
		t.Fatal("a missing node is cached")
	}
	if _, err := s.Create(ctx, p, []byte("v1"), 0, nil); err != nil {
		t.Fatal(err)
	}
	if e := next(cache.NodeAdded); string(e.Node.Data) != "v1" {
		t.Fatalf("added %q", e.Node.Data)
	}
	if _, err := s.Set(ctx, p, []byte("v2"), -1); err != nil {
		t.Fatal(err)
	}
	if e := next(cache.NodeUpdated); string(e.Node.Data) != "v2" {
		t.Fatalf("updated %q", e.Node.Data)
	}
	if n, ok := nc.Entry(); !ok || !bytes.Equal(n.Data, []byte("v2")) {
		t.Fatalf("Node() = %q, %v", n.Data, ok)
	}
	if err := s.Delete(ctx, p, -1); err != nil {
		t.Fatal(err)
	}
	next(cache.NodeRemoved)
	// Children of a depth-0 cache are not followed. Two updates of the
	// node after the child was created, the second made only once the
	// first was reported, fence the check: a cache that descended would
	// have read the child, on the child watch set when it read the node or
	// in the refresh that reports the first update, before it reports the
	// second.
	if _, err := s.Create(ctx, p, nil, 0, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, p+"/kid", nil, 0, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for _, v := range []string{"v3", "v4"} {
		if _, err := s.Set(ctx, p, []byte(v), -1); err != nil {
			t.Fatal(err)
		}
		for done := false; !done; {
			select {
			case e := <-nc.Events():
				if e.Node.Path != p {
					t.Fatalf("depth-0 cache reported %v of %s", e.Type, e.Node.Path)
				}
				done = e.Type == cache.NodeUpdated && string(e.Node.Data) == v
			case <-deadline:
				t.Fatalf("no update to %q reported", v)
			}
		}
	}
	if nc.Len() != 1 {
		t.Fatalf("depth-0 cache holds %d nodes", nc.Len())
	}
	_ = s.Delete(ctx, p+"/kid", -1)
	_ = s.Delete(ctx, p, -1)
}
