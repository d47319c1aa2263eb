package recipes_test

import (
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/recipes"
)

// next receives from ch until a value satisfies ok, failing after d or if
// ch closes.
func next(t testing.TB, what string, ch <-chan recipes.Count, d time.Duration, ok func(recipes.Count) bool) recipes.Count {
	t.Helper()
	deadline := time.After(d)
	var seen []recipes.Count
	for {
		select {
		case v, open := <-ch:
			if !open {
				t.Fatalf("%s: channel closed; seen %+v", what, seen)
			}
			if ok(v) {
				return v
			}
			seen = append(seen, v)
		case <-deadline:
			t.Fatalf("%s: not seen within %v; seen %+v", what, d, seen)
		}
	}
}

func value(v int32) func(recipes.Count) bool {
	return func(c recipes.Count) bool { return c.Value == v }
}

// Subscribe: each call is a new channel whose first value is the current
// one; a counter node deleted and created again, and malformed data, are
// waited out (the channel stays open and delivers the next good value);
// the channel closes when the session closes.
func TestSharedCountSubscribe(t *testing.T) {
	needZK(t)
	ctx := ctxT(t, time.Minute)
	p := testkit.Path("/counter-subscribe")
	w := connect(t, ens.Addrs())
	c, err := recipes.NewSharedCount(ctx, w, p, 7)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, 8); err != nil {
		t.Fatal(err)
	}
	// A subscriber from another session, which must read after the write:
	// its first value is the current one, not the seed.
	s := connect(t, ens.Addrs())
	if err := znode.Settle(ctx, s); err != nil {
		t.Fatal(err)
	}
	sc, err := recipes.NewSharedCount(ctx, s, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	first := sc.Subscribe(ctx)
	select {
	case v := <-first:
		if v.Value != 8 {
			t.Fatalf("first value %+v, want the current 8", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no first value")
	}
	// A second channel of its own, starting at the current value too,
	// while the first one goes on.
	second := sc.Subscribe(ctx)
	select {
	case v := <-second:
		if v.Value != 8 {
			t.Fatalf("second subscriber's first value %+v, want 8", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no first value on the second channel")
	}
	// Node gone, then back with another value.
	if err := w.Delete(ctx, p, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Create(ctx, p, []byte{0, 0, 0, 3}, 0, nil); err != nil {
		t.Fatal(err)
	}
	next(t, "the value of the counter made again", first, 20*time.Second, value(3))
	next(t, "the value of the counter made again (second channel)", second, 20*time.Second, value(3))
	// Malformed data is skipped, the next good value delivered.
	if _, err := w.Set(ctx, p, []byte("abc"), -1); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, 5); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan recipes.Count{first, second} {
		if v := next(t, "the value after malformed data", ch, 20*time.Second, func(recipes.Count) bool { return true }); v.Value != 5 {
			t.Fatalf("after malformed data then 5: got %+v", v)
		}
	}
	// Closing the session closes the channels.
	s.Close()
	for i, ch := range []<-chan recipes.Count{first, second} {
		deadline := time.After(20 * time.Second)
		for open := true; open; {
			select {
			case _, open = <-ch:
			case <-deadline:
				t.Fatalf("channel %d still open after the session closed", i)
			}
		}
	}
}
