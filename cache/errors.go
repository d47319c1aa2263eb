package cache

import (
	"errors"

	"github.com/zkrecipes/zkrecipes/internal/znode"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// The package's sentinel errors. Errors from the session (connection and
// session loss) come through wrapped as they are.
var (
	// ErrClosed is returned by a second Close.
	ErrClosed = errors.New("cache: closed")
	// ErrInvalidArgument is wrapped by the error a constructor returns for
	// a nil session or an invalid path (the error wraps
	// resilience.ErrInvalidPath as well).
	ErrInvalidArgument = errors.New("cache: invalid argument")
	// ErrInvalidOption is wrapped by the error NewTree returns for a bad
	// option value (a negative depth, a concurrency below 1).
	ErrInvalidOption = errors.New("cache: invalid option")
)

// checkPath rejects an invalid path.
func checkPath(p string) error { return znode.CheckPath(p, ErrInvalidArgument) }

// checkSession rejects a nil session. Constructors check it after their
// other arguments, which need no session.
func checkSession(s *resilience.Session) error { return znode.CheckSession(s, ErrInvalidArgument) }
