package zktest

import (
	"flag"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		skipExamples()
	}
	goleak.VerifyTestMain(m)
}

// skipExamples leaves the examples out of the run: they start ZooKeeper,
// which -short runs do without. It adds them to -test.skip (unless that
// names subtests, whose levels an added alternative would not match).
func skipExamples() {
	f := flag.Lookup("test.skip")
	if f == nil {
		return
	}
	switch v := f.Value.String(); {
	case v == "":
		_ = f.Value.Set("^Example")
	case !strings.Contains(v, "/"):
		_ = f.Value.Set(v + "|^Example")
	}
}
