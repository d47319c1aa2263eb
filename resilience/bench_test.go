package resilience

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// BenchmarkOverhead measures the Session's cost over plain go-zookeeper/zk,
// in the same run against the same server: each iteration times one raw call
// and one Session call, alternating, and reports both and their ratio
// (goal: at most 1.05).
func BenchmarkOverhead(b *testing.B) {
	needZK(b)
	addr := ens.Server(0).DirectAddr()
	raw, _, err := zk.Connect([]string{addr}, 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	s := connect(b, []string{addr})
	base := fmt.Sprintf("/bench-%d", time.Now().UnixNano())
	if _, err := raw.Create(base, []byte("data"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		b.Fatal(err)
	}
	defer raw.Delete(base, -1)
	ctx, cancel := context.WithCancel(context.Background())
	if os.Getenv("BENCH_BG") != "" {
		ctx = context.Background()
	}
	defer cancel()

	b.Run("get", func(b *testing.B) {
		var rawT, sesT time.Duration
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			if _, _, err := raw.Get(base); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if _, _, err := s.Get(ctx, base); err != nil {
				b.Fatal(err)
			}
			sesT += time.Since(t1)
			rawT += t1.Sub(t0)
		}
		report(b, rawT, sesT)
	})
	b.Run("create-delete", func(b *testing.B) {
		var rawT, sesT time.Duration
		acl := zk.WorldACL(zk.PermAll)
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			p, err := raw.Create(base+"/n-", nil, zk.FlagEphemeralSequential, acl)
			if err != nil {
				b.Fatal(err)
			}
			if err := raw.Delete(p, -1); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			p, err = s.Create(ctx, base+"/n-", nil, zk.FlagEphemeralSequential, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Delete(ctx, p, -1); err != nil {
				b.Fatal(err)
			}
			sesT += time.Since(t1)
			rawT += t1.Sub(t0)
		}
		report(b, rawT, sesT)
	})
}

func report(b *testing.B, raw, ses time.Duration) {
	b.ReportMetric(float64(raw.Nanoseconds())/float64(b.N), "raw-ns/op")
	b.ReportMetric(float64(ses.Nanoseconds())/float64(b.N), "session-ns/op")
	b.ReportMetric(float64(ses)/float64(raw), "ratio")
}
