package recipes_test

import (
	"context"
	"fmt"
	"log"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/zkrecipes/zkrecipes/cache"
	"github.com/zkrecipes/zkrecipes/recipes"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// The examples run against the package's test ensemble (started by
// TestMain; under -short, which starts none, testkit leaves them out).

// servers returns the test ensemble's addresses; an application passes
// its own ensemble's.
func servers() []string { return ens.Addrs() }

// unique returns a path of its own for each run: the examples share the
// ensemble with the tests and with earlier runs.
func unique(name string) string { return fmt.Sprintf("/%s-%d", name, time.Now().UnixNano()) }

func ExampleJoinGroup() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := resilience.Connect(ctx, servers())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	workers := unique("workers")
	g, err := recipes.JoinGroup(ctx, s, workers, "worker-7", []byte("10.0.0.7"))
	if err != nil {
		log.Fatal(err)
	}
	defer g.Close()

	// Another process joins, on its own session.
	other, err := resilience.Connect(ctx, servers())
	if err != nil {
		log.Fatal(err)
	}
	defer other.Close()
	g8, err := recipes.JoinGroup(ctx, other, workers, "worker-8", []byte("10.0.0.8"))
	if err != nil {
		log.Fatal(err)
	}
	for e := range g.Events() {
		if e.Type == cache.NodeAdded && e.Node.Path == workers+"/worker-8" {
			break
		}
	}
	members := g.Members()
	ids := make([]string, 0, len(members))
	for id := range members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		fmt.Println(id, string(members[id]))
	}

	// It leaves.
	if err := g8.Close(); err != nil {
		log.Fatal(err)
	}
	for e := range g.Events() {
		if e.Type == cache.NodeRemoved && e.Node.Path == workers+"/worker-8" {
			break
		}
	}
	fmt.Println(len(g.Members()), "member left")
	// Output:
	// worker-7 10.0.0.7
	// worker-8 10.0.0.8
	// 1 member left
}

func ExampleDoubleBarrier() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := resilience.Connect(ctx, servers())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	p := unique("job-42-barrier")
	var mu sync.Mutex
	var computing []string
	var wg sync.WaitGroup
	for _, worker := range []string{"a", "b", "c"} {
		d, err := recipes.NewDoubleBarrier(s, p, 3)
		if err != nil {
			log.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Enter(ctx); err != nil { // waits for all three
				log.Fatal(err)
			}
			mu.Lock()
			computing = append(computing, worker+" computing")
			mu.Unlock()
			if err := d.Leave(ctx); err != nil { // waits until all three are done
				log.Fatal(err)
			}
		}()
	}
	wg.Wait()
	sort.Strings(computing)
	fmt.Println(strings.Join(computing, ", "))
	// Output:
	// a computing, b computing, c computing
}

func ExampleSharedCount() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := resilience.Connect(ctx, servers())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	c, err := recipes.NewSharedCount(ctx, s, unique("builds"), 0)
	if err != nil {
		log.Fatal(err)
	}
	n, err := c.Add(ctx, 1) // compare-and-set, retried on conflict
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("build number", n)

	sctx, stop := context.WithCancel(ctx)
	defer stop()
	values := c.Subscribe(sctx)
	fmt.Println("current", (<-values).Value) // the first value is the current one
	if _, err := c.Add(ctx, 1); err != nil {
		log.Fatal(err)
	}
	fmt.Println("changed to", (<-values).Value)
	// Output:
	// build number 1
	// current 1
	// changed to 2
}

func ExampleBarrier() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := resilience.Connect(ctx, servers())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	b, err := recipes.NewBarrier(s, unique("deploy-hold"))
	if err != nil {
		log.Fatal(err)
	}
	if err := b.Set(ctx); err != nil {
		log.Fatal(err)
	}
	passed := make(chan error, 1)
	go func() { passed <- b.Wait(ctx) }() // until someone calls Remove
	fmt.Println("barrier raised")
	if err := b.Remove(ctx); err != nil {
		log.Fatal(err)
	}
	if err := <-passed; err != nil {
		log.Fatal(err)
	}
	fmt.Println("waiter passed")
	// Output:
	// barrier raised
	// waiter passed
}
