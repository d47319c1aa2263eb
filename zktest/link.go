package zktest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Link is one client's own path to every server of an ensemble: a Proxy per
// server, used by that client alone, so a test can partition, slow down or
// disconnect one client while every other client (and the servers among
// themselves) carries on. Create one per client under test with
// Ensemble.NewLink and give the client Link.Addrs (or ConnectString) as its
// server list. Sessions established through a Link can be expired with
// Ensemble.ExpireSession like any other.
//
// The ensemble's own proxies (Ensemble.Addrs, Server.Proxy) are shared by
// every client that connects through them, so a fault there hits all of
// those clients, and a client that names every server merely moves to
// another one. A Link's faults hit its client alone.
//
// The methods that change forwarding act on all of the link's proxies at
// once (Blackhole cuts the client off from the whole ensemble); Proxy(i)
// reaches one of them, for example to cut the client off from the server
// it is connected to (ProxyFor its Server address) while it can still
// reach the others. All methods are safe for concurrent use.
type Link struct {
	proxies []*Proxy
	e       *Ensemble
}

// NewLink returns a new Link to every server of e, in server order. Close
// it when done (the ensemble closes it too).
func (e *Ensemble) NewLink() (*Link, error) {
	if e.isClosed() {
		return nil, ErrClosed
	}
	l := &Link{e: e}
	for _, s := range e.servers {
		p, err := newGatedProxy(s.DirectAddr())
		if err != nil {
			_ = l.Close()
			return nil, fmt.Errorf("zktest: link to server %d: %w", s.id, err)
		}
		l.proxies = append(l.proxies, p)
	}
	e.linksMu.Lock()
	if e.links == nil {
		e.links = make(map[*Link]struct{})
	}
	e.links[l] = struct{}{}
	e.linksMu.Unlock()
	return l, nil
}

// Addrs returns the link's proxy addresses, one per server, in server order.
func (l *Link) Addrs() []string {
	out := make([]string, len(l.proxies))
	for i, p := range l.proxies {
		out[i] = p.Addr()
	}
	return out
}

// ConnectString returns Addrs joined with commas.
func (l *Link) ConnectString() string { return strings.Join(l.Addrs(), ",") }

// Proxy returns the link's proxy to server i (0-based, in server order, as
// Ensemble.Server), or nil when i is out of range.
func (l *Link) Proxy(i int) *Proxy {
	if i < 0 || i >= len(l.proxies) {
		return nil
	}
	return l.proxies[i]
}

// ProxyFor returns the link's proxy whose address is addr (as reported by
// a client as the server it is connected to), or nil.
func (l *Link) ProxyFor(addr string) *Proxy {
	for _, p := range l.proxies {
		if p.Addr() == addr {
			return p
		}
	}
	return nil
}

// DropConnections drops the client's connections to every server.
func (l *Link) DropConnections() { l.each((*Proxy).DropConnections) }

// Blackhole partitions the client from every server (see Proxy.Blackhole).
func (l *Link) Blackhole() { l.each((*Proxy).Blackhole) }

// BlackholeRequests drops what the client sends to every server while what
// the servers send still reaches it (see Proxy.BlackholeRequests).
func (l *Link) BlackholeRequests() { l.each((*Proxy).BlackholeRequests) }

// BlackholeReplies drops what every server sends to the client while what
// the client sends still reaches them (see Proxy.BlackholeReplies).
func (l *Link) BlackholeReplies() { l.each((*Proxy).BlackholeReplies) }

// Reject makes every server refuse the client's connections.
func (l *Link) Reject() { l.each((*Proxy).Reject) }

// SetLatency delays everything the client and every server send each other
// by d, one way (see Proxy.SetLatency); d <= 0 removes the delay.
func (l *Link) SetLatency(d time.Duration) {
	l.each(func(p *Proxy) { p.SetLatency(d) })
}

// Heal restores normal forwarding to every server (see Proxy.Heal).
func (l *Link) Heal() { l.each((*Proxy).Heal) }

func (l *Link) each(f func(*Proxy)) {
	for _, p := range l.proxies {
		f(p)
	}
}

// Close closes the link's proxies and every connection through them (its
// client sees its connection closed and every reconnect refused). It is
// idempotent. Ensemble.Close closes every link still open.
func (l *Link) Close() error {
	var errs []error
	for i, p := range l.proxies {
		if err := p.close(); err != nil {
			errs = append(errs, fmt.Errorf("zktest: closing the link's proxy to server %d: %w", i+1, err))
		}
	}
	if l.e != nil {
		l.e.linksMu.Lock()
		delete(l.e.links, l)
		l.e.linksMu.Unlock()
	}
	return errors.Join(errs...)
}

// linkSet is the part of Ensemble that tracks its links.
type linkSet struct {
	linksMu sync.Mutex
	links   map[*Link]struct{}
}

func (e *Ensemble) linkList() []*Link {
	e.linksMu.Lock()
	defer e.linksMu.Unlock()
	out := make([]*Link, 0, len(e.links))
	for l := range e.links {
		out = append(out, l)
	}
	return out
}
