package recipes

import (
	"errors"

	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// The package's sentinel errors, besides ErrMalformedCount. Errors from
// the session (connection and session loss, unknown outcomes) come
// through wrapped as they are.
var (
	// ErrClosed is returned by a recipe's methods after its Close, and by
	// a second Close.
	ErrClosed = errors.New("recipes: closed")
	// ErrInvalidArgument is wrapped by the error a constructor returns for
	// a nil session, an invalid path (the error wraps
	// resilience.ErrInvalidPath as well), a group member id that is not a
	// single path element, or a double barrier of fewer than one member.
	ErrInvalidArgument = errors.New("recipes: invalid argument")
)

// checkPath rejects an invalid path.
func checkPath(p string) error { return znode.CheckPath(p, ErrInvalidArgument) }

// checkSession rejects a nil session. Constructors check it after their
// other arguments, which need no session.
func checkSession(s *resilience.Session) error { return znode.CheckSession(s, ErrInvalidArgument) }

// checkArgs rejects an invalid path and a nil session.
func checkArgs(s *resilience.Session, p string) error {
	if err := checkPath(p); err != nil {
		return err
	}
	return checkSession(s)
}
