//go:build linux

package chaos

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/fence"
	"github.com/zkrecipes/zkrecipes/internal/testkit"
	"github.com/zkrecipes/zkrecipes/lock"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// A client process paused (SIGSTOP: a long GC pause, a stopped VM) for
// longer than its session timeout is the one fault no client-side rule
// can make safe: while it is stopped it cannot step down, the ensemble
// expires its session and hands the lock on, and it resumes believing it
// holds. TestPausedClientIsFenced shows both halves of that on a real
// ensemble, with the paused holder in a process of its own (this binary
// run again, see paused_child_test.go) and its contender in this one:
//
//   - paused for less than T, the child is still the only holder: its
//     contender does not acquire until the child's holding has ended, and
//     the child's write after the pause is accepted if nobody newer wrote;
//   - paused for longer than T, the contender acquires while the child is
//     stopped, so the two holdings overlap (recorded on the one clock of
//     this machine: the contender held before the child's lease ended);
//     the contender writes to the fenced store with its token, and the
//     child's write with its old token, made after SIGCONT whatever the
//     child then believes, is refused with fence.ErrStaleToken.
//
// Every write, whoever made it, must be accepted exactly when its token is
// at least the highest accepted so far; no stale write may be accepted.
// With -v the test logs, per pause, when the contender acquired, what the
// child believed as it wrote, the store's verdict and the overlap:
//
//	go test ./chaos -run TestPausedClientIsFenced -v

// pausedT is the session timeout of the paused child and its contender.
const pausedT = 2 * time.Second

// pausedSafe is a pause the ensemble cannot expire the child's session
// in: the child sends something at least every T/3 (go-zookeeper/zk's
// pings, more often the session's own probes), so the ensemble has heard
// from it less than T/3 before the pause began, and expires it only after
// T of silence.
const pausedSafe = 2 * pausedT / 3

// pauseCycle is one SIGSTOP of the holding child.
type pauseCycle struct {
	name   string
	pause  time.Duration // how long the child stays stopped, at least
	long   bool          // longer than T: the contender must acquire during it
	policy resilience.LossPolicy
}

// pauseResult is what one cycle measured.
type pauseResult struct {
	pauseCycle
	childToken, contToken int64
	stopped, resumed      time.Time // SIGSTOP confirmed, SIGCONT sent
	contAcquired          time.Time
	childEnd              time.Time // the child's holding ended (its clock: this machine's)
	childEndHow           string    // released, lost
	childCause            string
	believed              bool      // the child's lease still looked held as it wrote
	childWrote            time.Time // when it wrote
	childWriteAccepted    bool
	complete              bool // the cycle ran to its end
	// overran: a pause meant to be shorter than T was ended so late by
	// this process (a 2-core machine under load) that it reached
	// pausedSafe, and the contender got in: not a violation, and not
	// counted as a pause past T either; only the store's rule is checked.
	overran bool
}

// overlap is how long both held: from the contender's acquisition to the
// child's end (negative: the contender acquired that long after the child
// stopped holding).
func (r pauseResult) overlap() time.Duration { return r.childEnd.Sub(r.contAcquired) }

// storeLog applies and records every write to the fenced store, in the
// order the store saw them.
type storeLog struct {
	mu    sync.Mutex
	store fence.Store
	ws    []fenceWrite
	bad   []string // writes whose outcome broke the store's rule
	high  int64    // highest token accepted so far
}

// write makes one write with token and reports whether it was accepted;
// an error other than fence.ErrStaleToken is returned. Whether it should
// have been accepted is decided here, from the writes before it: exactly
// when token is at least the highest accepted token.
func (l *storeLog) write(who string, token int64) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	at := time.Now()
	err := l.store.Write(fenceResource, token, []byte(who))
	done := time.Now()
	if err != nil && !errors.Is(err, fence.ErrStaleToken) {
		return false, err
	}
	ok := err == nil
	if want := token >= l.high; ok != want {
		l.bad = append(l.bad, fmt.Sprintf("%s's write with token %d (highest accepted %d): accepted=%v, want %v (err %v)", who, token, l.high, ok, want, err))
	}
	if ok {
		l.high = max(l.high, token)
	}
	l.ws = append(l.ws, fenceWrite{who: who, res: fenceResource, token: token, at: at, done: done, accepted: ok})
	return ok, nil
}

func TestPausedClientIsFenced(t *testing.T) {
	testkit.NeedZK(t)
	testkit.Restore(t, ens)
	base := testkit.Path("/chaos-paused")
	lockPath := base + "/lock"
	obs := testkit.Connect(t, ens.Addrs())
	cs := testkit.Connect(t, ens.Addrs(), resilience.WithSessionTimeout(pausedT))
	// Registered before the child starts, so it runs after the child is
	// gone: nothing of the test's is left under base.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		removeTree(ctx, t, obs, base)
	})
	ch := startPausedChild(t, ens.Addrs(), pausedT, lockPath)

	var sl storeLog
	cycles := []pauseCycle{
		{"T/4", pausedT / 4, false, resilience.LoseOnSuspend},
		{"T/2", pausedT / 2, false, resilience.LoseOnSessionLoss},
		{"1.5T", 3 * pausedT / 2, true, resilience.LoseOnSuspend},
		{"2.5T", 5 * pausedT / 2, true, resilience.LoseOnSessionLoss},
	}
	var results []pauseResult
	for _, c := range cycles {
		r, ok := runPauseCycle(t, ch, cs, obs, &sl, lockPath, c)
		results = append(results, r)
		if !ok {
			break
		}
	}

	t.Logf("paused holder (child process) vs contender (this process), T = %v:", pausedT)
	for _, r := range results {
		if !r.complete {
			t.Logf("  pause %-4s (%v, %s): stopped at %s; did not complete", r.name, r.policy, kindOf(r), r.stopped.Format("15:04:05.000"))
			continue
		}
		t.Logf("  pause %-4s (%v, %s): stopped at %s for %v; contender acquired %s; child wrote %v after SIGCONT, believing it held: %v, its write (token %d; contender's %d) accepted: %v; its holding ended %v after SIGCONT (%s: %s); overlap %v",
			r.name, r.policy, kindOf(r), r.stopped.Format("15:04:05.000"), r.resumed.Sub(r.stopped).Round(time.Millisecond),
			sinceStop(r), r.childWrote.Sub(r.resumed).Round(100*time.Microsecond), r.believed, r.childToken, r.contToken, r.childWriteAccepted,
			r.childEnd.Sub(r.resumed).Round(100*time.Microsecond), r.childEndHow, r.childCause,
			max(r.overlap(), 0).Round(time.Millisecond))
	}

	ws := sl.all()
	refused := 0
	for _, w := range ws {
		if !w.accepted {
			refused++
		}
	}
	stale := staleAccepted(ws)
	t.Logf("fenced store: %d writes, %d refused as stale, %d stale accepted", len(ws), refused, len(stale))
	for _, b := range sl.bad {
		t.Errorf("fenced store broke its rule: %s", b)
	}
	if len(stale) > 0 {
		t.Errorf("stale writes accepted: %d, first: %s", len(stale), stale[0])
	}
	var prev int64
	for _, w := range ws {
		if !w.accepted {
			continue
		}
		if w.token < prev {
			t.Errorf("accepted writes out of token order: %s after token %d", w, prev)
		}
		prev = w.token
	}
	for _, r := range results {
		if !r.long || !r.complete || r.overran {
			continue
		}
		if r.childWriteAccepted {
			t.Errorf("pause %s: the resumed child's write with its old token %d was accepted after the contender (token %d) wrote", r.name, r.childToken, r.contToken)
		}
		if r.overlap() <= 0 {
			t.Errorf("pause %s: no overlap observed: the child's holding ended at %s, before the contender acquired at %s; a pause past T must let the contender in while the child still holds",
				r.name, r.childEnd.Format("15:04:05.000"), r.contAcquired.Format("15:04:05.000"))
		}
	}
	ch.quit(t)
	ch.mu.Lock()
	t.Logf("the child's session transitions (from its log):\n%s", strings.Join(ch.events, "\n"))
	ch.mu.Unlock()
	if names := testkit.Children(t, obs, lockPath); len(names) != 0 {
		t.Errorf("lock nodes left behind: %v", names)
	}
}

func (l *storeLog) all() []fenceWrite {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]fenceWrite(nil), l.ws...)
}

func kindOf(r pauseResult) string {
	switch {
	case r.long:
		return "longer than T"
	case r.overran:
		return "meant shorter than T, overran"
	}
	return "shorter than T"
}

func sinceStop(r pauseResult) string {
	if r.contAcquired.IsZero() {
		return "never"
	}
	d := r.contAcquired.Sub(r.stopped).Round(time.Millisecond)
	if r.contAcquired.Before(r.resumed) {
		return fmt.Sprintf("%v after SIGSTOP, while the child was stopped", d)
	}
	return fmt.Sprintf("%v after SIGSTOP, %v after SIGCONT", d, r.contAcquired.Sub(r.resumed).Round(time.Millisecond))
}

// contended is the contender's acquisition: its lease and when Lock
// returned, after its first write with the lease's token.
type contended struct {
	lease *lock.Lease
	at    time.Time
	err   error
}

// runPauseCycle runs one cycle; false means the test cannot go on.
func runPauseCycle(t *testing.T, ch *pausedChild, cs, obs *resilience.Session, sl *storeLog, lockPath string, c pauseCycle) (pauseResult, bool) {
	t.Helper()
	r := pauseResult{pauseCycle: c}
	// Nothing is left of the cycle before.
	testkit.WaitChildren(t, obs, lockPath, 0, 10*time.Second)
	ch.send(t, "LOCK "+c.policy.String())
	held := ch.expect(t, "HELD", 30*time.Second)
	r.childToken = mustInt(t, held[1])

	m, err := lock.NewMutex(cs, lockPath)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan contended, 1)
	lctx, cancel := context.WithTimeout(context.Background(), 10*pausedT+30*time.Second)
	defer cancel()
	go func() {
		l, err := m.Lock(lctx)
		at := time.Now()
		if err == nil {
			if _, werr := sl.write("contender", l.Token()); werr != nil {
				err = werr
			}
		}
		got <- contended{l, at, err}
	}()
	var cont contended
	haveCont := false
	// The contender always ends: released at the end of the cycle.
	defer func() {
		if !haveCont {
			cancel()
			cont = <-got
		}
		if cont.lease != nil {
			rctx, rcancel := context.WithTimeout(context.Background(), 2*pausedT)
			defer rcancel()
			if err := cont.lease.Release(rctx); err != nil {
				t.Errorf("pause %s: contender's release: %v", c.name, err)
			}
		}
	}()
	// The contender queues behind the child before the child stops.
	testkit.WaitChildren(t, obs, lockPath, 2, 10*time.Second)

	r.stopped = ch.stop(t)
	if c.long {
		// The contender must get the lock while the child is stopped: once
		// the ensemble expires the child's session (T after it last heard
		// from it), the child's node goes.
		deadline := time.NewTimer(5 * pausedT)
		select {
		case cont = <-got:
			haveCont = true
			deadline.Stop()
		case <-deadline.C:
		}
		if !haveCont || cont.err != nil {
			r.resumed = ch.cont(t)
			t.Errorf("pause %s: the contender did not acquire within %v of SIGSTOP (err %v): the child's session was not expired while it was stopped", c.name, 5*pausedT, cont.err)
			ch.send(t, "RELEASE")
			ch.expect(t, "END", 5*pausedT)
			return r, false
		}
		r.contAcquired, r.contToken = cont.at, cont.lease.Token()
		// The pause lasts at least c.pause: the fault's length, not a
		// condition of the test.
		time.Sleep(time.Until(r.stopped.Add(c.pause)))
	} else {
		timer := time.NewTimer(c.pause)
		select {
		case cont = <-got:
			haveCont = true
			timer.Stop()
			if d := cont.at.Sub(r.stopped); d < pausedSafe {
				t.Errorf("pause %s: the contender acquired (token %d, err %v) %v after SIGSTOP, while the child still held: a pause shorter than %v must not let anyone in",
					c.name, tokenOf(cont.lease), cont.err, d, pausedSafe)
			} else {
				r.overran = true
				t.Logf("pause %s overran: this process ended it late, and the contender acquired %v after SIGSTOP", c.name, d)
			}
		case <-timer.C:
		}
	}
	// The write is waiting in the child's input as it resumes.
	ch.send(t, "WRITE")
	r.resumed = ch.cont(t)
	w := ch.expect(t, "WRITE", 5*pausedT)
	if tok := mustInt(t, w[1]); tok != r.childToken {
		t.Errorf("pause %s: child wrote with token %d, its lease's is %d", c.name, tok, r.childToken)
	}
	r.believed = w[2] == "1"
	r.childWrote = time.Unix(0, mustInt(t, w[3]))
	ok, err := sl.write("child", r.childToken)
	if err != nil {
		t.Errorf("pause %s: the child's write: %v, want nil or fence.ErrStaleToken", c.name, err)
	}
	r.childWriteAccepted = ok
	if ok {
		ch.send(t, "OK")
	} else {
		ch.send(t, "STALE")
	}

	if c.long {
		ch.send(t, "AWAIT")
	} else {
		ch.send(t, "RELEASE")
	}
	end := ch.expect(t, "END", 12*pausedT)
	r.childEnd = time.Unix(0, mustInt(t, end[1]))
	r.childEndHow = end[2]
	r.childCause = strings.Join(end[3:], " ")
	if r.childEndHow == "held" {
		t.Errorf("pause %s: the child's lease did not end within %v of SIGCONT", c.name, 10*pausedT)
		return r, false
	}
	if !c.long {
		if !haveCont {
			select {
			case cont = <-got:
				haveCont = true
			case <-time.After(5 * pausedT):
			}
		}
		if !haveCont || cont.err != nil {
			t.Errorf("pause %s: the contender did not acquire within %v of the child's end (err %v)", c.name, 5*pausedT, cont.err)
			return r, false
		}
		r.contAcquired, r.contToken = cont.at, cont.lease.Token()
		switch paused := r.resumed.Sub(r.stopped); {
		case r.overlap() <= 0:
		case paused < pausedSafe:
			t.Errorf("pause %s: the contender acquired at %s, %v before the child's holding ended: overlap after a pause of %v",
				c.name, r.contAcquired.Format("15:04:05.000"), r.overlap(), paused)
		default:
			r.overran = true
			t.Logf("pause %s overran: this process ended it late (%v), and the holdings overlapped by %v", c.name, paused, r.overlap())
		}
	}
	if r.contToken <= r.childToken {
		t.Errorf("pause %s: the contender's token %d is not above the child's %d", c.name, r.contToken, r.childToken)
	}
	r.complete = true
	return r, true
}

func tokenOf(l *lock.Lease) int64 {
	if l == nil {
		return 0
	}
	return l.Token()
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	v, err := parseInt64(s)
	if err != nil {
		t.Fatalf("child sent %q: %v", s, err)
	}
	return v
}

// pausedChild is the running child process.
type pausedChild struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan []string // every line but EV, split into fields
	done   chan struct{} // closed when the child's output ends
	stderr *bytes.Buffer
	mu     sync.Mutex
	events []string // the child's session transitions, as it reported them
	exited bool
}

// startPausedChild starts the child holder, connected to servers, and
// ends it at cleanup.
func startPausedChild(t *testing.T, servers []string, timeout time.Duration, lockPath string) *pausedChild {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(),
		pausedEnvChild+"=1",
		pausedEnvServers+"="+strings.Join(servers, ","),
		pausedEnvTimeout+"="+timeout.String(),
		pausedEnvPath+"="+lockPath,
	)
	ch := &pausedChild{cmd: cmd, lines: make(chan []string, 64), done: make(chan struct{}), stderr: &bytes.Buffer{}}
	cmd.Stderr = &lockedWriter{w: ch.stderr, mu: &ch.mu}
	if ch.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(ch.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 0:
			case f[0] == "EV":
				ch.mu.Lock()
				ev := sc.Text()
				if ns, err := parseInt64(f[1]); err == nil && len(f) > 2 {
					ev = time.Unix(0, ns).Format("15:04:05.000") + " " + strings.Join(f[2:], " ")
				}
				ch.events = append(ch.events, ev)
				ch.mu.Unlock()
			default:
				select {
				case ch.lines <- f:
				default:
					// Nobody reads (the test is failing): keep draining.
				}
			}
		}
	}()
	t.Cleanup(func() {
		ch.kill()
		if t.Failed() {
			ch.mu.Lock()
			t.Logf("child's stderr:\n%s", ch.stderr.String())
			ch.mu.Unlock()
		}
	})
	ch.expect(t, "READY", 30*time.Second)
	return ch
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func (ch *pausedChild) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(ch.stdin, line+"\n"); err != nil {
		t.Fatalf("to child: %s: %v", line, err)
	}
}

// expect returns the child's next line starting with word; an ERR line,
// the end of its output or no such line within d fails the test.
func (ch *pausedChild) expect(t *testing.T, word string, d time.Duration) []string {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case f := <-ch.lines:
			if f[0] == word {
				return f
			}
			if f[0] == "ERR" {
				t.Fatalf("child, waiting for %s: %s", word, strings.Join(f, " "))
			}
		case <-ch.done:
			t.Fatalf("child's output ended waiting for %s", word)
		case <-timer.C:
			t.Fatalf("no %s from the child within %v", word, d)
		}
	}
}

// stop sends SIGSTOP and returns once the kernel shows the child stopped.
func (ch *pausedChild) stop(t *testing.T) time.Time {
	t.Helper()
	if err := ch.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := procState(ch.cmd.Process.Pid)
		if err != nil {
			t.Fatalf("child's state: %v", err)
		}
		if st == 'T' {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("child not stopped 10s after SIGSTOP (state %c)", st)
		}
		time.Sleep(time.Millisecond)
	}
}

// cont sends SIGCONT and returns the time just before it did: the child
// may run before the signal call returns here.
func (ch *pausedChild) cont(t *testing.T) time.Time {
	t.Helper()
	at := time.Now()
	if err := ch.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT: %v", err)
	}
	return at
}

// procState is a process's state letter from /proc/<pid>/stat (T: stopped).
func procState(pid int) (byte, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, b)
	}
	return b[i+2], nil
}

// quit asks the child to close its session and exit, and fails unless it
// exits cleanly (its TestMain checks for leaked goroutines too).
func (ch *pausedChild) quit(t *testing.T) {
	t.Helper()
	ch.send(t, "QUIT")
	ch.stdin.Close()
	select {
	case <-ch.done:
	case <-time.After(30 * time.Second):
		t.Errorf("child did not exit within 30s of QUIT")
		ch.kill()
		return
	}
	err := ch.cmd.Wait()
	ch.exited = true
	if err != nil {
		ch.mu.Lock()
		t.Errorf("child exited with %v; stderr:\n%s", err, ch.stderr.String())
		ch.mu.Unlock()
	}
}

// kill ends the child if it has not exited (continuing it first, if
// stopped) and waits for it.
func (ch *pausedChild) kill() {
	if ch.exited {
		return
	}
	ch.exited = true
	_ = ch.cmd.Process.Signal(syscall.SIGCONT)
	_ = ch.cmd.Process.Kill()
	<-ch.done
	_ = ch.cmd.Wait()
}

// removeTree deletes p and everything under it.
func removeTree(ctx context.Context, t *testing.T, s *resilience.Session, p string) {
	t.Helper()
	names, _, err := s.Children(ctx, p)
	if errors.Is(err, zk.ErrNoNode) {
		return
	}
	if err != nil {
		t.Errorf("children of %s: %v", p, err)
		return
	}
	for _, n := range names {
		removeTree(ctx, t, s, path.Join(p, n))
	}
	if err := s.Delete(ctx, p, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
		t.Errorf("deleting %s: %v", p, err)
	}
}
