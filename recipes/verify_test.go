package recipes_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/wirefault"
	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/recipes"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// SharedCount never loses and never doubles an increment. Client A's
// compare-and-set loses its request or its reply; before A may reconnect,
// client B adds too ("same"), or overwrites the counter ("undo"), or does
// nothing. A's Add must succeed only if its increment is in the counter
// once, or fail with ErrOutcomeUnknown; the final value must be the start
// plus every successful increment plus some of the unknown ones.
func TestSharedCountAddVerifies(t *testing.T) {
	testkit.NeedZK(t)
	in := wirefault.New()
	t.Cleanup(in.Release)
	a := testkit.Connect(t, ens.Addrs(), resilience.WithDialer(in.Dial), resilience.WithSessionTimeout(10*time.Second))
	b := testkit.Connect(t, ens.Addrs())
	type want struct {
		answer string // A's Add: "ok" or "unknown"
		final  int32
	}
	// request/undo: B's overwrite took the version A's lost write asked
	// for; Add reads again and adds to 100.
	cells := map[string]want{
		"request/none": {"ok", 6}, "request/same": {"unknown", 6}, "request/undo": {"ok", 101},
		"reply/none": {"unknown", 6}, "reply/same": {"unknown", 7}, "reply/undo": {"unknown", 100},
	}
	for _, m := range []wirefault.Mode{wirefault.LoseRequest, wirefault.LoseReply} {
		for _, scen := range []string{"none", "same", "undo"} {
			cell := map[wirefault.Mode]string{wirefault.LoseRequest: "request", wirefault.LoseReply: "reply"}[m] + "/" + scen
			t.Run(cell, func(t *testing.T) {
				ctx := testkit.Ctx(t, 30*time.Second)
				p := testkit.Path("/counter-verify")
				ca, err := recipes.NewSharedCount(ctx, a, p, 5)
				if err != nil {
					t.Fatal(err)
				}
				cb, err := recipes.NewSharedCount(ctx, b, p, 5)
				if err != nil {
					t.Fatal(err)
				}
				if err := znode.Settle(ctx, a); err != nil {
					t.Fatal(err)
				}
				fired := in.Arm(m, func(r wirefault.Request) bool { return r.Op == wirefault.OpSetData && r.Path == p })
				type result struct {
					v   int32
					err error
				}
				done := make(chan result, 1)
				go func() {
					v, err := ca.Add(ctx, 1)
					done <- result{v, err}
				}()
				select {
				case <-fired:
				case r := <-done:
					t.Fatalf("Add returned %v before its write was lost", r)
				case <-time.After(10 * time.Second):
					t.Fatal("the fault never fired")
				}
				bAdded := 0
				switch scen {
				case "same":
					if _, err := cb.Add(ctx, 1); err != nil {
						t.Fatal(err)
					}
					bAdded = 1
				case "undo":
					if err := cb.Set(ctx, 100); err != nil {
						t.Fatal(err)
					}
				}
				in.Release()
				var r result
				select {
				case r = <-done:
				case <-time.After(20 * time.Second):
					t.Fatal("Add did not return after the reconnect")
				}
				answer := "error: " + fmt.Sprint(r.err)
				switch {
				case r.err == nil:
					answer = "ok"
				case errors.Is(r.err, resilience.ErrOutcomeUnknown):
					answer = "unknown"
				}
				if err := znode.Settle(ctx, b); err != nil {
					t.Fatal(err)
				}
				final, err := cb.Get(ctx)
				if err != nil {
					t.Fatal(err)
				}
				// The exact accounting (B's overwrite in "undo" resets the
				// count, so there the table alone decides): the start plus
				// every increment that reported success, plus at most the
				// unknown one.
				if scen != "undo" {
					lo := 5 + int32(bAdded)
					if answer == "ok" {
						lo++
					}
					hi := lo
					if answer == "unknown" {
						hi++
					}
					if final.Value < lo || final.Value > hi {
						t.Errorf("final %d with A %s and B's %d adds: want %d..%d (an increment lost or doubled)", final.Value, answer, bAdded, lo, hi)
					}
				}
				if w := cells[cell]; answer != w.answer || final.Value != w.final {
					t.Errorf("A's Add: %s (%v), final %d; want %s, %d", answer, r.err, final.Value, w.answer, w.final)
				}
			})
		}
	}
}
