package recipes_test

import (
	"fmt"
	"sort"
	"testing"

	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/zktest"
)

var ens *zktest.Ensemble

func TestMain(m *testing.M) { testkit.Main(m, &ens, 3) }

var (
	needZK  = testkit.NeedZK
	ctxT    = testkit.Ctx
	connect = testkit.Connect
)

func restore(t testing.TB) { testkit.Restore(t, ens) }

func diff(a, b map[string]string) string {
	var ks []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			ks = append(ks, fmt.Sprintf("%s: %q vs %q", k, v, b[k]))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			ks = append(ks, fmt.Sprintf("%s: missing vs %q", k, b[k]))
		}
	}
	sort.Strings(ks)
	if len(ks) > 5 {
		ks = append(ks[:5], fmt.Sprintf("... %d more", len(ks)-5))
	}
	return fmt.Sprint(ks)
}
