package recipes_test

import (
	"context"
	"fmt"
	"log"

	"github.com/zkrecipes/zkrecipes/recipes"
	"github.com/zkrecipes/zkrecipes/resilience"
)

func ExampleNewTreeCache() {
	ctx := context.Background()
	s, err := resilience.Connect(ctx, []string{"127.0.0.1:2181"})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	cache, err := recipes.NewTreeCache(ctx, s, "/config", recipes.WithMaxDepth(2))
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()
	for e := range cache.Events() {
		fmt.Println(e.Type, e.Node.Path, string(e.Node.Data))
	}
}

func ExampleJoinGroup() {
	ctx := context.Background()
	s, err := resilience.Connect(ctx, []string{"127.0.0.1:2181"})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	g, err := recipes.JoinGroup(ctx, s, "/workers", "worker-7", []byte("10.0.0.7"))
	if err != nil {
		log.Fatal(err)
	}
	defer g.Close()
	for id, data := range g.Members() {
		fmt.Println(id, string(data))
	}
}

func ExampleDoubleBarrier() {
	ctx := context.Background()
	s, err := resilience.Connect(ctx, []string{"127.0.0.1:2181"})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	d, err := recipes.NewDoubleBarrier(s, "/jobs/42/barrier", 5)
	if err != nil {
		log.Fatal(err)
	}
	if err := d.Enter(ctx); err != nil { // waits for all five
		log.Fatal(err)
	}
	// ... the computation ...
	if err := d.Leave(ctx); err != nil { // waits until all five are done
		log.Fatal(err)
	}
}

func ExampleSharedCount() {
	ctx := context.Background()
	s, err := resilience.Connect(ctx, []string{"127.0.0.1:2181"})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	c, err := recipes.NewSharedCount(ctx, s, "/counters/builds", 0)
	if err != nil {
		log.Fatal(err)
	}
	n, err := c.Add(ctx, 1) // compare-and-set, retried on conflict
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("build number", n)
}

func ExampleBarrier() {
	ctx := context.Background()
	s, err := resilience.Connect(ctx, []string{"127.0.0.1:2181"})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	b, _ := recipes.NewBarrier(s, "/deploy/hold")
	if err := b.Wait(ctx); err != nil { // until someone calls Remove
		log.Fatal(err)
	}
}
