package zktest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

var (
	// ErrZooKeeperNotFound is wrapped by the error Start returns when no
	// Apache ZooKeeper installation can be found. Its message says how to
	// install one.
	ErrZooKeeperNotFound = errors.New("zktest: Apache ZooKeeper not found; install it with `apt-get update && apt-get install -y zookeeper`, or set ZOOKEEPER_HOME to a ZooKeeper installation directory")

	// ErrJavaNotFound is wrapped by the error Start returns when no java
	// executable can be found. Its message says how to install one.
	ErrJavaNotFound = errors.New("zktest: java not found on PATH (nor in $JAVA_HOME/bin); install a Java runtime with `apt-get update && apt-get install -y default-jre-headless`")

	// ErrNotServing is wrapped by the errors of Server.Mode and friends when
	// a server is not serving client requests: it is stopped, still starting,
	// or (in an ensemble) not part of a quorum.
	ErrNotServing = errors.New("zktest: server not serving requests")

	// ErrClosed is returned by operations on an Ensemble or its Servers
	// after the Ensemble's Close.
	ErrClosed = errors.New("zktest: ensemble closed")
	// ErrInvalidOption is wrapped by the error Start (and StartEnsemble)
	// returns for an option value out of range, or a bad ZKTEST_LOGS.
	ErrInvalidOption = errors.New("zktest: invalid option")
)

// Option configures Start.
type Option func(*config)

type config struct {
	servers      int
	tick         time.Duration
	logWriter    io.Writer
	logWriterSet bool
	dir          string
	dirSet       bool
	logLevel     string
	syncLimit    int
	failureLines int
}

// defaultFailureLines is how many of each server's last log lines a failed
// test is shown unless WithFailureLogLines says otherwise.
const defaultFailureLines = 20

// logsEnv names the environment variable that streams the servers' logs.
const logsEnv = "ZKTEST_LOGS"

func defaultConfig() config {
	return config{
		servers:      1,
		tick:         100 * time.Millisecond,
		logLevel:     "info",
		syncLimit:    20,
		failureLines: defaultFailureLines,
	}
}

func (c *config) validate() error {
	if c.servers < 1 {
		return fmt.Errorf("%w: WithServers(%d): need at least 1 server", ErrInvalidOption, c.servers)
	}
	if c.tick < time.Millisecond {
		return fmt.Errorf("%w: WithTickTime(%v): tick time must be at least 1ms", ErrInvalidOption, c.tick)
	}
	if c.tick%time.Millisecond != 0 {
		return fmt.Errorf("%w: WithTickTime(%v): tick time must be a whole number of milliseconds", ErrInvalidOption, c.tick)
	}
	if 2*c.tick > 60*time.Second {
		return fmt.Errorf("%w: WithTickTime(%v): tick time must be at most 30s", ErrInvalidOption, c.tick)
	}
	if c.syncLimit < 1 {
		return fmt.Errorf("%w: WithSyncLimit(%d): need at least 1 tick", ErrInvalidOption, c.syncLimit)
	}
	if time.Duration(c.syncLimit)*c.tick > time.Hour {
		return fmt.Errorf("%w: WithSyncLimit(%d): %d ticks of %v is more than an hour", ErrInvalidOption, c.syncLimit, c.syncLimit, c.tick)
	}
	switch c.logLevel {
	case "trace", "debug", "info", "warn", "error", "off":
	default:
		return fmt.Errorf("%w: WithLogLevel(%q): want one of trace, debug, info, warn, error, off", ErrInvalidOption, c.logLevel)
	}
	if c.logWriterSet && c.logWriter == nil {
		return fmt.Errorf("%w: WithLogWriter(nil): want a writer", ErrInvalidOption)
	}
	if c.dirSet && c.dir == "" {
		return fmt.Errorf("%w: WithDir(\"\"): want a directory (leave the option out for a temporary one)", ErrInvalidOption)
	}
	if c.failureLines < 0 {
		return fmt.Errorf("%w: WithFailureLogLines(%d): want 0 (none) or more", ErrInvalidOption, c.failureLines)
	}
	stream, err := parseLogsEnv(os.Getenv(logsEnv))
	if err != nil {
		return err
	}
	if stream && !c.logWriterSet {
		c.logWriter = os.Stderr
	}
	return nil
}

// parseLogsEnv reads the value of ZKTEST_LOGS: whether to stream the
// servers' logs.
func parseLogsEnv(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "0", "false", "no", "off":
		return false, nil
	case "1", "true", "yes", "on":
		return true, nil
	}
	return false, fmt.Errorf("%w: %s=%q: want 1 (stream the servers' logs to stderr) or 0", ErrInvalidOption, logsEnv, v)
}

// WithServers sets the number of ZooKeeper servers. The default, 1, runs a
// single standalone server; 3 runs a three-node ensemble (quorum of 2) with
// standalone mode disabled. Any n >= 2 runs an ensemble of n peers.
func WithServers(n int) Option {
	return func(c *config) { c.servers = n }
}

// WithTickTime sets ZooKeeper's tickTime (default 100ms): a whole number
// of milliseconds from 1ms to 30s. The minimum session timeout the servers accept is two
// ticks and the maximum is 60s, so with the default a client may ask for
// sessions as short as 200ms. initLimit and syncLimit are counted in ticks
// (50 and 20 by default; see WithSyncLimit).
func WithTickTime(d time.Duration) Option {
	return func(c *config) { c.tick = d }
}

// WithSyncLimit sets ZooKeeper's syncLimit, in ticks (default 20, at least
// 1): how long a follower's connection to its leader may stay silent
// before either side gives up on it. A follower cut off from the leader
// (see Server.IsolateFromPeers) keeps serving its clients for about that
// long, and a leader cut off from its followers keeps serving as long;
// with a session timeout shorter than syncLimit x tickTime the leader can
// expire a client's session while the client's server still answers it.
// initLimit stays 50 ticks, or syncLimit if that is more.
func WithSyncLimit(ticks int) Option {
	return func(c *config) { c.syncLimit = ticks }
}

// WithLogWriter streams the servers' stdout and stderr (their log) to w,
// each line prefixed with the server's name ("zk1| ..."); w must not be
// nil. Writes are serialized and end when Close returns.
//
// By default the servers' logs are streamed nowhere: each server writes its
// own log file in the work directory (see Server.LogPath), and a failed
// test is shown the last lines of each (see StartEnsemble,
// Ensemble.LogOnFailure and WithFailureLogLines). Setting the environment
// variable ZKTEST_LOGS=1 streams them to os.Stderr, as WithLogWriter(os.Stderr)
// would, wherever WithLogWriter is not given (ZKTEST_LOGS=0 or unset does
// not; any other value makes Start fail with ErrInvalidOption).
func WithLogWriter(w io.Writer) Option {
	return func(c *config) { c.logWriter, c.logWriterSet = w, true }
}

// WithFailureLogLines sets how many of each server's last log lines a failed
// test is shown with t.Log (default 20; 0 shows none, less is an invalid
// option). Each line is cut to 300 bytes. See StartEnsemble and
// Ensemble.LogOnFailure.
func WithFailureLogLines(n int) Option {
	return func(c *config) { c.failureLines = n }
}

// WithDir sets the work directory holding the servers' configuration, data
// and log files; dir must not be empty. It is created if needed and left
// in place by Close (the default, a fresh temporary directory, is removed
// by Close). Start wipes the servers' data directories inside it, so every
// Start begins empty.
func WithDir(dir string) Option {
	return func(c *config) { c.dir, c.dirSet = dir, true }
}

// WithLogLevel sets the servers' log level: "trace", "debug", "info" (the
// default), "warn", "error" or "off". It applies to whichever SLF4J binding
// the ZooKeeper installation uses (slf4j-simple, logback or log4j). Start
// reads the log to recognise a port that was taken before a server could
// bind it, and then retries with new ports; at "error" or "off" it cannot,
// and such a start fails only when ctx ends.
func WithLogLevel(level string) Option {
	return func(c *config) { c.logLevel = strings.ToLower(strings.TrimSpace(level)) }
}
