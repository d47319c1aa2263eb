package resilience

import (
	"fmt"
	"testing"
	"time"
)

// A verification read after settle sees every write another client has
// been told was done, on the leader too: the leader has applied it when it
// answers. A sync there is served as a read
// and can overtake the leader's application of a write that a follower
// has acknowledged (measured before the change: 2 syncs in 300 on the
// leader came back below such a write; none on a follower), and a
// verification that missed, say, another client's delete and re-create
// of a node would take it for the very node it was asked about.
func TestSettleSeesAcknowledgedWrites(t *testing.T) {
	needZK(t)
	ctx := ctxT(t, time.Minute)
	leader, err := ens.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var follower string
	for _, srv := range ens.Servers() {
		if srv != leader {
			follower = srv.Addr()
			break
		}
	}
	a := connect(t, []string{leader.Addr()})
	obs := connect(t, []string{follower})
	root := testPath(t, obs)
	const rounds = 1000
	for i := range rounds {
		p := fmt.Sprintf("%s/n%d", root, i)
		if err := mustCreate(ctx, obs, p, nil, 0); err != nil {
			t.Fatal(err)
		}
		conn := a.snap.Load().gen.conn
		if err := settle(conn); err != nil {
			t.Fatal(err)
		}
		// A reply carries the zxid of the last transaction its server had
		// applied when it answered.
		if got, want := a.snap.Load().gen.info.lastZxid.Load(), obs.snap.Load().gen.info.lastZxid.Load(); got < want {
			t.Fatalf("round %d: the leader answered settle having applied up to %#x, below %#x, where a follower had acknowledged %s", i, got, want, p)
		}
		ok, _, err := conn.Exists(p)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			t.Fatalf("round %d: a read on the leader after settle misses %s, which a follower had acknowledged", i, p)
		}
	}
	if got, err := ens.Leader(ctx); err != nil || got != leader {
		t.Fatalf("the leader changed during the test (%v, %v): nothing was shown", got, err)
	}
}
