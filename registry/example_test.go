package registry_test

import (
	"context"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/zkrecipes/zkrecipes/registry"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// The examples run against the package's test ensemble (started by
// TestMain; under -short, which starts none, testkit leaves them out).

// servers returns the test ensemble's addresses; an application passes
// its own ensemble's.
func servers() []string { return registry.EnsembleAddrs() }

// Register an instance, then find it as a client would: through a Cache
// that follows the service, and a Provider that picks from it.
func ExampleRegistry_Register() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := resilience.Connect(ctx, servers())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	// A base of its own for each run: the example shares the ensemble
	// with the tests.
	base := fmt.Sprintf("/services-%d", time.Now().UnixNano())
	r, err := registry.New(s, base)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	spec, err := registry.ParseURISpec("{scheme}://{address}:{port}/v1")
	if err != nil {
		log.Fatal(err)
	}
	reg, err := r.Register(ctx, registry.Instance{
		Name: "api", ID: "api-1", Address: "10.0.0.7", Port: registry.Int(8080), URISpec: spec,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("registered", strings.TrimPrefix(reg.Path(), base))

	cache, err := r.NewCache(ctx, "api")
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()
	for _, in := range cache.Instances() {
		fmt.Println("cached", in.ID, in.Address, *in.Port, in.ServiceType)
	}
	p, err := registry.NewProvider(cache)
	if err != nil {
		log.Fatal(err)
	}
	in, err := p.Instance()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("picked", in.URI(nil))

	// Unregister removes the node; the cache sees it go.
	if err := reg.Unregister(ctx); err != nil {
		log.Fatal(err)
	}
	for e := range cache.Events() {
		if e.Type == registry.Removed {
			fmt.Println(e.Type, e.Node)
			break
		}
	}
	if _, err := p.Instance(); err != nil {
		fmt.Println(err)
	}
	// Output:
	// registered /api/api-1
	// cached api-1 10.0.0.7 8080 DYNAMIC
	// picked http://10.0.0.7:8080/v1
	// removed api-1
	// registry: no instances available
}
