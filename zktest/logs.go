package zktest

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// maxLogLine is the length, in bytes, to which a server's log lines are cut
// when shown in a test's log or an error (the line that starts a server
// holds its whole command line, classpath included).
const maxLogLine = 300

// LogOnFailure shows what the servers logged during a test, if it fails:
// at t's cleanup, when t has failed, it logs with t.Log the last lines
// (WithFailureLogLines of them, 20 by default, each cut to 300 bytes) that
// each server wrote after LogOnFailure was called, and nothing at all when
// t passed. Use it in tests that share an ensemble started once with Start,
// for instance in TestMain; StartEnsemble does it for the ensemble it
// starts. Tests running in parallel on one ensemble see each other's
// server lines. Each server's whole log stays in its log file
// (Server.LogPath, kept by WithDir); ZKTEST_LOGS=1 streams every line as
// it is written (see WithLogWriter).
func (e *Ensemble) LogOnFailure(t testing.TB) {
	t.Helper()
	e.logOnFailure(t, e.logMarks())
}

// logMarks returns each server's current log position.
func (e *Ensemble) logMarks() []int64 {
	marks := make([]int64, len(e.servers))
	for i, s := range e.servers {
		marks[i] = s.tail.mark()
	}
	return marks
}

func (e *Ensemble) logOnFailure(t testing.TB, marks []int64) {
	t.Cleanup(func() {
		if t.Failed() && e.cfg.failureLines > 0 {
			t.Log(e.failureLog(marks, e.cfg.failureLines))
		}
	})
}

// failureLog describes the last n lines each server wrote after its mark.
func (e *Ensemble) failureLog(marks []int64, n int) string {
	var b strings.Builder
	b.WriteString("zktest: the servers' last log lines")
	for i, s := range e.servers {
		out, cut := s.tail.since(marks[i])
		lines := strings.Count(out, "\n")
		if out != "" && !strings.HasSuffix(out, "\n") {
			lines++
		}
		fmt.Fprintf(&b, "\n--- server %d (%s, direct %s): ", s.id, s.Addr(), s.DirectAddr())
		switch {
		case lines == 0:
			b.WriteString("no output")
			continue
		case lines > n || cut:
			fmt.Fprintf(&b, "last %d lines", min(n, lines))
		default:
			fmt.Fprintf(&b, "%d lines", lines)
		}
		if !e.ownsDir {
			fmt.Fprintf(&b, " (all in %s)", s.logPath)
		}
		b.WriteString(" ---\n")
		b.WriteString(strings.TrimSuffix(cutLines(lastLines(out, n), maxLogLine), "\n"))
	}
	fmt.Fprintf(&b, "\n--- end of the servers' log lines (%s=1 streams them all) ---", logsEnv)
	return b.String()
}

// cutLines cuts every line of s longer than width bytes, marking the cut.
func cutLines(s string, width int) string {
	if len(s) <= width {
		return s
	}
	var b strings.Builder
	for line := range strings.Lines(s) {
		body := strings.TrimSuffix(line, "\n")
		if len(body) > width {
			w := width
			for w > 0 && !utf8.RuneStart(body[w]) {
				w--
			}
			fmt.Fprintf(&b, "%s... (%d bytes cut)", body[:w], len(body)-w)
			if len(body) < len(line) {
				b.WriteByte('\n')
			}
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}
