package losstest

import (
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
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
	testkit.Main(m, &ens, 3, zktest.WithTickTime(tick), zktest.WithSyncLimit(syncTicks))
}
