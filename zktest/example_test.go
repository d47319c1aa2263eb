package zktest_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/resilience"
	"github.com/zkrecipes/zkrecipes/zktest"
)

// Each client under test reaches the servers through a Link of its own, so
// a fault can hit one client while the others carry on. Here client a is
// cut off from the ensemble (all of its link's paths black-holed) and its
// session suspends, while client b, on another link, keeps writing; then
// the ensemble expires a's session and a gets a new one.
//
// In a test, zktest.StartEnsemble(t, zktest.WithServers(3)) starts the
// ensemble and closes it at cleanup; Start is the same for code without a
// testing.TB, such as a TestMain sharing one ensemble among its tests.
func ExampleEnsemble_NewLink() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ens, err := zktest.Start(ctx) // one standalone server: WithServers(3) for an ensemble
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ens.Close()

	connect := func(link *zktest.Link) *resilience.Session {
		s, err := resilience.Connect(ctx, link.Addrs(), // the link's address for every server
			resilience.WithSessionTimeout(4*time.Second),
			resilience.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			panic(err)
		}
		return s
	}
	linkA, err := ens.NewLink()
	if err != nil {
		panic(err)
	}
	defer linkA.Close()
	linkB, err := ens.NewLink()
	if err != nil {
		panic(err)
	}
	defer linkB.Close()
	a, b := connect(linkA), connect(linkB)
	defer a.Close()
	defer b.Close()

	// Partition a from every server. (linkA.Proxy(i) faults its path to
	// server i alone; SetLatency, DropConnections, BlackholeRequests and
	// BlackholeReplies work the same way.)
	linkA.Blackhole()
	if err := a.WaitState(ctx, resilience.Suspended); err != nil {
		panic(err)
	}
	fmt.Println("a:", a.State())
	if _, err := b.Create(ctx, "/greeting", []byte("hello"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		panic(err)
	}
	fmt.Println("b: created /greeting while a was cut off")

	linkA.Heal()
	if err := a.WaitState(ctx, resilience.Reconnected, resilience.Connected); err != nil {
		panic(err)
	}
	fmt.Println("a: session again:", a.State().HasSession())

	// The ensemble expires a's session now, as after a long partition.
	old := a.SessionID()
	if err := ens.ExpireSession(ctx, old); err != nil {
		panic(err)
	}
	for a.SessionID() == old || a.State() != resilience.Connected {
		if ctx.Err() != nil {
			panic(ctx.Err())
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("a: new session:", a.SessionID() != old)
	// Output:
	// a: Suspended
	// b: created /greeting while a was cut off
	// a: session again: true
	// a: new session: true
}
