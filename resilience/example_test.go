package resilience_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/resilience"
)

// servers are the addresses of the ZooKeeper ensemble the examples use; in
// a program, for example []string{"zk1:2181", "zk2:2181", "zk3:2181"}. The
// package's tests point it at their own ensemble.
var servers []string

func init() { resilience.UseExampleServers = func(addrs []string) { servers = addrs } }

// Connect, then write and read a node. The ephemeral node belongs to this
// session: the ensemble deletes it when the session ends.
func ExampleConnect() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := resilience.Connect(ctx, servers, resilience.WithSessionTimeout(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	fmt.Println("state:", s.State())

	p, err := s.Create(ctx, "/example-connect", []byte("10.0.0.1:8080"), zk.FlagEphemeral, nil)
	if err != nil {
		log.Fatal(err)
	}
	data, stat, err := s.Get(ctx, p)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s = %s (ours: %v)\n", p, data, stat.EphemeralOwner == s.SessionID())
	// Output:
	// state: Connected
	// /example-connect = 10.0.0.1:8080 (ours: true)
}

// A subscriber first receives the state the session is in now (cause
// "current"), then every transition; the channel closes after Closed.
func ExampleSession_Subscribe() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := resilience.Connect(ctx, servers)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	sub := s.Subscribe(ctx)
	now := <-sub
	fmt.Println(now.From, "->", now.To, now.Cause, now.SessionID == s.SessionID())

	s.Close()
	for tr := range sub { // a real subscriber reacts here: Suspended, Reconnected, Lost, Connected
		fmt.Println(tr.From, "->", tr.To, tr.Cause)
	}
	// Output:
	// Connected -> Connected current true
	// Connected -> Closed closed
}

// Re-create an ephemeral node on every new session after a Lost.
func ExampleSession_OnNewSession() {
	ctx := context.Background()
	s, err := resilience.Connect(ctx, servers)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	register := func(ctx context.Context) error {
		_, err := s.Create(ctx, "/members/worker-1", nil, zk.FlagEphemeral, nil)
		return err
	}
	if err := register(ctx); err != nil {
		log.Fatal(err)
	}
	unregister := s.OnNewSession("membership", register)
	defer unregister()
}
