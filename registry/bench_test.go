package registry

import (
	"context"
	"fmt"
	"path"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// BenchmarkReregister1000 measures how long the registry takes to register
// 1,000 ephemeral instances of one session again after a forced expiry
// (the rebuild round's wall time), against the floor measured in the same
// run: 1,000 plain creates of the same data, all in flight at once on one
// go-zookeeper/zk connection (goal: within 1.5x).
func BenchmarkReregister1000(b *testing.B) {
	needZK(b)
	const n = 1000
	addr := ens.Server(0).Addr() // through the proxy, which ExpireSession needs
	reports := make(chan resilience.RebuildReport, 16)
	s := connect(b, []string{addr}, resilience.WithRebuildReport(func(r resilience.RebuildReport) { reports <- r }))
	base := basePath()
	r, _ := New(s, base)
	defer r.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.Register(ctx, instance("svc", fmt.Sprintf("i%04d", i), 1000)); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	data := mustJSON(b, instance("svc", "i0000", 1000))

	raw, _, err := zk.Connect([]string{addr}, 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	rawParent := base + "/raw"
	if _, err := raw.Create(rawParent, nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		b.Fatal(err)
	}
	var rawT, regT time.Duration
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		// The floor.
		t0 := time.Now()
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := raw.Create(fmt.Sprintf("%s/i%04d", rawParent, i), data, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		rawT += time.Since(t0)
		b.StopTimer()
		for i := 0; i < n; i++ {
			_ = raw.Delete(fmt.Sprintf("%s/i%04d", rawParent, i), -1)
		}
		b.StartTimer()

		// The registry after an expiry.
		old := s.SessionID()
		if err := ens.ExpireSession(ctx, old); err != nil {
			b.Fatal(err)
		}
		for rep := range reports {
			if rep.SessionID != old && rep.Err == nil {
				regT += rep.Duration
				break
			}
		}
	}
	b.ReportMetric(float64(rawT.Milliseconds())/float64(b.N), "raw-ms")
	b.ReportMetric(float64(regT.Milliseconds())/float64(b.N), "reregister-ms")
	b.ReportMetric(float64(regT)/float64(rawT), "ratio")
}

// BenchmarkCacheLoad measures how long NewCache takes to load a service of
// n instances (created beforehand, ephemeral, on the benchmark's own
// session), until every instance is in Instances, reported per instance.
// A cache that republishes its whole list after each node costs O(n) per
// node and O(n²) in all, which shows as ns/instance growing with n.
func BenchmarkCacheLoad(b *testing.B) {
	needZK(b)
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			s := connect(b, ens.Addrs())
			r, err := New(s, basePath())
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			ctx := context.Background()
			svc := r.servicePath("svc")
			if err := znode.EnsurePath(ctx, s, svc); err != nil {
				b.Fatal(err)
			}
			sem := make(chan struct{}, 256)
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					in := instance("svc", fmt.Sprintf("i%05d", i), 1000)
					in.ServiceType = Dynamic
					if _, err := s.Create(ctx, path.Join(svc, in.ID), mustJSON(b, in), zk.FlagEphemeral, nil); err != nil {
						b.Error(err)
					}
				}()
			}
			wg.Wait()
			if b.Failed() {
				return
			}
			b.ResetTimer()
			for it := 0; it < b.N; it++ {
				c, err := r.NewCache(ctx, "svc")
				if err != nil {
					b.Fatal(err)
				}
				if got := len(c.Instances()); got != n {
					b.Fatalf("cache loaded %d instances, want %d", got, n)
				}
				b.StopTimer()
				c.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/instance")
		})
	}
}

// BenchmarkUpdate measures one Registration.Update (which reads the node
// after settling its server, then writes it conditionally) against the
// floor in the same loop: one plain Set of the same data on a direct
// go-zookeeper/zk connection to the same server.
func BenchmarkUpdate(b *testing.B) {
	needZK(b)
	srv := ens.Server(0)
	s := connect(b, []string{srv.DirectAddr()})
	base := basePath()
	r, err := New(s, base)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	inst := instance("svc", "u", 1000)
	g, err := r.Register(ctx, inst)
	if err != nil {
		b.Fatal(err)
	}
	defer g.Unregister(ctx)
	raw, _, err := zk.Connect([]string{srv.DirectAddr()}, 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	rawNode := base + "/raw"
	data := mustJSON(b, inst)
	if _, err := raw.Create(rawNode, data, 0, zk.WorldACL(zk.PermAll)); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = raw.Delete(rawNode, -1) }()
	if l, err := ens.Leader(ctx); err == nil {
		b.Logf("server %d, leader %v", srv.ID(), l == srv)
	}
	var rawT, updT time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		inst.Payload = []byte(fmt.Sprintf(`{"n":%d}`, i))
		d := mustJSON(b, inst)
		t0 := time.Now()
		if _, err := raw.Set(rawNode, d, -1); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := g.Update(ctx, inst); err != nil {
			b.Fatal(err)
		}
		rawT += t1.Sub(t0)
		updT += time.Since(t1)
	}
	b.ReportMetric(float64(rawT.Microseconds())/float64(b.N), "raw-us")
	b.ReportMetric(float64(updT.Microseconds())/float64(b.N), "update-us")
	b.ReportMetric(float64(updT)/float64(rawT), "ratio")
}
