package zktest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
)

// ErrNoPeers is returned by Server.IsolateFromPeers and Server.RejoinPeers
// on a standalone server, which has no peers to be cut off from.
var ErrNoPeers = errors.New("zktest: a standalone server has no peers")

// peerRoute is the way one server of an ensemble reaches another: a Proxy
// in front of each of the other's quorum and election ports. Every server
// has its own zoo.cfg, which names itself at its real ports and every other
// server at the routes from it, so all traffic between two servers passes
// through the two routes between them (one per direction: whichever server
// opens a connection uses its own route to the other).
type peerRoute struct {
	from, to *Server
	quorum   *Proxy // to's quorum port (followers connect to the leader's)
	election *Proxy // to's leader election port
}

// Leader election protocol versions of the initial message a server sends
// on an election connection it opens (QuorumCnxManager.InitialMessage):
// the version, the sender's id, then the sender's own election address(es)
// as a length-prefixed "host:port" ("|"-separated for several in V2).
const (
	electionProtocolV1  int64 = -65535
	electionProtocolV2  int64 = -65536
	maxElectionAddrSize       = 2048 // InitialMessage.parse refuses longer
)

// electionHello returns the hello function of the election proxy on the
// route from one server to another. The server receiving a connection from
// a server with a smaller id closes it and connects back to the address in
// the initial message, which is the sender's real election port (the one
// it listens on). The function rewrites that address to replyAddr, the
// election proxy of the route back, so that the connection back passes
// through the routes too and isolation cuts it.
func electionHello(replyAddr string) func(io.Reader) ([]byte, error) {
	return func(r io.Reader) ([]byte, error) {
		var head [8]byte
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return nil, err
		}
		v := int64(binary.BigEndian.Uint64(head[:]))
		if v != electionProtocolV1 && v != electionProtocolV2 {
			return head[:], nil // an old-style message: just the sender's id
		}
		var sidLen [12]byte
		if _, err := io.ReadFull(r, sidLen[:]); err != nil {
			return nil, err
		}
		n := int32(binary.BigEndian.Uint32(sidLen[8:]))
		if n < 0 || n > maxElectionAddrSize {
			return nil, fmt.Errorf("zktest: election initial message with an address of %d bytes", n)
		}
		if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
			return nil, err
		}
		out := make([]byte, 0, 8+8+4+len(replyAddr))
		out = append(out, head[:]...)
		out = append(out, sidLen[:8]...)
		out = binary.BigEndian.AppendUint32(out, uint32(len(replyAddr)))
		return append(out, replyAddr...), nil
	}
}

// setupRoutes creates the routes between every ordered pair of servers.
func (e *Ensemble) setupRoutes() error {
	if len(e.servers) < 2 {
		return nil
	}
	e.routes = make(map[[2]int]*peerRoute)
	for _, from := range e.servers {
		for _, to := range e.servers {
			if from == to {
				continue
			}
			r := &peerRoute{from: from, to: to}
			var err error
			if r.quorum, err = newProxy(""); err == nil {
				e.routes[[2]int{from.id, to.id}] = r
				r.election, err = newProxy("")
			}
			if err != nil {
				return fmt.Errorf("zktest: starting peer proxy from server %d to %d: %w", from.id, to.id, err)
			}
		}
	}
	// The hello of each election proxy needs the route back's address.
	for k, r := range e.routes {
		back := e.routes[[2]int{k[1], k[0]}]
		r.quorum.mu.Lock()
		r.quorum.noSniff = true
		// A follower that finds the leader's port closed retries; one
		// whose connection to the route is reset starts a new election.
		r.quorum.redial = true
		r.quorum.mu.Unlock()
		r.election.mu.Lock()
		r.election.noSniff = true
		r.election.hello = electionHello(back.election.Addr())
		r.election.mu.Unlock()
	}
	return nil
}

// route returns the route from server from to server to (by id).
func (e *Ensemble) route(from, to int) *peerRoute { return e.routes[[2]int{from, to}] }

// retargetRoutes points every route at the current ports of its server.
func (e *Ensemble) retargetRoutes() {
	for _, r := range e.routes {
		r.to.mu.Lock()
		peer, election := r.to.peerPort, r.to.electionPort
		r.to.mu.Unlock()
		r.quorum.setTarget(net.JoinHostPort("127.0.0.1", strconv.Itoa(peer)))
		r.election.setTarget(net.JoinHostPort("127.0.0.1", strconv.Itoa(election)))
	}
}

// closeRoutes closes the proxies of every route.
func (e *Ensemble) closeRoutes() []error {
	var errs []error
	for _, r := range e.routes {
		for _, p := range []*Proxy{r.quorum, r.election} {
			if p == nil {
				continue
			}
			if err := p.close(); err != nil {
				errs = append(errs, fmt.Errorf("zktest: closing the peer proxy from server %d to %d: %w", r.from.id, r.to.id, err))
			}
		}
	}
	return errs
}

// peerAddrs returns the quorum and election addresses under which server
// of's zoo.cfg names server o: its real ports for itself, else the route.
func (s *Server) peerAddrs(o *Server) (quorum, election string) {
	if o == s {
		o.mu.Lock()
		defer o.mu.Unlock()
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(o.peerPort)), net.JoinHostPort("127.0.0.1", strconv.Itoa(o.electionPort))
	}
	r := s.ens.route(s.id, o.id)
	return r.quorum.Addr(), r.election.Addr()
}

// IsolateFromPeers partitions the server from the other servers of its
// ensemble while its clients still reach it: every quorum and leader
// election connection between it and any other server, in either
// direction, goes silent (black-holed: nothing is closed or answered, see
// Proxy.Blackhole), and so do the new ones, which are accepted but never
// forwarded. Its client port and its Proxy are untouched.
//
// This is the fault of a server cut off from the rest of its ensemble by
// the network, which its clients must survive. The server does not know at
// once: a follower keeps answering its clients' reads and pings until its
// connection to the leader has been silent for syncLimit ticks (see
// WithSyncLimit), while the leader may expire their sessions after their
// session timeout; it then stops serving and, until it rejoins, accepts
// connections but closes each one after the connect request. A leader cut
// off keeps serving until it misses its followers' acknowledgements for
// syncLimit ticks, while the other servers elect a new leader once they
// have not heard from it for as long. The others keep serving if they are
// a quorum.
//
// Isolating an isolated server does nothing. RejoinPeers ends it. It
// returns ErrNoPeers for a standalone server and ErrClosed after the
// ensemble's Close.
func (s *Server) IsolateFromPeers() error {
	e := s.ens
	if e.isClosed() {
		return ErrClosed
	}
	if len(e.servers) < 2 {
		return ErrNoPeers
	}
	e.peerMu.Lock()
	defer e.peerMu.Unlock()
	s.isolated = true
	for _, o := range e.servers {
		if o == s {
			continue
		}
		for _, r := range []*peerRoute{e.route(s.id, o.id), e.route(o.id, s.id)} {
			r.quorum.Blackhole()
			r.election.Blackhole()
		}
	}
	return nil
}

// RejoinPeers ends IsolateFromPeers: the black-holed connections between
// the server and its peers are closed (their streams would be dead after a
// real partition) and new ones are forwarded again, except to servers that
// are themselves still isolated. The server then rejoins the ensemble on
// its own schedule: ZooKeeper's leader election retries with a back-off
// that doubles up to a minute, so after a long isolation rejoining may take
// that long (Server.WaitServing waits for it). Rejoining a server that is
// not isolated does nothing. It returns ErrNoPeers for a standalone server
// and ErrClosed after the ensemble's Close.
func (s *Server) RejoinPeers() error {
	e := s.ens
	if e.isClosed() {
		return ErrClosed
	}
	if len(e.servers) < 2 {
		return ErrNoPeers
	}
	e.peerMu.Lock()
	defer e.peerMu.Unlock()
	if !s.isolated {
		return nil
	}
	s.isolated = false
	for _, o := range e.servers {
		if o == s || o.isolated {
			continue
		}
		for _, r := range []*peerRoute{e.route(s.id, o.id), e.route(o.id, s.id)} {
			r.quorum.Heal()
			r.election.Heal()
		}
	}
	return nil
}

// IsolatedFromPeers reports whether the server is isolated from its peers
// (between IsolateFromPeers and RejoinPeers).
func (s *Server) IsolatedFromPeers() bool {
	s.ens.peerMu.Lock()
	defer s.ens.peerMu.Unlock()
	return s.isolated
}
