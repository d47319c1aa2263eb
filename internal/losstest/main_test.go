package losstest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zkrecipes/zkrecipes/zktest"
)

// ens: three servers with tickTime 100ms and syncLimit 30 ticks, so that a
// follower cut off from its leader keeps answering its clients' pings for
// 3 s, longer than the 2 s session timeout the tests use: the case in
// which the follower outlives its clients' sessions at the leader.
var ens *zktest.Ensemble

const (
	tick      = 100 * time.Millisecond
	syncTicks = 30
	timeout   = 2 * time.Second
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if !testing.Short() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			e, err := zktest.Start(ctx, zktest.WithServers(3), zktest.WithTickTime(tick), zktest.WithSyncLimit(syncTicks))
			if err != nil {
				fmt.Fprintln(os.Stderr, "these tests need ZooKeeper:", err)
				return 1
			}
			ens = e
			defer e.Close()
		}
		return m.Run()
	}()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
