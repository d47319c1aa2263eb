package lock

import (
	"testing"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/zktest"
)

// ens is the package's shared 3-node ensemble; tests isolate themselves by
// path and put back what they disturb.
var ens *zktest.Ensemble

// TestMain starts the ensemble unless -short; under -short testkit.Main
// leaves the Examples, which need it, out of the run.
func TestMain(m *testing.M) { testkit.Main(m, &ens, 3) }

// EnsembleServers returns the addresses of the package ensemble, for the
// Examples (package lock_test) to connect to.
func EnsembleServers() []string { return ens.Addrs() }

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
