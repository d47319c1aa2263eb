package interop

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
)

// ErrTimeout matches (with errors.Is) the error of a command the driver
// answered with "err timeout": an acquisition that did not succeed in time.
var ErrTimeout = errors.New("interop: timeout")

// ErrExited is wrapped by the errors of commands that could not complete
// because the driver process has exited.
var ErrExited = errors.New("interop: driver exited")

// CommandError is a command's "err" reply.
type CommandError struct {
	Driver string   // "curator" or "kazoo"
	Cmd    string   // the command
	Args   []string // its arguments
	Msg    string   // the driver's message
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("interop: %s %s %s: %s", e.Driver, e.Cmd, strings.Join(e.Args, " "), e.Msg)
}

// Is reports whether target is ErrTimeout and the reply was "err timeout".
func (e *CommandError) Is(target error) bool {
	return target == ErrTimeout && e.Msg == "timeout"
}

// Event is an asynchronous event a driver emitted (see the package
// documentation for the kinds).
type Event struct {
	Client string    // the client it concerns
	Kind   string    // "leader", "state"
	Detail string    // e.g. "true" for leader, "LOST" for state
	At     time.Time // when the driver saw it (realtime clock)
}

func (e Event) String() string {
	return fmt.Sprintf("%s %s %s @%d", e.Client, e.Kind, e.Detail, e.At.UnixNano())
}

// Driver is one driver child process. Its methods are safe for concurrent
// use; requests from several goroutines run concurrently in the driver.
type Driver struct {
	name  string
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	info  string // the ready line's key=value list
	tail  *tailBuffer

	wmu    sync.Mutex // serializes writes to stdin
	nextID atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]chan reply
	exited  bool  // stdout reached EOF
	exitErr error // why, once exited
	queue   []Event
	history []Event
	changed chan struct{} // closed and replaced whenever history grows or exited is set
	notify  chan struct{} // wakes the pump (capacity 1)

	ready      chan string   // the ready line's payload
	readerDone chan struct{} // closed when the stdout reader returns
	stopped    chan struct{} // closed by stop; ends the pump
	pumpDone   chan struct{}
	events     chan Event
	stopOnce   sync.Once
}

type reply struct {
	ok      bool
	payload string
	err     error // transport failure, set instead of ok/payload
}

// startTimeout bounds how long a driver may take to print its ready line.
const startTimeout = 60 * time.Second

// quitTimeout is how long stop waits for the driver to exit after "quit"
// before killing it.
const quitTimeout = 5 * time.Second

// start launches cmd as a driver and waits for its ready line.
func start(t testing.TB, name string, cmd *exec.Cmd) (*Driver, error) {
	d := &Driver{
		name:       name,
		t:          t,
		cmd:        cmd,
		tail:       newTailBuffer(64 << 10),
		pending:    make(map[uint64]chan reply),
		changed:    make(chan struct{}),
		notify:     make(chan struct{}, 1),
		ready:      make(chan string, 1),
		readerDone: make(chan struct{}),
		stopped:    make(chan struct{}),
		pumpDone:   make(chan struct{}),
		events:     make(chan Event, 1024),
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	d.stdin = stdin
	cmd.Stderr = d.tail
	cmd.WaitDelay = 2 * time.Second
	setProcAttrs(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("interop: starting %s driver: %w", name, err)
	}
	go d.read(stdout)
	go d.pump()

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case info := <-d.ready:
		d.info = info
		return d, nil
	case <-d.readerDone:
		d.stop()
		return nil, fmt.Errorf("interop: %s driver exited before it was ready (%v); its output:\n%s", name, d.cmd.ProcessState, d.tail.String())
	case <-timer.C:
		d.stop()
		return nil, fmt.Errorf("interop: %s driver not ready after %v; its output:\n%s", name, startTimeout, d.tail.String())
	}
}

// Name returns "curator" or "kazoo".
func (d *Driver) Name() string { return d.name }

// Info returns the versions the driver reported at start-up, e.g.
// "curator=5.4.0 zookeeper=3.8.0 java=17.0.15".
func (d *Driver) Info() string { return d.info }

// Stderr returns the last 64 KiB the driver wrote to stderr (its logs).
func (d *Driver) Stderr() string { return d.tail.String() }

// read parses the driver's stdout until EOF.
func (d *Driver) read(stdout io.Reader) {
	defer close(d.readerDone)
	br := bufio.NewReaderSize(stdout, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if line = strings.TrimRight(line, "\r\n"); line != "" {
			d.handleLine(line)
		}
		if err != nil {
			if err != io.EOF {
				err = fmt.Errorf("reading stdout: %w", err)
			} else {
				err = nil
			}
			d.finish(err)
			return
		}
	}
}

func (d *Driver) handleLine(line string) {
	head, rest, _ := strings.Cut(line, " ")
	switch head {
	case "ready":
		select {
		case d.ready <- rest:
		default:
		}
		return
	case "event":
		f := strings.Fields(rest)
		if len(f) == 4 {
			if n, err := strconv.ParseInt(f[3], 10, 64); err == nil {
				d.addEvent(Event{Client: f[0], Kind: f[1], Detail: f[2], At: time.Unix(0, n)})
				return
			}
		}
	default:
		id, err := strconv.ParseUint(head, 10, 64)
		status, payload, _ := strings.Cut(rest, " ")
		if err == nil && (status == "ok" || status == "err") {
			d.mu.Lock()
			ch := d.pending[id]
			delete(d.pending, id)
			d.mu.Unlock()
			if ch != nil {
				ch <- reply{ok: status == "ok", payload: payload}
			}
			return
		}
	}
	fmt.Fprintf(d.tail, "interop: unexpected line on stdout: %q\n", line)
}

// finish records that the driver's stdout ended and fails pending requests.
func (d *Driver) finish(readErr error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.exited = true
	d.exitErr = fmt.Errorf("%w: %s driver closed its stdout", ErrExited, d.name)
	if readErr != nil {
		d.exitErr = fmt.Errorf("%w: %s driver: %v", ErrExited, d.name, readErr)
	}
	for id, ch := range d.pending {
		ch <- reply{err: d.exitErr}
		delete(d.pending, id)
	}
	close(d.changed)
	d.changed = make(chan struct{})
	select {
	case d.notify <- struct{}{}:
	default:
	}
}

func (d *Driver) addEvent(e Event) {
	d.mu.Lock()
	d.queue = append(d.queue, e)
	d.history = append(d.history, e)
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()
	select {
	case d.notify <- struct{}{}:
	default:
	}
}

// pump moves events from the unbounded queue to the events channel, so the
// reader never blocks on a slow consumer. It closes the channel once the
// driver has exited and everything queued was delivered, or when the
// driver is stopped.
func (d *Driver) pump() {
	defer close(d.pumpDone)
	defer close(d.events)
	for {
		d.mu.Lock()
		if len(d.queue) > 0 {
			e := d.queue[0]
			d.queue[0] = Event{}
			d.queue = d.queue[1:]
			d.mu.Unlock()
			select {
			case d.events <- e:
			case <-d.stopped:
				return
			}
			continue
		}
		exited := d.exited
		d.mu.Unlock()
		if exited {
			return
		}
		select {
		case <-d.notify:
		case <-d.stopped:
			return
		}
	}
}

// Events returns the channel of the driver's asynchronous events, in the
// order they were emitted. Events are queued without bound until read. The
// channel is closed when the driver exits or is stopped. Events is for a
// single consumer; WaitEvent and EventLog see all events regardless.
func (d *Driver) Events() <-chan Event { return d.events }

// EventLog returns every event the driver has emitted so far.
func (d *Driver) EventLog() []Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Event(nil), d.history...)
}

// WaitEvent returns the first event, among all the driver has emitted since
// it started (including those before the call), for which match returns
// true; it waits for one until ctx ends or the driver exits. Match on At
// (e.g. e.At.After(t0)) to ignore earlier events.
func (d *Driver) WaitEvent(ctx context.Context, match func(Event) bool) (Event, error) {
	seen := 0
	for {
		d.mu.Lock()
		batch := d.history[seen:]
		seen = len(d.history)
		changed, exited := d.changed, d.exited
		d.mu.Unlock()
		for _, e := range batch {
			if match(e) {
				return e, nil
			}
		}
		if exited {
			return Event{}, d.exitErr
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Event{}, fmt.Errorf("interop: %s: waiting for an event: %w", d.name, ctx.Err())
		}
	}
}

// Do sends one command and waits for its reply, returning the reply's
// payload. An "err" reply is returned as a *CommandError (matching
// ErrTimeout for "err timeout"). If ctx has ended, Do sends nothing and
// returns its error; if it ends while waiting, Do returns its error and the
// reply, whenever it comes, is discarded (the command itself still runs to
// completion in the driver). Arguments must be non-empty and free of
// white space; encode JSON with B64.
func (d *Driver) Do(ctx context.Context, cmd string, args ...string) (string, error) {
	for _, a := range append([]string{cmd}, args...) {
		if a == "" || strings.IndexFunc(a, unicode.IsSpace) >= 0 {
			return "", fmt.Errorf("interop: %s %s: argument %q is empty or contains white space", d.name, cmd, a)
		}
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("interop: %s %s: %w", d.name, cmd, err)
	}
	id := d.nextID.Add(1)
	ch := make(chan reply, 1)
	d.mu.Lock()
	if d.exited {
		err := d.exitErr
		d.mu.Unlock()
		return "", fmt.Errorf("interop: %s %s: %w", d.name, cmd, err)
	}
	d.pending[id] = ch
	d.mu.Unlock()

	var b strings.Builder
	b.WriteString(strconv.FormatUint(id, 10))
	b.WriteByte(' ')
	b.WriteString(cmd)
	for _, a := range args {
		b.WriteByte(' ')
		b.WriteString(a)
	}
	b.WriteByte('\n')
	d.wmu.Lock()
	_, err := io.WriteString(d.stdin, b.String())
	d.wmu.Unlock()
	if err != nil {
		d.forget(id)
		return "", fmt.Errorf("interop: %s %s: writing request: %w", d.name, cmd, err)
	}

	select {
	case r := <-ch:
		switch {
		case r.err != nil:
			return "", fmt.Errorf("interop: %s %s: %w", d.name, cmd, r.err)
		case !r.ok:
			return "", &CommandError{Driver: d.name, Cmd: cmd, Args: args, Msg: r.payload}
		}
		return r.payload, nil
	case <-ctx.Done():
		d.forget(id)
		return "", fmt.Errorf("interop: %s %s: %w", d.name, cmd, ctx.Err())
	}
}

func (d *Driver) forget(id uint64) {
	d.mu.Lock()
	delete(d.pending, id)
	d.mu.Unlock()
}

// stop asks the driver to quit, kills it if it has not exited after
// quitTimeout, and waits for it and for this Driver's goroutines.
func (d *Driver) stop() {
	d.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), quitTimeout)
		defer cancel()
		d.mu.Lock()
		exited := d.exited
		d.mu.Unlock()
		if !exited {
			_, _ = d.Do(ctx, "quit")
		}
		select {
		case <-d.readerDone:
		case <-ctx.Done():
			d.t.Logf("interop: %s driver did not exit %v after quit; killing it", d.name, quitTimeout)
			kill(d.cmd.Process)
			<-d.readerDone
		}
		_ = d.stdin.Close()
		_ = d.cmd.Wait()
		close(d.stopped)
		<-d.pumpDone
	})
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
