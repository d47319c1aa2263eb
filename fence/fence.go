// Package fence is a reference fenced store: it accepts a write only if
// the write's fencing token is at least the highest token it has seen for
// the resource written, and refuses it with an error wrapping ErrStaleToken
// otherwise.
//
// A lock or leadership on ZooKeeper cannot by itself stop a holder whose
// own process pauses (a long GC pause, a stopped VM, a swapped-out host)
// for longer than its loss policy's margin: it resumes believing it holds,
// after the ensemble has expired its session and handed the lock on, and
// nothing on the client can tell it so before its next write. The store
// that write goes to can. Every lock.Lease and election.Term has a Token,
// the czxid of its node, which is larger for every later holder of the
// same lock or election; a store that remembers the highest token it has
// accepted and refuses lower ones refuses the resumed holder's writes once
// the next holder has written. See docs/fencing.md.
//
// Store keeps its data in memory and is meant to be read and copied. The
// whole rule, for any storage, is a compare-and-set on the stored maximum
// token, done atomically with the write: in one transaction, or one
// conditional statement, read the token stored with the resource, refuse
// the write if the new token is lower, else write the value and the new
// token together. In SQL, for example:
//
//	INSERT INTO accounts (id, balance, token) VALUES ($1, $2, $3)
//	ON CONFLICT (id) DO UPDATE SET balance = EXCLUDED.balance, token = EXCLUDED.token
//	WHERE accounts.token <= EXCLUDED.token
//
// and no row affected means a stale token. Checking first and writing
// afterwards, as two steps, is not fencing: a newer holder can write in
// between and be overwritten.
//
// Equal tokens are accepted, so one holder may write many times. Tokens of
// different locks are not comparable: fence each resource with the tokens
// of the one lock (or election) that guards it.
package fence

import (
	"errors"
	"fmt"
	"sync"
)

// ErrStaleToken is wrapped by the error of a write that Store refused
// because its token is lower than the highest token it has accepted for
// the resource (or is not positive: every real token is).
var ErrStaleToken = errors.New("fence: stale fencing token")

// Store is an in-memory map from resource names to values in which every
// write carries a fencing token. The zero value is an empty store, ready
// to use. A Store is safe for concurrent use; nothing in it blocks except
// briefly on its mutex.
type Store struct {
	mu  sync.Mutex
	res map[string]record
}

// record is a resource's value and the highest token accepted for it: the
// token of the write that stored the value.
type record struct {
	token int64
	value []byte
}

// Write stores value as resource's value if token is positive and at least
// the highest token accepted for resource so far; that token then becomes
// the highest. Otherwise it changes nothing and returns an error wrapping
// ErrStaleToken. The comparison and the write happen under one lock, so no
// write with a lower token can land after a write with a higher one. The
// store keeps a copy of value.
func (s *Store) Write(resource string, token int64, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.res[resource]
	if token <= 0 || token < cur.token {
		return fmt.Errorf("%w: write to %q with token %d, highest accepted %d", ErrStaleToken, resource, token, cur.token)
	}
	if s.res == nil {
		s.res = make(map[string]record)
	}
	s.res[resource] = record{token: token, value: append([]byte(nil), value...)}
	return nil
}

// Read returns a copy of resource's value and the token of the write that
// stored it, which is the highest token accepted for resource; nil and 0
// if resource was never written.
func (s *Store) Read(resource string) (value []byte, token int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.res[resource]
	if !ok {
		return nil, 0
	}
	return append([]byte(nil), r.value...), r.token
}
