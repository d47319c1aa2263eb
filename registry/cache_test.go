package registry

import (
	"cmp"
	"slices"
	"testing"
	"time"
)

// TestCacheInstancesFollowEvents checks the cache's promise to its
// readers while it changes one node at a time: an Added event's instance is
// in Instances when the event is received (nothing is removed meanwhile),
// a Removed one is gone, and Instances is ordered by id.
func TestCacheInstancesFollowEvents(t *testing.T) {
	needZK(t)
	ctx := ctxT(t, time.Minute)
	s := connect(t, ens.Addrs())
	r, err := New(s, basePath())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Registered in an order that is not the id order.
	ids := []string{"m", "c", "x", "a", "q", "b", "z", "k"}
	for _, id := range ids[:4] {
		if _, err := r.Register(ctx, instance("svc", id, 1)); err != nil {
			t.Fatal(err)
		}
	}
	cache, err := r.NewCache(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	has := func(id string) bool {
		return slices.ContainsFunc(cache.Instances(), func(in Instance) bool { return in.ID == id })
	}
	sorted := func() {
		t.Helper()
		got := cache.Instances()
		if !slices.IsSortedFunc(got, func(a, b Instance) int {
			return cmp.Compare(a.ID, b.ID)
		}) {
			t.Fatalf("Instances not ordered by id: %v", idsOf(got))
		}
	}
	next := func(want EventType) Event {
		t.Helper()
		select {
		case e := <-cache.Events():
			if e.Type != want {
				t.Fatalf("event %v %s, want %v", e.Type, e.Node, want)
			}
			return e
		case <-time.After(10 * time.Second):
			t.Fatalf("no %v event", want)
		}
		return Event{}
	}
	for range 4 {
		e := next(Added)
		if !has(e.Instance.ID) {
			t.Fatalf("initial Added %s not in Instances %v", e.Node, idsOf(cache.Instances()))
		}
	}
	sorted()
	regs := map[string]*Registration{}
	for _, id := range ids[4:] {
		reg, err := r.Register(ctx, instance("svc", id, 2))
		if err != nil {
			t.Fatal(err)
		}
		regs[id] = reg
		e := next(Added)
		if e.Instance.ID != id || !has(id) {
			t.Fatalf("Added %s (registered %s): Instances %v", e.Node, id, idsOf(cache.Instances()))
		}
		sorted()
	}
	if got, want := idsOf(cache.Instances()), []string{"a", "b", "c", "k", "m", "q", "x", "z"}; !slices.Equal(got, want) {
		t.Fatalf("Instances %v, want %v", got, want)
	}
	for _, id := range ids[4:] {
		if err := regs[id].Unregister(ctx); err != nil {
			t.Fatal(err)
		}
		e := next(Removed)
		if e.Node != id || has(id) {
			t.Fatalf("Removed %s (unregistered %s): Instances %v", e.Node, id, idsOf(cache.Instances()))
		}
		sorted()
	}
	if got := len(cache.Instances()); got != 4 {
		t.Fatalf("%d instances after the removals, want 4", got)
	}
}

func idsOf(ins []Instance) []string {
	out := make([]string, len(ins))
	for i, in := range ins {
		out[i] = in.ID
	}
	return out
}
