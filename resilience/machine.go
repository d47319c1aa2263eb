package resilience

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-zookeeper/zk"
)

// item is one thing for the state machine to digest: a session event from a
// connection (with the session id sniffed off its handshake), or the news
// that credentials were added to a connection.
type item struct {
	gen      *generation
	ev       zk.Event
	sid      int64
	authDone bool
	at       time.Time
}

// run is the state machine: the only goroutine that changes the session's
// state, so transitions are totally ordered.
func (s *Session) run() {
	defer close(s.machineDone)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-s.inbox.Ready():
			items, _ := s.inbox.Drain()
			for _, it := range items {
				s.handle(it)
			}
		case <-timer.C:
			s.checkDeadlines(time.Now())
		case <-s.closing:
			s.shutdown()
			return
		}
		timer.Stop()
		if d, ok := s.nextDeadline(); ok {
			timer.Reset(time.Until(d))
		}
	}
}

func (s *Session) handle(it item) {
	g := it.gen
	if g != s.gen {
		return // a retired connection
	}
	if it.authDone {
		g.authDone = true
		if p := g.parked; p != nil {
			g.parked = nil
			s.onSession(*p)
		}
		return
	}
	cur := s.snap.Load()
	switch it.ev.State {
	case zk.StateHasSession:
		if !g.authDone {
			g.parked = &it
			return
		}
		s.onSession(it)
	case zk.StateDisconnected:
		g.parked = nil
		if cur.state.HasSession() {
			s.transition(Suspended, CauseConnectionLost, cur.sid, cur.sid, it.ev.Server, it.at)
		}
	case zk.StateExpired:
		g.parked = nil
		switch {
		case cur.state.HasSession():
			s.transition(Suspended, CauseConnectionLost, cur.sid, cur.sid, it.ev.Server, it.at)
			fallthrough
		case cur.state == Suspended:
			s.lostSessionID = cur.sid
			s.transition(Lost, CauseExpired, cur.sid, 0, it.ev.Server, it.at)
		}
	}
}

// onSession handles a session granted or resumed by the ensemble.
func (s *Session) onSession(it item) {
	cur := s.snap.Load()
	sid, srv := it.sid, it.ev.Server
	switch cur.state {
	case Connecting:
		s.transition(Connected, CauseSessionEstablished, 0, sid, srv, it.at)
	case Suspended:
		if sid == cur.sid {
			s.transition(Reconnected, CauseSessionResumed, sid, sid, srv, it.at)
			return
		}
		s.lostSessionID = cur.sid
		s.transition(Lost, CauseExpired, cur.sid, 0, srv, it.at)
		s.newSession(sid, srv, it.at)
	case Lost:
		if sid == s.lostSessionID {
			// Presumed expired, but the ensemble kept it (the server had
			// lost quorum). Close it so its ephemerals go now, and start a
			// session of our own: holders were already told it was lost.
			s.log.Warn("zookeeper: presumed-lost session is still alive; closing it and opening a new one",
				"session.id", sessionHex(sid), "server", srv)
			old := s.gen
			if err := s.dial(); err != nil {
				s.log.Error("zookeeper: opening a new connection failed", "session.id", sessionHex(sid), "error", err)
				return
			}
			s.retire(old)
			return
		}
		s.newSession(sid, srv, it.at)
	case Connected, Reconnected:
		if sid != cur.sid {
			s.transition(Suspended, CauseConnectionLost, cur.sid, cur.sid, srv, it.at)
			s.lostSessionID = cur.sid
			s.transition(Lost, CauseExpired, cur.sid, 0, srv, it.at)
			s.newSession(sid, srv, it.at)
		}
	}
}

func (s *Session) newSession(sid int64, srv string, at time.Time) {
	s.transition(Connected, CauseSessionEstablished, s.lostSessionID, sid, srv, at)
	s.startRebuild(sid)
}

// nextDeadline is when the machine must next look at the clocks: the
// probe deadline while the session is usable, the presumed-expiry deadline
// while it is suspended.
func (s *Session) nextDeadline() (time.Time, bool) {
	sn := s.snap.Load()
	switch {
	case sn.state.HasSession():
		return s.suspendDeadline(), true
	case sn.state == Suspended:
		return s.presumeDeadline()
	}
	return time.Time{}, false
}

// checkDeadlines acts on whichever deadline has passed. The clocks may have
// moved since the timer was set; nextDeadline then re-arms it.
func (s *Session) checkDeadlines(now time.Time) {
	cur := s.snap.Load()
	switch {
	case cur.state.HasSession():
		if now.Before(s.suspendDeadline()) {
			return
		}
		// The server has not answered the latest probe in time (or, with
		// answers trickling in, the leader-acknowledged time is about to
		// run out): the link is silent, the server hung, a send is
		// blocked, or the server lost its leader and holds our requests.
		// Suspend now, and cut the connection so that go-zookeeper/zk
		// tries another server instead of waiting out its read timeout.
		s.transition(Suspended, CauseUnresponsive, cur.sid, cur.sid, cur.server, now)
		s.gen.info.cutSilent()
	case cur.state == Suspended:
		s.presumeExpiry(now)
	}
}

// suspendDeadline is when a usable session suspends itself: its probe's
// answer is overdue, or SafeUntil is reached, whichever is first.
func (s *Session) suspendDeadline() time.Time {
	d := probeOverdue(&s.gen.info)
	if safe := safeUntil(&s.gen.info, 1); !safe.IsZero() && safe.Before(d) {
		d = safe
	}
	return d
}

// presumeDeadline is when a Suspended session is presumed expired: the
// fraction of the timeout after the leader-acknowledged time, less a
// twentieth of the timeout for timer and scheduling delays.
func (s *Session) presumeDeadline() (time.Time, bool) {
	if s.cfg.presumeFraction <= 0 {
		return time.Time{}, false
	}
	info := &s.gen.info
	d := safeUntil(info, s.cfg.presumeFraction)
	if d.IsZero() {
		return time.Now().Add(info.limit()), true
	}
	return d, true
}

func (s *Session) presumeExpiry(now time.Time) {
	d, ok := s.presumeDeadline()
	if !ok || now.Before(d) {
		return
	}
	cur := s.snap.Load()
	s.lostSessionID = cur.sid
	s.transition(Lost, CausePresumedExpired, cur.sid, 0, cur.server, now)
}

func (s *Session) shutdown() {
	if s.rebuildCancel != nil {
		s.rebuildCancel(fmt.Errorf("%w: closed before the rebuild finished", ErrClosed))
	}
	cur := s.snap.Load()
	s.transition(Closed, CauseClosed, cur.sid, 0, cur.server, time.Now())
	s.mu.Lock()
	for q := range s.subs {
		q.Close()
	}
	s.subs = nil
	s.mu.Unlock()
	s.retire(s.gen)
}

// transition publishes a new state to telemetry, waiting operations,
// listeners, subscribers and the log, in that order: whoever reacts to a
// transition finds it already counted and its suspension span ended.
func (s *Session) transition(to State, cause Cause, oldSID, newSID int64, server string, at time.Time) {
	cur := s.snap.Load()
	if server == "" {
		server = cur.server
	}
	tr := Transition{
		From: cur.state, To: to,
		OldSessionID: oldSID, SessionID: newSID,
		Server: server, Time: at, Cause: cause,
		Timeout: time.Duration(s.gen.info.timeout.Load()),
	}
	if tr.Timeout == 0 {
		tr.Timeout = s.cfg.sessionTimeout
	}
	s.tel.observe(tr)
	sid := newSID
	if to == Suspended {
		sid = cur.sid
	}
	next := &snapshot{state: to, sid: sid, gen: s.gen, server: server, changed: make(chan struct{}), published: make(chan struct{})}
	s.snap.Store(next)
	close(cur.changed)

	s.mu.Lock()
	listeners := make([]func(Transition), 0, len(s.listeners))
	for _, fn := range s.listeners {
		listeners = append(listeners, fn)
	}
	s.last = tr
	for q := range s.subs {
		q.Push(tr)
	}
	s.mu.Unlock()
	for _, fn := range listeners {
		fn(tr)
	}
	close(next.published)

	s.logTransition(tr)
}

// transitionMessage is the message of the one log record a Session writes
// per transition; the transition itself is in the record's attributes (see
// the package documentation, "Logging").
const transitionMessage = "zookeeper session transition"

// logTransition writes the one record of a transition.
func (s *Session) logTransition(tr Transition) {
	ctx := context.Background()
	level := slogLevel(tr.To)
	if !s.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("state.from", tr.From.String()),
		slog.String("state.to", tr.To.String()),
		slog.String("cause", tr.Cause.String()),
		slog.String("session.id", sessionHex(tr.subject())),
	}
	if tr.OldSessionID != 0 && tr.SessionID != 0 && tr.OldSessionID != tr.SessionID {
		attrs = append(attrs, slog.String("session.previous_id", sessionHex(tr.OldSessionID)))
	}
	attrs = append(attrs, slog.String("server", tr.Server), slog.Duration("session.timeout", tr.Timeout))
	s.log.LogAttrs(ctx, level, transitionMessage, attrs...)
}
