package zktest

import (
	"errors"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// A Link cuts one client off while another, on the ensemble's shared
// proxies, carries on; sessions made through a Link can be expired.
func TestLinkFaultsOneClient(t *testing.T) {
	if testing.Short() {
		t.Skip("needs ZooKeeper")
	}
	e := StartEnsemble(t)
	l, err := e.NewLink()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if len(l.Addrs()) != 1 || l.Addrs()[0] == e.Addrs()[0] || l.ProxyFor(l.Addrs()[0]) != l.Proxy(0) || l.ProxyFor("nowhere") != nil {
		t.Fatalf("link addrs %v, ensemble %v", l.Addrs(), e.Addrs())
	}
	a := connect(t, l.Addrs(), 6*time.Second)
	b := connect(t, e.Addrs(), 6*time.Second)
	id := a.SessionID()

	// While the link is black-holed, a's requests go unanswered and b's
	// are served.
	l.Blackhole()
	blocked := make(chan error, 1)
	go func() {
		_, _, err := a.Exists("/")
		blocked <- err
	}()
	if _, err := b.Create("/link", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("the other client was cut off too: %v", err)
	}
	select {
	case err := <-blocked:
		t.Fatalf("the linked client was answered (%v) through a black-holed link", err)
	case <-time.After(300 * time.Millisecond):
	}
	if b.count(zk.StateDisconnected) != 0 {
		t.Fatal("the other client was disconnected")
	}
	l.Heal()
	<-blocked // Heal closes the black-holed connection: the call ends
	waitFor(t, 10*time.Second, "the linked client to reconnect", a.hasSession)
	if a.SessionID() != id {
		t.Fatalf("session changed from 0x%x to 0x%x after a short partition", id, a.SessionID())
	}

	if err := e.ExpireSession(testContext(t, 30*time.Second), id); err != nil {
		t.Fatalf("expiring a session made through a link: %v", err)
	}
	waitFor(t, 10*time.Second, "the linked client to hear of the expiry", func() bool {
		return a.count(zk.StateExpired) > 0
	})

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.NewLink(); !errors.Is(err, ErrClosed) {
		t.Fatalf("NewLink after Close: %v, want ErrClosed", err)
	}
}
