package testkit

import (
	"sync"
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/resilience"
	"github.com/zkrecipes/zkrecipes/zktest"
)

var ens *zktest.Ensemble

func TestMain(m *testing.M) { Main(m, &ens, 3) }

// Each fault does to its client what its name says, and only to it.
func TestFaultsDoWhatTheySay(t *testing.T) {
	NeedZK(t)
	const timeout = 2 * time.Second
	ForEachFault(t, ens, timeout, func(t *testing.T, f Fault) {
		c := NewClient(t, ens, resilience.WithSessionTimeout(timeout))
		other := NewClient(t, ens, resilience.WithSessionTimeout(timeout))
		var mu sync.Mutex
		disturbed := false
		stop := c.S.AddListener(func(tr resilience.Transition) {
			mu.Lock()
			disturbed = disturbed || tr.To == resilience.Suspended || tr.To == resilience.Lost
			mu.Unlock()
		})
		defer stop()
		sid, otherSid := c.S.SessionID(), other.S.SessionID()
		heal := f.Inject(t, c)
		heal()
		ctx := Ctx(t, 30*time.Second)
		if err := c.S.WaitState(ctx, resilience.Connected, resilience.Reconnected); err != nil {
			t.Fatal(err)
		}
		WaitFor(t, 20*time.Second, "the client to be back", func() bool {
			st := c.S.State()
			return st == resilience.Connected || st == resilience.Reconnected
		})
		kept := c.S.SessionID() == sid
		mu.Lock()
		if f.Name != "blackhole-short" && !disturbed {
			t.Errorf("%s: the client saw neither Suspended nor Lost", f.Name)
		}
		mu.Unlock()
		if f.Expires && kept {
			t.Errorf("%s: session 0x%x kept, want it expired", f.Name, sid)
		}
		if f.Name == "drop" && !kept {
			t.Errorf("drop: session changed")
		}
		if f.Name != "quorum-loss" && f.Name != "server-kill" && other.S.SessionID() != otherSid {
			t.Errorf("%s: another client's session changed too", f.Name)
		}
		t.Logf("%s: session kept %v, other kept %v", f.Name, kept, other.S.SessionID() == otherSid)
	})
}
