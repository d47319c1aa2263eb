package lock

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// BenchmarkMutexUncontended compares one uncontended Lock+Release cycle
// with the raw floor measured in the same run: one ephemeral-sequential
// create plus one delete with plain go-zookeeper/zk (goal: within 10%).
// Iterations alternate between the two so both see the same conditions.
func BenchmarkMutexUncontended(b *testing.B) {
	needZK(b)
	addr := ens.Server(0).DirectAddr()
	raw, _, err := zk.Connect([]string{addr}, 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	s := connect(b, []string{addr})
	p := lockPath(b)
	m, _ := NewMutex(s, p)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Warm up: creates the lock's parents, which the raw side then reuses.
	l, err := m.Lock(ctx)
	if err != nil {
		b.Fatal(err)
	}
	_ = l.Release(ctx)
	acl := zk.WorldACL(zk.PermAll)
	hold, err := raw.Create(p+"-keep", nil, 0, acl) // keeps nothing alive; just a sibling
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Delete(hold, -1)

	var rawT, lockT time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		n, err := raw.Create(p+"/raw-lock-", nil, zk.FlagEphemeralSequential, acl)
		if err != nil {
			b.Fatal(err)
		}
		if err := raw.Delete(n, -1); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		l, err := m.Lock(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			b.Fatal(err)
		}
		lockT += time.Since(t1)
		rawT += t1.Sub(t0)
	}
	b.ReportMetric(float64(rawT.Nanoseconds())/float64(b.N), "raw-ns/op")
	b.ReportMetric(float64(lockT.Nanoseconds())/float64(b.N), "lock-ns/op")
	b.ReportMetric(float64(lockT)/float64(rawT), "ratio")
}

// BenchmarkMutexContended measures handoffs per second with 8 sessions
// contending for one mutex, each holding it only to release it again.
func BenchmarkMutexContended(b *testing.B) {
	needZK(b)
	const sessions = 8
	p := lockPath(b)
	ms := make([]*Mutex, sessions)
	for i := range ms {
		s := connect(b, ens.Addrs())
		ms[i], _ = NewMutex(s, p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for _, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				l, err := m.Lock(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				if err := l.Release(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "handoffs/s")
}
