package resilience

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"

	"github.com/go-zookeeper/zk"
)

// ProtectedPrefix starts the name of every node made by CreateProtected:
// "_c_" + a random UUID + "-", Curator's format, so a client can find its
// own node after a lost reply.
const ProtectedPrefix = "_c_"

func opError(op, p string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("zookeeper %s %s: %w", op, p, err)
}

// Get returns a node's data and stat. On connection loss it waits for the
// session and reads again.
func (s *Session) Get(ctx context.Context, p string) ([]byte, *zk.Stat, error) {
	if err := ValidatePath(p, false); err != nil {
		return nil, nil, err
	}
	var data []byte
	var st *zk.Stat
	err := s.do(ctx, false, func(sn *snapshot, _ *ambiguity) (err error) {
		data, st, err = sn.gen.conn.Get(p)
		return err
	}, nil)
	if err != nil {
		return nil, nil, opError("get", p, err)
	}
	return data, st, nil
}

// GetW is Get that also sets a data watch. The channel receives one event;
// EventNotWatching means the watch was lost with its session.
func (s *Session) GetW(ctx context.Context, p string) ([]byte, *zk.Stat, <-chan zk.Event, error) {
	if err := ValidatePath(p, false); err != nil {
		return nil, nil, nil, err
	}
	var data []byte
	var st *zk.Stat
	var ch <-chan zk.Event
	err := s.do(ctx, false, func(sn *snapshot, _ *ambiguity) (err error) {
		data, st, ch, err = sn.gen.conn.GetW(p)
		return err
	}, nil)
	if err != nil {
		return nil, nil, nil, opError("get", p, err)
	}
	return data, st, ch, nil
}

// Children returns the names of a node's children.
func (s *Session) Children(ctx context.Context, p string) ([]string, *zk.Stat, error) {
	if err := ValidatePath(p, false); err != nil {
		return nil, nil, err
	}
	var names []string
	var st *zk.Stat
	err := s.do(ctx, false, func(sn *snapshot, _ *ambiguity) (err error) {
		names, st, err = sn.gen.conn.Children(p)
		return err
	}, nil)
	if err != nil {
		return nil, nil, opError("children", p, err)
	}
	return names, st, nil
}

// ChildrenW is Children that also sets a child watch.
func (s *Session) ChildrenW(ctx context.Context, p string) ([]string, *zk.Stat, <-chan zk.Event, error) {
	if err := ValidatePath(p, false); err != nil {
		return nil, nil, nil, err
	}
	var names []string
	var st *zk.Stat
	var ch <-chan zk.Event
	err := s.do(ctx, false, func(sn *snapshot, _ *ambiguity) (err error) {
		names, st, ch, err = sn.gen.conn.ChildrenW(p)
		return err
	}, nil)
	if err != nil {
		return nil, nil, nil, opError("children", p, err)
	}
	return names, st, ch, nil
}

// Exists reports whether a node exists, with its stat if it does.
func (s *Session) Exists(ctx context.Context, p string) (bool, *zk.Stat, error) {
	if err := ValidatePath(p, false); err != nil {
		return false, nil, err
	}
	var ok bool
	var st *zk.Stat
	err := s.do(ctx, false, func(sn *snapshot, _ *ambiguity) (err error) {
		ok, st, err = sn.gen.conn.Exists(p)
		return err
	}, nil)
	if err != nil {
		return false, nil, opError("exists", p, err)
	}
	return ok, st, nil
}

// ExistsW is Exists that also sets a watch (fires on creation, change or
// deletion).
func (s *Session) ExistsW(ctx context.Context, p string) (bool, *zk.Stat, <-chan zk.Event, error) {
	if err := ValidatePath(p, false); err != nil {
		return false, nil, nil, err
	}
	var ok bool
	var st *zk.Stat
	var ch <-chan zk.Event
	err := s.do(ctx, false, func(sn *snapshot, _ *ambiguity) (err error) {
		ok, st, ch, err = sn.gen.conn.ExistsW(p)
		return err
	}, nil)
	if err != nil {
		return false, nil, nil, opError("exists", p, err)
	}
	return ok, st, ch, nil
}

// Sync makes the connected server catch up with the leader for p, as
// ZooKeeper's sync does, so that a following read sees the writes the
// leader had committed before the Sync. ZooKeeper leaves one gap: when the
// connected server is the leader itself, it serves the sync as a read, and
// a write that a follower acknowledged an instant earlier may not be
// visible yet. This package's own verification reads do not rely on Sync
// for that reason (see docs/state-machine.md).
func (s *Session) Sync(ctx context.Context, p string) error {
	if err := ValidatePath(p, false); err != nil {
		return err
	}
	err := s.do(ctx, false, func(sn *snapshot, _ *ambiguity) error {
		_, err := sn.gen.conn.Sync(p)
		return err
	}, nil)
	return opError("sync", p, err)
}

type createMode struct {
	ephemeral, sequential, container bool
}

func parseFlags(flags int32) (createMode, error) {
	switch flags {
	case zk.FlagPersistent:
		return createMode{}, nil
	case zk.FlagEphemeral:
		return createMode{ephemeral: true}, nil
	case zk.FlagSequence:
		return createMode{sequential: true}, nil
	case zk.FlagEphemeralSequential:
		return createMode{ephemeral: true, sequential: true}, nil
	case zk.FlagContainer:
		return createMode{container: true}, nil
	}
	return createMode{}, fmt.Errorf("%w: create flags %d (want persistent, ephemeral, sequence, ephemeral|sequence or container)", zk.ErrInvalidFlags, flags)
}

func (s *Session) aclOr(acl []zk.ACL) []zk.ACL {
	if acl == nil {
		return s.cfg.acl
	}
	return acl
}

// Create creates a node and returns its path (with the sequence suffix for
// sequential nodes). flags is one of zk.FlagPersistent, zk.FlagEphemeral,
// zk.FlagSequence, zk.FlagEphemeralSequential or zk.FlagContainer; a nil acl
// means the session's default.
//
// If the connection breaks with the request in flight, Create waits for the
// session and verifies instead of creating again blindly (see
// ErrOutcomeUnknown): it creates again only if it can show that the first
// request was not applied (nothing under the parent changed since it was
// sent); it reports success only for an ephemeral node of this session
// created since; and it returns zk.ErrNodeExists for a node that was
// already there. Otherwise another client may have made or removed the node
// meanwhile, and nothing tells two creators of equal data apart, so it
// fails with an error wrapping ErrOutcomeUnknown. Use CreateProtected when a
// create must be able to find out. An ephemeral node belongs to the session
// it was asked for: if that session is lost first, Create fails with
// ErrSessionLost and makes sure the node did not land on the next session.
func (s *Session) Create(ctx context.Context, p string, data []byte, flags int32, acl []zk.ACL) (string, error) {
	mode, err := parseFlags(flags)
	if err != nil {
		return "", opError("create", p, err)
	}
	if err := ValidatePath(p, mode.sequential); err != nil {
		return "", err
	}
	acl = s.aclOr(acl)
	if err := checkSize(p, data, acl); err != nil {
		return "", err
	}
	parent := parentOf(p)
	var created string
	err = s.do(ctx, mode.ephemeral, func(sn *snapshot, amb *ambiguity) error {
		conn := sn.gen.conn
		if amb != nil {
			if err := settle(conn); err != nil {
				return err
			}
			if !mode.sequential {
				got, st, err := conn.Get(p)
				switch {
				case err == nil && mode.ephemeral && st.EphemeralOwner == sn.sid && st.Czxid > amb.since && bytes.Equal(got, data):
					created = p
					return nil
				case err == nil && st.Czxid <= amb.since:
					return zk.ErrNodeExists // there before the request: it could not succeed
				case err == nil:
					return unknown("the node was created after the request was sent, by this call or another client")
				case !errors.Is(err, zk.ErrNoNode):
					return err
				}
			}
			if changed, err := childrenChanged(conn, parent, amb); err != nil {
				return err
			} else if changed {
				return unknown("the parent's children changed after the request was sent")
			}
			// Provably not applied: create again.
		}
		var err error
		if mode.container {
			created, err = conn.CreateContainer(p, data, flags, acl)
		} else {
			created, err = conn.Create(p, data, flags, acl)
		}
		if err == nil && mode.ephemeral {
			err = s.checkOwner(sn, created)
		}
		return err
	}, func(sn *snapshot, amb *ambiguity, err error) {
		switch {
		case !mode.ephemeral:
		case err == nil:
			s.removeAbandoned(sn.sid, created)
		case isConnLoss(err) && !mode.sequential:
			// The reply was lost and the caller left: remove the node if
			// this call made it, once the session is back.
			s.cleanUp(sn.sid, p, func(cur *snapshot) (string, error) {
				got, st, err := cur.gen.conn.Get(p)
				if err == nil && st.EphemeralOwner == sn.sid && st.Czxid > amb.since && bytes.Equal(got, data) {
					return p, nil
				}
				return "", err
			})
		}
	})
	if err != nil {
		return "", opError("create", p, err)
	}
	return created, nil
}

// unknown returns an error wrapping ErrOutcomeUnknown that says why.
func unknown(why string) error {
	return fmt.Errorf("%w: %s", ErrOutcomeUnknown, why)
}

// settle makes the connected server catch up with the ensemble's leader
// before a verification read. An operation whose reply was lost was either
// committed by the leader before the session's reconnect was, or is refused
// (a request that reaches the leader after the session moved to another
// server fails with SESSIONMOVED). settle sends a transaction that changes
// nothing (a multi of one version check of "/" at any version): a server
// answers it only after applying every transaction committed before it, so
// the reads that follow see the lost operation's effect if it has one, and
// every write another client had been told was done.
//
// A sync would not do: a sync answered by the leader itself is served as a
// read, and can come back before the leader has applied a write that a
// follower has already acknowledged (TestSettleSeesAcknowledgedWrites).
func settle(conn *zk.Conn) error {
	_, err := conn.Multi(&zk.CheckVersionRequest{Path: "/", Version: -1})
	return err
}

// childrenChanged reports whether a child of parent may have been created
// or deleted since amb.since (the parent's pzxid is later, or the parent is
// gone, which hides its history).
func childrenChanged(conn *zk.Conn, parent string, amb *ambiguity) (bool, error) {
	ok, st, err := conn.Exists(parent)
	if err != nil {
		return false, err
	}
	return !ok || st.Pzxid > amb.since, nil
}

func parentOf(p string) string {
	parent := path.Dir(p)
	if parent == "." {
		return "/"
	}
	return parent
}

// CreateProtected creates a node named parent/_c_<uuid>-<name> (p is
// parent/name; with a sequential flag the server appends the sequence
// number) and returns its path. After a lost reply it lists the parent and
// looks for its UUID before creating again, so exactly one node results.
// flags are as for Create; Curator, Kazoo and go-zookeeper/zk recognise the
// name format.
func (s *Session) CreateProtected(ctx context.Context, p string, data []byte, flags int32, acl []zk.ACL) (string, error) {
	return s.CreateProtectedID(ctx, NewUUID(), p, data, flags, acl)
}

// CreateProtectedID is CreateProtected with the caller's id (normally a
// NewUUID) in the name, so the caller knows its node's prefix,
// ProtectedPrefix+id+"-", before the create returns: a children list that
// holds that prefix was read after the create.
func (s *Session) CreateProtectedID(ctx context.Context, id, p string, data []byte, flags int32, acl []zk.ACL) (string, error) {
	created, _, err := s.CreateProtectedSession(ctx, id, p, data, flags, acl)
	return created, err
}

// CreateProtectedSession is CreateProtectedID that also returns the id of
// the session the create succeeded on: for an ephemeral node, the session
// that owns it (which need not be the session current when the call was
// made, if that one was lost before the request could be sent).
func (s *Session) CreateProtectedSession(ctx context.Context, id, p string, data []byte, flags int32, acl []zk.ACL) (string, int64, error) {
	if id == "" || strings.ContainsAny(id, "/\x00") {
		return "", 0, opError("create", p, fmt.Errorf("%w: protected id %q", zk.ErrBadArguments, id))
	}
	mode, err := parseFlags(flags)
	if err != nil || mode.container {
		return "", 0, opError("create", p, fmt.Errorf("%w: protected create of a container", zk.ErrInvalidFlags))
	}
	if err := ValidatePath(p, mode.sequential); err != nil {
		return "", 0, err
	}
	parent, name := path.Split(p)
	parent = strings.TrimSuffix(parent, "/")
	if parent == "" {
		parent = "/"
	}
	prefix := ProtectedPrefix + id + "-"
	full := path.Join(parent, prefix+name)
	if mode.sequential && name == "" {
		full += "/"
	}
	acl = s.aclOr(acl)
	if err := checkSize(full, data, acl); err != nil {
		return "", 0, err
	}
	var created string
	var owner int64
	err = s.do(ctx, mode.ephemeral, func(sn *snapshot, amb *ambiguity) error {
		conn := sn.gen.conn
		if amb != nil {
			if err := settle(conn); err != nil {
				return err
			}
			found, err := findPrefixed(conn, parent, prefix)
			if err != nil && !errors.Is(err, zk.ErrNoNode) {
				return err
			}
			if found != "" {
				created, owner = found, sn.sid
				if mode.ephemeral {
					return s.checkOwner(sn, created)
				}
				return nil
			}
			if changed, err := childrenChanged(conn, parent, amb); err != nil {
				return err
			} else if changed {
				// Our name is not there, but a node of ours may have been
				// made and removed again by another client.
				return unknown("no node with this call's prefix, and the parent's children changed after the request was sent")
			}
		}
		var err error
		created, err = conn.Create(full, data, flags, acl)
		owner = sn.sid
		if err == nil && mode.ephemeral {
			err = s.checkOwner(sn, created)
		}
		return err
	}, func(sn *snapshot, _ *ambiguity, err error) {
		switch {
		case err == nil:
			var bound int64
			if mode.ephemeral {
				bound = owner
			}
			s.removeAbandoned(bound, created)
		case isConnLoss(err), errors.Is(err, ErrSessionLost):
			// The reply was lost and the caller left, or the session the
			// node was meant for ended first: find the node, if it was
			// made, on whatever session is current once one is back
			// (go-zookeeper/zk may have sent the request on the next
			// session), and remove it. Nobody else uses this prefix.
			s.cleanUp(0, full, func(cur *snapshot) (string, error) {
				if err := settle(cur.gen.conn); err != nil {
					return "", err
				}
				return findPrefixed(cur.gen.conn, parent, prefix)
			})
		}
	})
	if err != nil {
		return "", 0, opError("create", full, err)
	}
	return created, owner, nil
}

func findPrefixed(conn *zk.Conn, parent, prefix string) (string, error) {
	names, _, err := conn.Children(parent)
	if err != nil {
		return "", err
	}
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			return path.Join(parent, n), nil
		}
	}
	return "", nil
}

// checkOwner guards against go-zookeeper/zk sending a request queued during
// an outage on the session that replaced the one it was meant for: an
// ephemeral node created after the session changed is deleted again and the
// create fails with ErrSessionLost.
func (s *Session) checkOwner(sn *snapshot, p string) error {
	conn := sn.gen.conn
	if conn.SessionID() == sn.sid {
		return nil
	}
	// The node, if it is still there, belongs to the later session (any
	// node of sn's went with it): remove it before the caller hears, so
	// that a retry does not find two nodes of its own.
	// Only a node of the session the connection is on when it is found is
	// removed: that one is this call's (a node of a session lost since
	// went with it).
	s.cleanUp(0, p, func(cur *snapshot) (string, error) {
		ok, st, err := cur.gen.conn.Exists(p)
		if err != nil || !ok || st.EphemeralOwner == sn.sid || st.EphemeralOwner != cur.gen.conn.SessionID() {
			return "", err
		}
		return p, nil
	})
	return fmt.Errorf("%w: session %s ended while creating %s", ErrSessionLost, sessionHex(sn.sid), p)
}

// removeAbandoned deletes a node whose create completed after its caller
// gave up. bound, if not zero, is the session that owns the (ephemeral)
// node: once it is lost, so is the node.
func (s *Session) removeAbandoned(bound int64, p string) {
	if p == "" {
		return
	}
	s.cleanUp(bound, p, func(*snapshot) (string, error) { return p, nil })
}

// cleanUp removes the node that find names (none if it names ""), for a
// call whose caller has gone. A connection lost on the way does not end it:
// it waits for the connection to come back and starts over, so that a node
// left by an abandoned create is not left for good (on a session that
// lives on it would block, or count against, every later contender of a
// queue). It stops once the node is gone, the Session closes, or session
// bound (if not zero) is lost, which takes the node with it. Any other
// error is logged with what, the path the cleanup is for.
func (s *Session) cleanUp(bound int64, what string, find func(cur *snapshot) (string, error)) {
	var b *backoff
	for {
		cur := s.awaitSession(bound)
		if cur == nil {
			return // closed, or bound was lost
		}
		p, err := find(cur)
		if err == nil && p != "" {
			err = cur.gen.conn.Delete(p, -1)
		}
		if err == nil || errors.Is(err, zk.ErrNoNode) {
			return
		}
		if !isConnLoss(err) {
			s.log.Warn("zookeeper: could not remove node of a cancelled create", "path", what, "error", err)
			return
		}
		if b == nil {
			b = s.newBackoff()
		}
		if b.wait(context.Background(), s.closing) != nil {
			return
		}
	}
}

// awaitSession waits for a session to use, without a deadline: session
// bound if that is not zero. It returns nil once the Session closes or a
// session other than bound is established. Unlike await it waits through
// Lost and Connecting even with a bound, since go-zookeeper/zk may already
// be on a session that the state machine has yet to take in.
func (s *Session) awaitSession(bound int64) *snapshot {
	for {
		sn := s.snap.Load()
		switch {
		case sn.state == Closed:
			return nil
		case sn.state.HasSession():
			if bound != 0 && sn.sid != bound {
				return nil
			}
			return sn
		}
		select {
		case <-sn.changed:
		case <-s.closing:
			return nil
		}
	}
}

// Delete deletes a node if its version matches (-1 matches any).
//
// If the connection breaks with the request in flight, Delete verifies
// before deleting again, and never deletes a node created after its request
// was sent (another client's, made at the same path meanwhile). When the
// node it was asked to delete is still there, it deletes it (or reports
// why not); when it was already gone before the request was sent, it
// returns zk.ErrNoNode. Otherwise the node is gone, removed after the
// request was sent by this call or by another client, and Delete returns an
// error wrapping ErrOutcomeUnknown: for Delete that error always means the
// node it was asked to delete no longer exists.
func (s *Session) Delete(ctx context.Context, p string, version int32) error {
	if err := ValidatePath(p, false); err != nil {
		return err
	}
	err := s.do(ctx, false, func(sn *snapshot, amb *ambiguity) error {
		conn := sn.gen.conn
		if amb != nil {
			if err := settle(conn); err != nil {
				return err
			}
			ok, st, err := conn.Exists(p)
			switch {
			case err != nil:
				return err
			case ok && st.Czxid > amb.since:
				return unknown("the node was deleted after the request was sent and another node has been created at its path since (left alone)")
			case !ok:
				if changed, err := childrenChanged(conn, parentOf(p), amb); err != nil {
					return err
				} else if changed {
					return unknown("the node is gone, deleted after the request was sent by this call or another client")
				}
				return zk.ErrNoNode
			}
			// The node the request was meant for is still there: delete it.
		}
		return conn.Delete(p, version)
	}, nil)
	return opError("delete", p, err)
}

// Set writes a node's data if its version matches (-1 matches any) and
// returns the new stat.
//
// If the connection breaks with the request in flight, Set verifies before
// writing again: it writes again only if the node has not changed since the
// request was sent, and returns zk.ErrBadVersion when another client's
// write took the version this call asked for. Otherwise (the node holds
// this call's data at the next version, which another client writing the
// same data would also leave, or it changed further) it fails with an
// error wrapping ErrOutcomeUnknown.
func (s *Session) Set(ctx context.Context, p string, data []byte, version int32) (*zk.Stat, error) {
	if err := ValidatePath(p, false); err != nil {
		return nil, err
	}
	if err := checkSize(p, data, nil); err != nil {
		return nil, err
	}
	var st *zk.Stat
	err := s.do(ctx, false, func(sn *snapshot, amb *ambiguity) (err error) {
		conn := sn.gen.conn
		if amb != nil {
			if err := settle(conn); err != nil {
				return err
			}
			got, cur, err := conn.Get(p)
			switch {
			case errors.Is(err, zk.ErrNoNode):
				if changed, err := childrenChanged(conn, parentOf(p), amb); err != nil {
					return err
				} else if changed {
					return unknown("the node was deleted after the request was sent")
				}
				return zk.ErrNoNode
			case err != nil:
				return err
			case cur.Mzxid <= amb.since:
				// Unchanged since the request was sent: not applied.
			case version >= 0 && cur.Czxid <= amb.since && cur.Version == version+1 && !bytes.Equal(got, data):
				return zk.ErrBadVersion // another client's write took this version
			default:
				return unknown("the node changed after the request was sent, by this call or another client")
			}
		}
		st, err = conn.Set(p, data, version)
		return err
	}, nil)
	if err != nil {
		return nil, opError("set", p, err)
	}
	return st, nil
}

// Multi runs ops (*zk.CreateRequest, *zk.DeleteRequest, *zk.SetDataRequest,
// *zk.CheckVersionRequest) as one transaction.
//
// If the connection breaks with the transaction in flight, Multi verifies
// before running it again. A transaction is atomic, so one op that shows it
// did not run is enough: a node it creates is absent with no child of the
// parent changed since (or was already there), a node it sets or deletes
// has not changed since (or was absent all along), a node it checks has not
// changed since and is at another version (the check failed the
// transaction). Multi then runs it again. It reports the first run's success
// only with proof that it ran: an ephemeral node it creates exists, owned by
// this session, created since, holding its data. Otherwise it fails with an
// error wrapping ErrOutcomeUnknown. Include an op on a node only this call
// touches (for example an ephemeral create) when the answer matters. An
// ephemeral create binds the transaction to the session it first ran on.
func (s *Session) Multi(ctx context.Context, ops ...any) ([]zk.MultiResponse, error) {
	bound := false
	size := 0
	for _, op := range ops {
		var p string
		var seq bool
		switch o := op.(type) {
		case *zk.CreateRequest:
			m, err := parseFlags(o.Flags)
			if err != nil || m.container {
				return nil, opError("multi", o.Path, fmt.Errorf("%w: flags %d", zk.ErrInvalidFlags, o.Flags))
			}
			if o.Acl == nil {
				o.Acl = s.cfg.acl
			}
			p, seq, bound = o.Path, m.sequential, bound || m.ephemeral
			size += requestSize(p, o.Data, o.Acl)
		case *zk.DeleteRequest:
			p = o.Path
		case *zk.SetDataRequest:
			p = o.Path
			size += requestSize(p, o.Data, nil)
		case *zk.CheckVersionRequest:
			p = o.Path
		default:
			return nil, fmt.Errorf("zookeeper multi: %w: unsupported op %T", zk.ErrBadArguments, op)
		}
		if err := ValidatePath(p, seq); err != nil {
			return nil, err
		}
		size += 16 + len(p)
	}
	if size > maxPacket {
		return nil, fmt.Errorf("zookeeper multi: %w: about %d bytes", ErrDataTooLarge, size)
	}
	// A try abandoned by a cancelled caller runs on (see Session.call), so
	// what a try found is published under resMu and read under it.
	var resMu sync.Mutex
	var res []zk.MultiResponse
	publish := func(r []zk.MultiResponse) {
		resMu.Lock()
		res = r
		resMu.Unlock()
	}
	err := s.do(ctx, bound, func(sn *snapshot, amb *ambiguity) (err error) {
		conn := sn.gen.conn
		if amb != nil {
			if err := settle(conn); err != nil {
				return err
			}
			ran, notRun, err := multiVerdict(conn, sn.sid, ops, amb)
			switch {
			case err != nil:
				return err
			case ran != nil:
				publish(ran)
				return nil
			case !notRun:
				return unknown("no op of the transaction shows whether it ran")
			}
		}
		res, err := conn.Multi(ops...)
		publish(res)
		if err == nil && bound && conn.SessionID() != sn.sid {
			// Sent on the session after the one it was meant for: take its
			// ephemeral nodes off again (see checkOwner).
			for i, op := range ops {
				if c, ok := op.(*zk.CreateRequest); ok && i < len(res) {
					if m, _ := parseFlags(c.Flags); m.ephemeral {
						_ = s.checkOwner(sn, res[i].String)
					}
				}
			}
			return fmt.Errorf("%w: session %s ended during a transaction", ErrSessionLost, sessionHex(sn.sid))
		}
		return err
	}, nil)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("zookeeper multi: %w", err) // a try may still be running
	}
	resMu.Lock()
	defer resMu.Unlock()
	if err != nil {
		return res, fmt.Errorf("zookeeper multi: %w", err)
	}
	return res, nil
}

// cannotHaveRun reports whether an op on node p cannot have run
// since amb.since: p exists and unchanged(its stat) holds, or p is absent
// and no child of its parent changed since (so the op would have failed).
func cannotHaveRun(conn *zk.Conn, p string, amb *ambiguity, unchanged func(*zk.Stat) bool) (bool, error) {
	ok, st, err := conn.Exists(p)
	if err != nil {
		return false, err
	}
	if ok {
		return unchanged(st), nil
	}
	changed, err := childrenChanged(conn, parentOf(p), amb)
	return !changed, err
}

// multiVerdict looks at the nodes ops touch after a lost reply. It returns
// responses describing the transaction when an op proves that it ran, or
// notRun when an op proves that it did not, or neither.
func multiVerdict(conn *zk.Conn, sid int64, ops []any, amb *ambiguity) (ran []zk.MultiResponse, notRun bool, err error) {
	proved := false
	for _, op := range ops {
		switch o := op.(type) {
		case *zk.CreateRequest:
			m, _ := parseFlags(o.Flags)
			if !m.sequential {
				data, st, err := conn.Get(o.Path)
				switch {
				case err == nil && st.Czxid <= amb.since:
					return nil, true, nil // already there: the create would fail
				case err == nil && m.ephemeral && st.EphemeralOwner == sid && bytes.Equal(data, o.Data):
					proved = true
					continue
				case err == nil:
					continue
				case !errors.Is(err, zk.ErrNoNode):
					return nil, false, err
				}
			}
			if changed, err := childrenChanged(conn, parentOf(o.Path), amb); err != nil {
				return nil, false, err
			} else if !changed {
				return nil, true, nil
			}
		case *zk.SetDataRequest:
			if notRun, err := cannotHaveRun(conn, o.Path, amb, func(st *zk.Stat) bool { return st.Mzxid <= amb.since }); err != nil || notRun {
				return nil, notRun, err
			}
		case *zk.DeleteRequest:
			if notRun, err := cannotHaveRun(conn, o.Path, amb, func(st *zk.Stat) bool { return st.Czxid <= amb.since }); err != nil || notRun {
				return nil, notRun, err
			}
		case *zk.CheckVersionRequest:
			// A check changes nothing: it shows the transaction did not
			// run only when it must have failed it.
			if notRun, err := cannotHaveRun(conn, o.Path, amb, func(st *zk.Stat) bool {
				return st.Mzxid <= amb.since && o.Version >= 0 && st.Version != o.Version
			}); err != nil || notRun {
				return nil, notRun, err
			}
		}
	}
	if !proved {
		return nil, false, nil
	}
	out := make([]zk.MultiResponse, len(ops))
	for i, op := range ops {
		switch o := op.(type) {
		case *zk.CreateRequest:
			out[i].String = o.Path
			if _, st, err := conn.Exists(o.Path); err == nil {
				out[i].Stat = st
			}
		case *zk.SetDataRequest:
			if _, st, err := conn.Exists(o.Path); err == nil {
				out[i].Stat = st
			}
		}
	}
	return out, false, nil
}

// NewUUID returns a random (version 4) UUID in its canonical text form.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
