package resilience

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/go-multierror"
)

// Rebuild steps run after expiry; two failing steps are reported together in
// one round, then retried until they succeed.
func TestRebuildAfterExpiryReportsAllFailuresAndRetries(t *testing.T) {
	needZK(t)
	restore(t)
	var (
		mu      sync.Mutex
		reports []RebuildReport
		got     = make(chan struct{}, 16)
	)
	s := connect(t, ens.Addrs(), WithSessionTimeout(2*time.Second), WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		WithRebuildReport(func(r RebuildReport) {
			mu.Lock()
			reports = append(reports, r)
			mu.Unlock()
			got <- struct{}{}
		}))
	base := testPath(t, s)
	var okRuns, aRuns, bRuns atomic.Int32
	errA, errB := errors.New("step a broke"), errors.New("step b broke")
	s.OnNewSession("ok", func(ctx context.Context) error {
		okRuns.Add(1)
		_, err := s.Create(ctx, base+"/eph", nil, zk.FlagEphemeral, nil)
		return err
	})
	s.OnNewSession("a", func(context.Context) error {
		if aRuns.Add(1) == 1 {
			return errA
		}
		return nil
	})
	s.OnNewSession("b", func(context.Context) error {
		if bRuns.Add(1) == 1 {
			return errB
		}
		return nil
	})
	removed := s.OnNewSession("removed", func(context.Context) error {
		t.Error("an unregistered step ran")
		return nil
	})
	removed()

	if err := ens.ExpireSession(ctxT(t, 10*time.Second), s.SessionID()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		select {
		case <-got:
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d rebuild rounds reported", i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	first, second := reports[0], reports[1]
	var merr *multierror.Error
	if !errors.As(first.Err, &merr) || len(merr.Errors) != 2 {
		t.Fatalf("first round error %v, want both failures together", first.Err)
	}
	if !errors.Is(first.Err, errA) || !errors.Is(first.Err, errB) {
		t.Fatalf("first round error %v lacks a failure", first.Err)
	}
	if first.Round != 1 || first.Steps != 3 || second.Round != 2 || second.Steps != 2 || second.Err != nil {
		t.Fatalf("rounds %+v then %+v", first, second)
	}
	if okRuns.Load() != 1 || aRuns.Load() != 2 || bRuns.Load() != 2 {
		t.Fatalf("runs ok=%d a=%d b=%d, want 1, 2, 2", okRuns.Load(), aRuns.Load(), bRuns.Load())
	}
	if ok, st, err := s.Exists(ctxT(t, 5*time.Second), base+"/eph"); err != nil || !ok || st.EphemeralOwner != s.SessionID() {
		t.Fatalf("rebuilt ephemeral missing or not ours: %v %v", ok, err)
	}
}
