package lock

import (
	"testing"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/zktest"
)

// ens is the package's shared 3-node ensemble; tests isolate themselves by
// path and put back what they disturb.
var ens *zktest.Ensemble

func TestMain(m *testing.M) { testkit.Main(m, &ens, 3) }

var (
	needZK       = testkit.NeedZK
	ctxT         = testkit.Ctx
	connect      = testkit.Connect
	children     = testkit.Children
	waitChildren = testkit.WaitChildren
)

type checker = testkit.Checker

func restore(t testing.TB) { testkit.Restore(t, ens) }

func lockPath(testing.TB) string { return testkit.Path("/locktest") }
