package zktest_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/zkrecipes/zkrecipes/zktest"
)

// This is how a test of your own uses zktest: start a three-node ensemble,
// connect a client through the proxies, then inject faults.
func ExampleStartEnsemble() {
	t := &testing.T{} // in a real test: the *testing.T of func TestXxx(t *testing.T)

	// Starts the servers (failing the test if ZooKeeper is not installed)
	// and registers their cleanup with t.Cleanup.
	e := zktest.StartEnsemble(t, zktest.WithServers(3))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	conn, _, err := zk.Connect(e.Addrs(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Create("/service", []byte("up"), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}

	// Connection loss: the client reconnects and keeps its session.
	for _, s := range e.Servers() {
		s.Proxy().DropConnections()
	}

	// Session expiry, without waiting for the timeout: the ephemeral node
	// goes away and the client is told its session expired.
	if err := e.ExpireSession(ctx, conn.SessionID()); err != nil {
		t.Fatal(err)
	}

	// Leader crash: the other two servers elect a new leader.
	leader, err := e.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Leader(ctx); err != nil {
		t.Fatal(err)
	}
	// ... and back.
	if err := leader.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitServing(ctx); err != nil {
		t.Fatal(err)
	}
}

// Start is the variant for code without a testing.TB, such as a TestMain
// that shares one ensemble among all tests of a package.
func ExampleStart() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e, err := zktest.Start(ctx, zktest.WithServers(1))
	if err != nil {
		panic(err) // in a TestMain: print err and os.Exit(1)
	}
	defer e.Close()

	// Partition the client from the server, then heal.
	p := e.Server(0).Proxy()
	p.Blackhole()
	p.Heal()
	_ = e.ConnectString() // "127.0.0.1:port", for the client under test
}
