//go:build linux

package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zkrecipes/zkrecipes/lock"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// The paused client of TestPausedClientIsFenced is this test binary run
// again as a child process, with the pausedEnv* variables saying where to
// connect: TestMain then runs the child (childMain) instead of any test,
// and starts no ensemble. It holds the lock the
// parent's contender wants, and the parent stops it with SIGSTOP.
//
// The protocol is one line per message. The parent sends:
//
//	LOCK <lose_on_suspend|lose_on_session_loss>   take the lock with that policy
//	WRITE      write to the parent's fenced store with the lease's token
//	RELEASE    end the holding now (Release, or note it was lost)
//	AWAIT      wait for the lease to end by itself (its loss), then as RELEASE
//	QUIT       close the session and exit (so does end of input)
//
// and the child answers (every time as a Unix time in nanoseconds):
//
//	READY <session id>
//	HELD <token> <time> <session id>
//	WRITE <token> <believed 1|0> <time>   then reads OK or STALE
//	END <time the holding ended> <released|lost|held> <cause>
//	ERR <message>
//
// and reports every session transition as
//
//	EV <time> <from> <to> <cause> <old session> <new session>
//
// "believed" is whether the lease's Err was still nil as the child wrote:
// whether, as far as the child could tell, it still held the lock. The child
// writes whatever it believes, so the store meets the stale token.
const (
	pausedEnvChild   = "ZKRECIPES_CHAOS_PAUSED_CHILD"
	pausedEnvServers = "ZKRECIPES_CHAOS_PAUSED_SERVERS"
	pausedEnvTimeout = "ZKRECIPES_CHAOS_PAUSED_TIMEOUT"
	pausedEnvPath    = "ZKRECIPES_CHAOS_PAUSED_PATH"
)

func init() {
	childMain = func() int {
		if os.Getenv(pausedEnvChild) == "" {
			return -1
		}
		if err := runPausedChild(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintf(os.Stdout, "ERR %s\n", oneLine(err.Error()))
			fmt.Fprintln(os.Stderr, "paused child:", err)
			return 1
		}
		return 0
	}
}

// childOut writes the child's lines; the session's listener writes too.
type childOut struct {
	mu sync.Mutex
	w  io.Writer
}

func (o *childOut) printf(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintf(o.w, format+"\n", args...)
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " | ") }

// runPausedChild runs the child's side of the protocol on in and out.
func runPausedChild(in io.Reader, w io.Writer) error {
	servers := strings.Split(os.Getenv(pausedEnvServers), ",")
	timeout, err := time.ParseDuration(os.Getenv(pausedEnvTimeout))
	if err != nil {
		return fmt.Errorf("%s: %w", pausedEnvTimeout, err)
	}
	path := os.Getenv(pausedEnvPath)
	out := &childOut{w: w}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	s, err := resilience.Connect(ctx, servers, resilience.WithSessionTimeout(timeout))
	cancel()
	if err != nil {
		return err
	}
	defer s.Close()
	unlisten := s.AddListener(func(tr resilience.Transition) {
		out.printf("EV %d %s %s %s %#x %#x", tr.Time.UnixNano(), tr.From, tr.To, tr.Cause, tr.OldSessionID, tr.SessionID)
	})
	defer unlisten()
	out.printf("READY %#x", s.SessionID())

	var (
		lease     *lock.Lease
		lostAt    atomic.Int64 // when the lease's context ended, by an AfterFunc
		stopWatch = func() bool { return false }
	)
	defer func() { stopWatch() }()
	// endTime is the earliest record of the lease's end: the AfterFunc's,
	// or the time a caller saw it ended (whichever ran first).
	endTime := func(seen time.Time) int64 {
		if la := lostAt.Load(); la != 0 && la < seen.UnixNano() {
			return la
		}
		return seen.UnixNano()
	}
	finish := func() {
		if lease == nil {
			out.printf("ERR no lease to end")
			return
		}
		var end int64
		how := "released"
		if lease.Err() == nil {
			end = time.Now().UnixNano() // the holder stops as it calls Release
		} else {
			end, how = endTime(time.Now()), "lost"
		}
		rctx, cancel := context.WithTimeout(context.Background(), 2*timeout)
		err := lease.Release(rctx)
		cancel()
		cause := "-"
		switch {
		case err != nil && !errors.Is(err, lock.ErrLeaseLost):
			out.printf("ERR release: %s", oneLine(err.Error()))
		case err != nil && how == "released":
			// Lost between the check and the Release (then the loss is
			// the end), or the session turned out gone as Release deleted
			// the node (then the holder stopped as it called Release).
			if la := lostAt.Load(); la != 0 && la < end {
				end, how = la, "lost"
			}
			cause = oneLine(err.Error())
		case how == "lost":
			cause = oneLine(context.Cause(lease.Context()).Error())
		}
		stopWatch()
		lease = nil
		out.printf("END %d %s %s", end, how, cause)
	}

	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "LOCK":
			if lease != nil {
				out.printf("ERR LOCK while holding")
				continue
			}
			policy := resilience.LoseOnSuspend
			if len(f) > 1 && f[1] == resilience.LoseOnSessionLoss.String() {
				policy = resilience.LoseOnSessionLoss
			}
			m, err := lock.NewMutex(s, path, lock.WithLossPolicy(policy))
			if err != nil {
				out.printf("ERR %s", oneLine(err.Error()))
				continue
			}
			lctx, cancel := context.WithTimeout(context.Background(), 10*timeout+30*time.Second)
			l, err := m.Lock(lctx)
			cancel()
			if err != nil {
				out.printf("ERR lock: %s", oneLine(err.Error()))
				continue
			}
			lease = l
			lostAt.Store(0)
			stopWatch = context.AfterFunc(l.Context(), func() { lostAt.Store(time.Now().UnixNano()) })
			out.printf("HELD %d %d %#x", l.Token(), time.Now().UnixNano(), s.SessionID())
		case "WRITE":
			if lease == nil {
				out.printf("ERR WRITE without a lease")
				continue
			}
			believed := 0
			if lease.Err() == nil {
				believed = 1
			}
			out.printf("WRITE %d %d %d", lease.Token(), believed, time.Now().UnixNano())
			if !sc.Scan() {
				return sc.Err()
			}
		case "AWAIT":
			if lease == nil {
				out.printf("ERR AWAIT without a lease")
				continue
			}
			timer := time.NewTimer(10 * timeout)
			select {
			case <-lease.Done():
				timer.Stop()
				finish()
			case <-timer.C:
				out.printf("END %d held -", time.Now().UnixNano())
			}
		case "RELEASE":
			finish()
		case "QUIT":
			return nil
		default:
			out.printf("ERR unknown command %q", f[0])
		}
	}
	return sc.Err()
}

// parseInt64 parses a decimal or 0x-prefixed integer from the protocol.
func parseInt64(s string) (int64, error) { return strconv.ParseInt(s, 0, 64) }
