package election

import (
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/internal/interop"
)

// Go and Java (Curator LeaderLatch) participants form one election: exactly
// one leads at a time, and leadership passes from Go to Java and back.
func TestInteropWithCuratorLeaderLatch(t *testing.T) {
	needZK(t)
	cur := interop.Curator(t)
	ctx := ctxT(t, 2*time.Minute)
	p := electionPath()
	for _, c := range []string{"j1", "j2"} {
		if err := cur.Connect(ctx, c, ens.ConnectString(), 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	gs := connect(t, ens.Addrs())
	g, _ := New(gs, p, "go-1")
	term, err := g.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"j1", "j2"} {
		if err := cur.LatchStart(ctx, c, p, "java-"+c); err != nil {
			t.Fatal(err)
		}
		waitChildren(t, gs, p, map[string]int{"j1": 2, "j2": 3}[c], 10*time.Second)
	}
	// Curator sees the Go participant as leader, and does not lead itself.
	if id, err := cur.LatchLeader(ctx, "j1"); err != nil || id != "go-1" {
		t.Fatalf("Curator's leader: %q, %v; want go-1", id, err)
	}
	for _, c := range []string{"j1", "j2"} {
		if has, err := cur.LatchHas(ctx, c); err != nil || has {
			t.Fatalf("%s leads next to a Go leader (%v)", c, err)
		}
	}
	// Go resigns: the next in line, j1, leads.
	resigned := time.Now()
	if err := term.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	ev, err := cur.WaitEvent(ctx, func(e interop.Event) bool { return e.Client == "j1" && e.Kind == "leader" && e.Detail == "true" })
	if err != nil {
		t.Fatal(err)
	}
	if ev.At.Before(resigned) {
		t.Fatalf("j1 led at %v, before Go resigned at %v", ev.At, resigned)
	}
	if id, err := g.Leader(ctx); err != nil || id != "java-j1" {
		t.Fatalf("Go's view of the leader: %q, %v; want java-j1", id, err)
	}
	// Go queues again behind j2; after both Java latches close, Go leads.
	got := make(chan *Term, 1)
	go func() {
		term, err := g.Campaign(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- term
	}()
	waitChildren(t, gs, p, 3, 10*time.Second)
	if err := cur.LatchClose(ctx, "j1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cur.WaitEvent(ctx, func(e interop.Event) bool { return e.Client == "j2" && e.Kind == "leader" && e.Detail == "true" }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
		t.Fatal("Go leads next to j2")
	case <-time.After(300 * time.Millisecond):
	}
	closed := time.Now()
	if err := cur.LatchClose(ctx, "j2"); err != nil {
		t.Fatal(err)
	}
	back := <-got
	if back == nil {
		t.FailNow()
	}
	if time.Now().Before(closed) {
		t.Fatal("Go led before j2 closed")
	}
	if back.Token() <= term.Token() {
		t.Errorf("token did not increase across terms: %d then %d", term.Token(), back.Token())
	}
	_ = back.Resign(ctx)
}
