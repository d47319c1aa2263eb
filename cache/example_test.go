package cache_test

import (
	"context"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/zkrecipes/zkrecipes/cache"
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

func ExampleNewTree() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := resilience.Connect(ctx, servers())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	root := unique("config")
	for _, n := range []struct{ path, data string }{{"", "app"}, {"/db", "postgres"}, {"/db/pool", "10"}} {
		if _, err := s.Create(ctx, root+n.path, []byte(n.data), 0, nil); err != nil {
			log.Fatal(err)
		}
	}

	tc, err := cache.NewTree(ctx, s, root, cache.WithMaxDepth(2))
	if err != nil {
		log.Fatal(err)
	}
	defer tc.Close()
	show := func(e cache.Event) {
		if e.Type == cache.Initialized {
			fmt.Println(e.Type)
			return
		}
		fmt.Println(e.Type, "."+strings.TrimPrefix(e.Node.Path, root), string(e.Node.Data))
	}
	// The initial load, level by level, then Initialized.
	for e := range tc.Events() {
		show(e)
		if e.Type == cache.Initialized {
			break
		}
	}
	// Each change, as it happens.
	changes := []func() error{
		func() error { _, err := s.Set(ctx, root+"/db", []byte("postgres-2"), -1); return err },
		func() error { _, err := s.Create(ctx, root+"/cache", []byte("redis"), 0, nil); return err },
		func() error { return s.Delete(ctx, root+"/db/pool", -1) },
	}
	for _, change := range changes {
		if err := change(); err != nil {
			log.Fatal(err)
		}
		show(<-tc.Events())
	}
	fmt.Println(tc.Len(), "nodes cached")
	// Output:
	// added . app
	// added ./db postgres
	// added ./db/pool 10
	// initialized
	// updated ./db postgres-2
	// added ./cache redis
	// removed ./db/pool 10
	// 3 nodes cached
}
