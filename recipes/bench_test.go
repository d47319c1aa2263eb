package recipes_test

import (
	"context"
	"fmt"
	"path"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/cache"
	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/internal/znode"
)

// BenchmarkTreeCacheLoad10k measures the initial load of a TreeCache over
// 10,000 nodes against the floor measured in the same run: the same reads
// (data and children of every node, level by level, 512 in flight) with
// plain go-zookeeper/zk. It also reports the heap held per cached node.
func BenchmarkTreeCacheLoad10k(b *testing.B) {
	needZK(b)
	addr := ens.Server(0).DirectAddr()
	raw, _, err := zk.Connect([]string{addr}, 30*time.Second, zk.WithLogInfo(false))
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	acl := zk.WorldACL(zk.PermAll)
	root := testkit.Path("/treebench")
	s := connect(b, []string{addr})
	ctx := context.Background()
	if err := znode.EnsurePath(ctx, s, root); err != nil {
		b.Fatal(err)
	}
	// 100 nodes of 99 children each, plus the 100: 10,000 nodes under root.
	data := []byte("payload-0123456789")
	var wg sync.WaitGroup
	sem := make(chan struct{}, 512)
	create := func(p string) {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := raw.Create(p, data, 0, acl); err != nil {
				b.Error(err)
			}
		}()
	}
	for i := 0; i < 100; i++ {
		create(fmt.Sprintf("%s/d%02d", root, i))
	}
	wg.Wait()
	for i := 0; i < 100; i++ {
		for j := 0; j < 99; j++ {
			create(fmt.Sprintf("%s/d%02d/n%02d", root, i, j))
		}
	}
	wg.Wait()

	rawLoad := func() int {
		n := 0
		level := []string{root}
		for len(level) > 0 {
			var mu sync.Mutex
			var next []string
			for _, p := range level {
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					var kids []string
					var err error
					var inner sync.WaitGroup
					inner.Add(1)
					go func() {
						defer inner.Done()
						if _, _, err := raw.Get(p); err != nil {
							b.Error(err)
						}
					}()
					kids, _, err = raw.Children(p)
					inner.Wait()
					if err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					n++
					for _, k := range kids {
						next = append(next, path.Join(p, k))
					}
					mu.Unlock()
				}()
			}
			wg.Wait()
			level = next
		}
		return n
	}

	var rawT, cacheT time.Duration
	var perNode float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if n := rawLoad(); n != 10001 {
			b.Fatalf("raw load saw %d nodes", n)
		}
		rawT += time.Since(t0)

		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		t1 := time.Now()
		c, err := cache.NewTree(ctx, s, root)
		if err != nil {
			b.Fatal(err)
		}
		cacheT += time.Since(t1)
		if c.Len() != 10001 {
			b.Fatalf("cache holds %d nodes", c.Len())
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perNode = float64(after.HeapAlloc-before.HeapAlloc) / 10001
		c.Close()
	}
	b.StopTimer()
	b.ReportMetric(float64(rawT.Milliseconds())/float64(b.N), "raw-ms")
	b.ReportMetric(float64(cacheT.Milliseconds())/float64(b.N), "cache-ms")
	b.ReportMetric(float64(cacheT)/float64(rawT), "ratio")
	b.ReportMetric(perNode, "heap-B/node")
	// Clean up the tree.
	for i := 0; i < 100; i++ {
		for j := 0; j < 99; j++ {
			_ = raw.Delete(fmt.Sprintf("%s/d%02d/n%02d", root, i, j), -1)
		}
		_ = raw.Delete(fmt.Sprintf("%s/d%02d", root, i), -1)
	}
}
