// Package archtest checks the layering docs/architecture.md describes:
// which packages may import which.
package archtest

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/zkrecipes/zkrecipes/"

// layer of each non-test package; a package may import only packages of a
// lower layer (and the same package's own files). Examples and tests are
// not checked.
var layers = map[string]int{
	"zktest":             0,
	"fence":              0,
	"internal/feed":      0,
	"internal/wirefault": 0,
	"internal/timeline":  0,
	"internal/interop":   0,
	"resilience":         1,
	"internal/testkit":   3, // settles reads with internal/znode
	"internal/znode":     2,
	"internal/otelx":     2,
	"internal/latest":    2,
	"internal/queue":     3,
	"internal/hold":      4,
	"cache":              5,
	"recipes":            6, // a Group's view is a cache.Tree
	"lock":               5,
	"election":           5,
	"registry":           6, // builds its Cache on cache.Tree
}

type pkg struct {
	ImportPath string
	Imports    []string
	Name       string
}

func TestLayers(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	seen := 0
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(p.ImportPath, mod)
		if strings.HasPrefix(rel, "examples/") || strings.HasPrefix(rel, "cmd/") || rel == "chaos" ||
			rel == "internal/losstest" || rel == "internal/archtest" {
			continue // programs and test-only packages may import anything
		}
		l, ok := layers[rel]
		if !ok {
			t.Errorf("package %s has no layer: add it to docs/architecture.md and to this test", rel)
			continue
		}
		seen++
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			dep := strings.TrimPrefix(imp, mod)
			dl, ok := layers[dep]
			if !ok {
				continue // reported on its own
			}
			if dl >= l {
				t.Errorf("%s (layer %d) imports %s (layer %d): a package may import only lower layers", rel, l, dep, dl)
			}
		}
	}
	if seen < 10 {
		t.Fatalf("checked only %d packages; go list output not understood", seen)
	}
}
