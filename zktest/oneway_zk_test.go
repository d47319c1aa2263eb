package zktest

import (
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// One-way blackholes with a real client and server: with the replies
// dropped the server still applies what the client sends; with the
// requests dropped nothing the client sends is applied but the server's
// watch notifications still reach it. Both on a server's Proxy and on a
// Link.
func TestOneWayBlackholes(t *testing.T) {
	if testing.Short() {
		t.Skip("needs ZooKeeper")
	}
	e := StartEnsemble(t)
	s := e.Server(0)
	direct := connect(t, []string{s.DirectAddr()}, 10*time.Second)
	acl := zk.WorldACL(zk.PermAll)
	if _, err := direct.Create("/oneway", nil, 0, acl); err != nil {
		t.Fatal(err)
	}
	l, err := e.NewLink()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	type path struct {
		addrs                   []string
		requests, replies, heal func()
	}
	paths := map[string]path{
		"Proxy": {[]string{s.Addr()}, s.Proxy().BlackholeRequests, s.Proxy().BlackholeReplies, s.Proxy().Heal},
		"Link":  {l.Addrs(), l.BlackholeRequests, l.BlackholeReplies, l.Heal},
	}
	for _, name := range []string{"Proxy", "Link"} {
		p := paths[name]
		t.Run(name+"/Replies", func(t *testing.T) {
			c := connect(t, p.addrs, 10*time.Second)
			id := c.SessionID()
			node := "/oneway/replies-" + name
			p.replies()
			defer p.heal() // on failure too, so the client can close
			result := make(chan error, 1)
			go func() {
				_, err := c.Create(node, nil, 0, acl)
				result <- err
			}()
			waitFor(t, 10*time.Second, "the server to apply the create whose reply is dropped", func() bool {
				ok, _, err := direct.Exists(node)
				return err == nil && ok
			})
			select {
			case err := <-result:
				t.Fatalf("the client got the reply (%v) through a replies blackhole", err)
			default:
			}
			p.heal()
			<-result // Heal closes the connection: the call ends
			waitFor(t, 20*time.Second, "the client to reconnect", c.hasSession)
			if c.SessionID() != id {
				t.Fatalf("session changed from 0x%x to 0x%x", id, c.SessionID())
			}
			if ok, _, err := c.Exists(node); err != nil || !ok {
				t.Fatalf("after Heal the client sees its node: %v, %v", ok, err)
			}
		})
		t.Run(name+"/Requests", func(t *testing.T) {
			c := connect(t, p.addrs, 10*time.Second)
			id := c.SessionID()
			watched := "/oneway/watched-" + name
			node := "/oneway/requests-" + name
			_, _, events, err := c.ExistsW(watched)
			if err != nil {
				t.Fatal(err)
			}
			p.requests()
			defer p.heal() // on failure too, so the client can close
			result := make(chan error, 1)
			go func() {
				_, err := c.Create(node, nil, 0, acl)
				result <- err
			}()
			if _, err := direct.Create(watched, nil, 0, acl); err != nil {
				t.Fatal(err)
			}
			select {
			case ev := <-events:
				if ev.Type != zk.EventNodeCreated || ev.Path != watched {
					t.Fatalf("watch event %+v, want NodeCreated of %s", ev, watched)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no watch notification through a requests blackhole")
			}
			// The notification came after the create was sent; the create
			// had every chance to be applied.
			if _, err := direct.Sync(node); err != nil {
				t.Fatal(err)
			}
			if ok, _, err := direct.Exists(node); err != nil || ok {
				t.Fatalf("the create sent through a requests blackhole: exists=%v, err=%v", ok, err)
			}
			select {
			case err := <-result:
				t.Fatalf("the create was answered (%v) through a requests blackhole", err)
			default:
			}
			p.heal()
			<-result
			waitFor(t, 20*time.Second, "the client to reconnect", c.hasSession)
			if c.SessionID() != id {
				t.Fatalf("session changed from 0x%x to 0x%x", id, c.SessionID())
			}
			if ok, _, err := direct.Exists(node); err != nil || ok {
				t.Fatalf("the dropped create was applied after Heal: exists=%v, err=%v", ok, err)
			}
		})
	}
}
