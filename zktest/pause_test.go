package zktest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// processState returns the state letter of pid from /proc ("T" when
// stopped), or "" where there is no /proc.
func processState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// pid (comm) state ...; comm may hold spaces.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return ""
}

// lastExit returns the exit status the server's log recorded last.
func lastExit(t *testing.T, s *Server) string {
	t.Helper()
	b, err := os.ReadFile(s.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndex(string(b), ") exited: ")
	if i < 0 {
		t.Fatalf("no exit recorded in %s", s.LogPath())
	}
	line, _, _ := strings.Cut(string(b[i+len(") exited: "):]), "\n")
	return line
}

// A paused server accepts TCP connections but answers nothing while the
// others keep their quorum; resumed, it serves again. A paused leader is
// replaced. Stop, Kill and Close end a paused server.
func TestPauseResume(t *testing.T) {
	if testing.Short() {
		t.Skip("needs ZooKeeper")
	}
	ctx := testContext(t, 4*time.Minute)
	e := StartEnsemble(t, WithServers(3))
	syncTimeout := time.Duration(e.SyncLimit()) * e.TickTime()
	leader, followers := roles(ctx, t, e)
	f := followers[0]
	var others []string
	for _, s := range e.Servers() {
		if s != f {
			others = append(others, s.Addr())
		}
	}
	c := connect(t, others, 10*time.Second)
	acl := zk.WorldACL(zk.PermAll)
	if _, err := c.Create("/pause", nil, 0, acl); err != nil {
		t.Fatal(err)
	}

	t.Run("Follower", func(t *testing.T) {
		pid := f.PID()
		if err := f.Pause(); err != nil {
			t.Fatal(err)
		}
		defer f.Resume()
		if !f.Paused() || !f.Running() {
			t.Fatalf("Paused() %v, Running() %v", f.Paused(), f.Running())
		}
		if err := f.Pause(); err != nil {
			t.Fatalf("second Pause: %v", err)
		}
		if runtime.GOOS == "linux" {
			waitFor(t, 5*time.Second, "the paused server's process to be stopped (state T)", func() bool {
				return processState(pid) == "T"
			})
		}
		// The kernel completes the TCP connection, the server never
		// answers the connect request.
		expectSilence(t, rawConnect(t, f.DirectAddr()), 2*time.Second)
		if _, err := f.Mode(ctx); !errors.Is(err, ErrNotServing) {
			t.Fatalf("Mode of a paused server: %v, want ErrNotServing", err)
		}
		// The other two keep their quorum, and WaitServing does not wait
		// for the paused one.
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := e.WaitServing(wctx); err != nil {
			t.Fatal(err)
		}
		if mode, err := leader.Mode(ctx); err != nil || mode != "leader" {
			t.Fatalf("leader while a follower is paused: %q, %v", mode, err)
		}
		if _, err := c.Create("/pause/follower", nil, 0, acl); err != nil {
			t.Fatalf("no write while a follower is paused: %v", err)
		}

		if err := f.Resume(); err != nil {
			t.Fatal(err)
		}
		if f.Paused() {
			t.Fatal("Paused() after Resume")
		}
		if err := f.Resume(); err != nil {
			t.Fatalf("second Resume: %v", err)
		}
		// Just resumed, it may still believe in a connection the leader
		// has given up on: wait until it answers clients again.
		waitFor(t, syncTimeout+30*time.Second, "the resumed follower to serve", func() bool {
			return answersConnect(f.DirectAddr())
		})
		fc := connect(t, []string{f.Addr()}, 10*time.Second)
		if _, err := fc.Sync("/pause"); err != nil {
			t.Fatal(err)
		}
		if ok, _, err := fc.Exists("/pause/follower"); err != nil || !ok {
			t.Fatalf("resumed follower lacks the write made while it was paused: %v, %v", ok, err)
		}
	})

	t.Run("Leader", func(t *testing.T) {
		old, _ := roles(ctx, t, e)
		if err := old.Pause(); err != nil {
			t.Fatal(err)
		}
		defer old.Resume()
		paused := time.Now()
		l, err := e.Leader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if l == old {
			t.Fatal("Leader() returned the paused leader")
		}
		var rest []string
		for _, s := range e.Servers() {
			if s != old {
				rest = append(rest, s.Addr())
			}
		}
		rc := connect(t, rest, 10*time.Second)
		t.Logf("tick %v, syncLimit %d (%v): server %d led %v after the leader (server %d) was paused",
			e.TickTime(), e.SyncLimit(), syncTimeout, l.ID(), time.Since(paused).Round(time.Millisecond), old.ID())
		if _, err := rc.Create("/pause/leader", nil, 0, acl); err != nil {
			t.Fatalf("no write under the new leader: %v", err)
		}
		if err := old.Resume(); err != nil {
			t.Fatal(err)
		}
		if err := e.WaitServing(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, syncTimeout+30*time.Second, "the resumed old leader to follow", func() bool {
			mode, err := old.Mode(ctx)
			return err == nil && mode == "follower" && answersConnect(old.DirectAddr())
		})
	})

	t.Run("EndPaused", func(t *testing.T) {
		_, fs := roles(ctx, t, e)
		s := fs[0]
		// Stop continues the process, so it ends on SIGTERM rather than
		// on the SIGKILL sent after the grace period.
		if err := s.Pause(); err != nil {
			t.Fatal(err)
		}
		pid := s.PID()
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
		if s.Running() || s.Paused() || processAlive(pid) {
			t.Fatalf("paused server still running after Stop (pid %d)", pid)
		}
		if got := lastExit(t, s); got != "exit status 143" {
			t.Errorf("paused server stopped with %q, want exit status 143 (SIGTERM acted on)", got)
		}
		if err := s.Pause(); !errors.Is(err, ErrNotServing) {
			t.Errorf("Pause of a stopped server: %v, want ErrNotServing", err)
		}
		if err := s.Resume(); err != nil {
			t.Errorf("Resume of a stopped server: %v", err)
		}
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.WaitServing(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Pause(); err != nil {
			t.Fatal(err)
		}
		pid = s.PID()
		if err := s.Kill(); err != nil {
			t.Fatal(err)
		}
		if s.Running() || processAlive(pid) {
			t.Fatalf("paused server still running after Kill (pid %d)", pid)
		}
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.WaitServing(ctx); err != nil {
			t.Fatal(err)
		}
		// Close ends a paused server and every other.
		if err := s.Pause(); err != nil {
			t.Fatal(err)
		}
		var pids []int
		for _, o := range e.Servers() {
			pids = append(pids, o.PID())
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		for _, p := range pids {
			if processAlive(p) {
				t.Errorf("process %d survived Close", p)
			}
		}
		if err := s.Pause(); !errors.Is(err, ErrClosed) {
			t.Errorf("Pause after Close: %v, want ErrClosed", err)
		}
	})
}
