package election

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
)

// BenchmarkFailoverAfterResign measures the time from a leader's Resign to
// the next candidate's Campaign returning, against the floor measured in the
// same run with plain go-zookeeper/zk: one client deletes a watched node,
// the other receives the deletion notification and reads the children once.
// It reports p50 and p99 of both and their ratios.
func BenchmarkFailoverAfterResign(b *testing.B) {
	needZK(b)
	addr := ens.Server(0).DirectAddr()
	rawA, _, err := zk.Connect([]string{addr}, 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		b.Fatal(err)
	}
	defer rawA.Close()
	rawB, _, err := zk.Connect([]string{addr}, 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		b.Fatal(err)
	}
	defer rawB.Close()
	acl := zk.WorldACL(zk.PermAll)
	rawParent := testkit.Path("/electionbench-raw")
	if _, err := rawA.Create("/electionbench-raw", nil, 0, acl); err != nil && err != zk.ErrNodeExists {
		b.Fatal(err)
	}
	if _, err := rawA.Create(rawParent, nil, 0, acl); err != nil {
		b.Fatal(err)
	}
	defer rawA.Delete(rawParent, -1)

	p := electionPath()
	es := [2]*Election{}
	for i := range es {
		es[i], _ = New(connect(b, []string{addr}), p, WithID([]string{"a", "b"}[i]))
	}
	ctx := context.Background()
	leader, err := es[0].Campaign(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var raw, el []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// The floor.
		n, err := rawA.Create(rawParent+"/n", nil, zk.FlagEphemeral, acl)
		if err != nil {
			b.Fatal(err)
		}
		_, _, ch, err := rawB.GetW(n)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := rawA.Delete(n, -1); err != nil {
			b.Fatal(err)
		}
		<-ch
		if _, _, err := rawB.Children(rawParent); err != nil {
			b.Fatal(err)
		}
		raw = append(raw, time.Since(t0))

		// The election: the other participant queues, the leader resigns.
		next := es[(i+1)%2]
		got := make(chan *Term, 1)
		go func() {
			t, err := next.Campaign(ctx)
			if err != nil {
				b.Error(err)
			}
			got <- t
		}()
		for len(children(b, next.s, p)) < 2 {
		}
		t1 := time.Now()
		if err := leader.Resign(ctx); err != nil {
			b.Fatal(err)
		}
		leader = <-got
		if leader == nil {
			b.FailNow()
		}
		el = append(el, time.Since(t1))
	}
	b.StopTimer()
	_ = leader.Resign(ctx)
	pct := func(ds []time.Duration, q float64) float64 {
		slices.Sort(ds)
		return float64(ds[int(q*float64(len(ds)-1))].Microseconds())
	}
	b.ReportMetric(pct(raw, 0.5), "raw-p50-µs")
	b.ReportMetric(pct(raw, 0.99), "raw-p99-µs")
	b.ReportMetric(pct(el, 0.5), "failover-p50-µs")
	b.ReportMetric(pct(el, 0.99), "failover-p99-µs")
	b.ReportMetric(pct(el, 0.5)/pct(raw, 0.5), "ratio-p50")
	b.ReportMetric(pct(el, 0.99)/pct(raw, 0.99), "ratio-p99")
}
