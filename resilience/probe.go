package resilience

import (
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// Liveness timing, as fractions of the negotiated session timeout T (the
// argument for each is in docs/state-machine.md):
//
//   - a probe (a sync of "/", which the client's server passes through the
//     leader) is issued every T/6 while the session is usable;
//   - its answer is overdue T/4 after it was issued (or, with no probe
//     out, T/6 + T/4 after the latest answered request was issued): the
//     session then suspends itself and cuts the connection so that
//     go-zookeeper/zk tries the next server;
//   - presumed expiry counts from the leader-acknowledged time (connInfo).
const (
	probeEvery = 6 // T / probeEvery between probes
	probeGrace = 4 // T / probeGrace for an answer
)

// probeOverdue returns when the current connection counts as unresponsive.
//
// A probe issued before the latest handshake (ackedAt is at least its send
// time) does not count as out: it was sent on a connection since broken,
// whose failure its goroutine has yet to hear of, or it waited in
// go-zookeeper/zk's queue through the outage and goes out after the
// handshake. Counting it would suspend a session the moment a server
// resumed it, and mark that server silent, under a load that merely
// delayed the probe's goroutine, until every server in reach was marked
// and the session expired while the client kept away from them.
func probeOverdue(info *connInfo) time.Time {
	t := info.limit()
	acked := info.ackedAt.Load()
	if at := info.probeAt.Load(); at != 0 && at > acked {
		return time.Unix(0, at).Add(t / probeGrace)
	}
	return time.Unix(0, acked).Add(t/probeEvery + t/probeGrace)
}

// probe issues liveness probes on g's connection for as long as g is in
// use, one at a time, T/6 apart (from issue to issue). It runs on a
// tracked goroutine; retire ends it.
func (s *Session) probe(g *generation) {
	timer := time.NewTimer(g.info.limit() / probeEvery)
	defer timer.Stop()
	for {
		select {
		case <-g.retired:
			return
		case <-s.closing:
			return
		case <-timer.C:
		}
		next := g.info.limit() / probeEvery
		if sn := s.snap.Load(); sn.gen == g && sn.state.HasSession() {
			issued := time.Now()
			g.info.probeAt.Store(issued.UnixNano())
			_, err := g.conn.Sync("/")
			if hook := s.testHookProbed.Load(); hook != nil {
				(*hook)(err)
			}
			g.info.probeAt.Store(0)
			switch {
			case err == nil:
				g.info.probed(issued.UnixNano())
			case errors.Is(err, zk.ErrSessionExpired) || errors.Is(err, zk.ErrSessionMoved):
				// The server answers, but not for this session: make
				// go-zookeeper/zk reconnect and hear the verdict in a
				// handshake instead of keeping a connection whose every
				// request fails.
				g.info.cut()
			}
			next = max(time.Until(issued.Add(next)), 0)
		}
		timer.Reset(next)
	}
}

// hostList is the HostProvider given to go-zookeeper/zk: the servers in a
// random order, tried in turn, skipping those marked silent
// (connInfo.wentSilent) unless every server is. go-zookeeper/zk's own provider makes it
// sleep a whole second after every round of servers, which can outlast a
// short session timeout while a new leader is elected; this one waits
// between T/20 and T/10 (at most a second) after a round in which no
// server granted or resumed a session, and never fails queued requests
// with ErrNoServer. Once the connection is closing it reports retryStart,
// the only way go-zookeeper/zk's connect loop notices.
type hostList struct {
	info *connInfo
	quit []<-chan struct{}

	mu      sync.Mutex
	servers []string
	next    int
	tries   int // since the last session was granted or resumed
}

// Init is part of zk.HostProvider.
func (h *hostList) Init(servers []string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.servers = append([]string(nil), servers...)
	rand.Shuffle(len(h.servers), func(i, j int) { h.servers[i], h.servers[j] = h.servers[j], h.servers[i] })
	return nil
}

// Len is part of zk.HostProvider.
func (h *hostList) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.servers)
}

// Next is part of zk.HostProvider. It returns the next server, after a
// short pause once every server has been tried without success.
func (h *hostList) Next() (string, bool) {
	h.mu.Lock()
	now, n := time.Now(), len(h.servers)
	pick := h.next // every server silent: plain rotation
	for k := range n {
		if j := (h.next + k) % n; !h.info.isSilent(h.servers[j], now) {
			pick = j
			break
		}
	}
	srv := h.servers[pick]
	h.next = (pick + 1) % n
	h.tries++
	pause := h.tries > len(h.servers) && (h.tries-1)%len(h.servers) == 0
	h.mu.Unlock()
	for _, q := range h.quit {
		select {
		case <-q:
			// The connection is being closed: retryStart makes
			// go-zookeeper/zk look at its quit channel (it checks it
			// nowhere else between dials) and give up.
			return srv, true
		default:
		}
	}
	if pause {
		d := min(h.info.limit()/10, time.Second)
		d = d/2 + rand.N(d/2+1)
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-h.quit[0]:
		case <-h.quit[1]:
		}
	}
	return srv, false
}

// Connected is part of zk.HostProvider.
func (h *hostList) Connected() {
	h.mu.Lock()
	h.tries = 0
	h.mu.Unlock()
}
