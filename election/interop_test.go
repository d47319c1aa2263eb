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
	g, _ := New(gs, p, WithID("go-1"))
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
	type camp struct {
		term *Term
		at   time.Time // realtime, just after Campaign returned
		err  error
	}
	got := make(chan camp, 1)
	go func() {
		term, err := g.Campaign(ctx)
		got <- camp{term, time.Now(), err}
	}()
	waitChildren(t, gs, p, 3, 10*time.Second)
	if err := cur.LatchClose(ctx, "j1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cur.WaitEvent(ctx, func(e interop.Event) bool { return e.Client == "j2" && e.Kind == "leader" && e.Detail == "true" }); err != nil {
		t.Fatal(err)
	}
	// While j2 leads, Go is still waiting and sees j2 as the leader.
	var back camp
	early := false
	select {
	case back = <-got:
		early = true
		t.Errorf("Go leads next to j2 (since %v, err %v)", back.at, back.err)
	case <-time.After(300 * time.Millisecond):
	}
	if id, err := g.Leader(ctx); err != nil || id != "java-j2" {
		t.Errorf("Go's view of the leader while j2 leads: %q, %v; want java-j2", id, err)
	}
	closed := time.Now()
	if err := cur.LatchClose(ctx, "j2"); err != nil {
		t.Fatal(err)
	}
	if !early {
		back = <-got
	}
	if back.err != nil {
		t.Fatal(back.err)
	}
	// One clock: closed was taken before j2's latch was closed, back.at
	// after Go's Campaign returned; a Go term that began while j2 led
	// would start before closed.
	if !back.at.After(closed) {
		t.Errorf("Go led at %d, before j2's latch closed at %d", back.at.UnixNano(), closed.UnixNano())
	}
	if back.term.Token() <= term.Token() {
		t.Errorf("token did not increase across terms: %d then %d", term.Token(), back.term.Token())
	}
	_ = back.term.Resign(ctx)
}
