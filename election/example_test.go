package election_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/zkrecipes/zkrecipes/election"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// servers is the ZooKeeper ensemble the examples run against: in this
// package's tests, its test ensemble; in a service, e.g.
// []string{"zk1:2181", "zk2:2181", "zk3:2181"}.
func servers() []string { return election.EnsembleAddrs() }

// Run is a service's leader loop: the function runs while this process
// leads, with the term's fencing token at hand. Here it steps down after
// its first term by ending Run's context; Run resigns on the way out.
func ExampleElection_Run() {
	ctx := context.Background()
	s, err := resilience.Connect(ctx, servers())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	e, err := election.New(s, "/examples/election/scheduler", election.WithID("worker-1"))
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	err = e.Run(ctx, func(lead context.Context, t *election.Term) error {
		// lead ends when the term does; pass t.Token() to every store
		// the leader writes to (see package fence).
		fmt.Println("leading with a fencing token:", t.Token() > 0)
		id, err := e.Leader(lead)
		fmt.Println("leader:", id, err)
		stop() // shut down: Run resigns and returns ctx's error
		<-lead.Done()
		return nil
	})
	fmt.Println("Run returned:", err)
	_, leading := e.Leading()
	fmt.Println("still leading:", leading)
	// Output:
	// leading with a fencing token: true
	// leader: worker-1 <nil>
	// Run returned: context canceled
	// still leading: false
}

// An observer needs no participant id: Subscribe first reports the leader
// now (nobody, here), then each change.
func ExampleElection_Subscribe() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := resilience.Connect(ctx, servers())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	const p = "/examples/election/subscribe"
	observer, err := election.New(s, p)
	if err != nil {
		log.Fatal(err)
	}
	changes := observer.Subscribe(ctx)
	fmt.Printf("leader: %q\n", (<-changes).ID)

	candidate, err := election.New(s, p, election.WithID("worker-2"))
	if err != nil {
		log.Fatal(err)
	}
	term, err := candidate.Campaign(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("leader: %q\n", (<-changes).ID)
	if err := term.Resign(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("leader: %q\n", (<-changes).ID)
	fmt.Println("resigned:", errors.Is(term.Err(), election.ErrResigned))
	// Output:
	// leader: ""
	// leader: "worker-2"
	// leader: ""
	// resigned: true
}
