// Command session-states walks live through the three scenarios of the
// project's source notes, plus failover, and prints every session transition
// with its timing and session ids:
//
//  1. the client's only server is down for longer than the session timeout
//     (Suspended, Lost, then a new session);
//  2. the server restarts quickly (Suspended, Reconnected, same session);
//  3. the client's server loses quorum for longer than the timeout: with
//     presumed expiry off the session survives (one Suspended, however long);
//     with it on, the session is given up, replaced, and the old one closed;
//  4. with every server named, the client fails over to another server.
//
// Without ZK_SERVERS it starts a local 3-node ensemble (from the Debian
// zookeeper package) behind fault proxies. With ZK_SERVERS set it cannot
// stop servers, so it connects and prints transitions as they happen until
// interrupted: stop and start servers yourself to watch.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/resilience"
	"github.com/zkrecipes/zkrecipes/zktest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	// Keep the library's own logs out of the way of the narration.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))

	if servers := os.Getenv("ZK_SERVERS"); servers != "" {
		if err := observe(ctx, strings.Split(servers, ",")); err != nil {
			fmt.Fprintln(os.Stderr, "session-states:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "session-states:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	fmt.Println("Starting a local 3-node ZooKeeper ensemble behind fault proxies...")
	start := time.Now()
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	ens, err := zktest.Start(startCtx, zktest.WithServers(3))
	if err != nil {
		return err
	}
	defer ens.Close()
	fmt.Printf("ensemble up in %v: %s\n", time.Since(start).Round(time.Millisecond), ens.ConnectString())

	d := &demo{ctx: ctx, ens: ens}
	steps := []struct {
		title string
		fn    func() (string, error)
	}{
		{"1. The client's server is down longer than the session timeout", d.serverDownPastTimeout},
		{"2. The client's server restarts quickly", d.quickRestart},
		{"3a. The client's server loses quorum; presumed expiry off", d.quorumLoss(0)},
		{"3b. The same outage with presumed expiry on (0.4 of the timeout)", d.quorumLoss(0.4)},
		{"4. All servers named; the client's server stops", d.failover},
	}
	var summary []string
	for _, st := range steps {
		fmt.Printf("\n== %s\n", st.title)
		res, err := st.fn()
		if err != nil {
			return fmt.Errorf("%s: %w", st.title, err)
		}
		summary = append(summary, fmt.Sprintf("%-66s %s", st.title, res))
		if err := d.restore(); err != nil {
			return err
		}
	}
	fmt.Println("\n== What this showed")
	for _, line := range summary {
		fmt.Println(line)
	}
	return nil
}

type demo struct {
	ctx context.Context
	ens *zktest.Ensemble
}

// watch connects a session and prints its transitions, timed from t0.
type watch struct {
	s      *resilience.Session
	t0     time.Time
	events chan resilience.Transition
	seen   []resilience.Transition
	cancel context.CancelFunc
}

func (d *demo) connect(servers []string, opts ...resilience.Option) (*watch, error) {
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	s, err := resilience.Connect(ctx, servers, opts...)
	if err != nil {
		return nil, err
	}
	w := &watch{s: s, t0: time.Now(), events: make(chan resilience.Transition, 64)}
	sctx, scancel := context.WithCancel(d.ctx)
	w.cancel = scancel
	sub := s.Subscribe(sctx)
	go func() {
		for tr := range sub {
			if tr.Cause == resilience.CauseCurrent {
				continue // the state at Subscribe, printed below
			}
			fmt.Printf("  +%6.2fs  %-11s -> %-11s cause=%-19s session %#x -> %#x via %s (timeout %v)\n",
				time.Since(w.t0).Seconds(), tr.From, tr.To, tr.Cause, tr.OldSessionID, tr.SessionID, tr.Server, tr.Timeout)
			w.events <- tr
		}
		close(w.events)
	}()
	fmt.Printf("  +%6.2fs  connected to %s, session %#x, timeout %v\n", 0.0, s.Server(), s.SessionID(), s.Timeout())
	return w, nil
}

func (w *watch) note(format string, args ...any) {
	fmt.Printf("  +%6.2fs  %s\n", time.Since(w.t0).Seconds(), fmt.Sprintf(format, args...))
}

// until waits for a transition to st.
func (w *watch) until(st resilience.State, limit time.Duration) (resilience.Transition, error) {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		select {
		case tr, ok := <-w.events:
			if !ok {
				return tr, fmt.Errorf("session closed while waiting for %s", st)
			}
			w.seen = append(w.seen, tr)
			if tr.To == st {
				return tr, nil
			}
		case <-timer.C:
			return resilience.Transition{}, fmt.Errorf("no %s within %v", st, limit)
		}
	}
}

func (w *watch) close() {
	w.s.Close()
	for range w.events {
	}
	w.cancel()
}

func (w *watch) path() string {
	var b strings.Builder
	for i, tr := range w.seen {
		if i > 0 {
			b.WriteString(" -> ")
		}
		b.WriteString(tr.To.String())
	}
	return b.String()
}

func (d *demo) serverDownPastTimeout() (string, error) {
	srv := d.ens.Server(0)
	w, err := d.connect([]string{srv.Addr()}, resilience.WithSessionTimeout(2*time.Second), resilience.WithPresumedExpiry(0))
	if err != nil {
		return "", err
	}
	defer w.close()
	old := w.s.SessionID()
	w.note("stopping server %d (%s) for longer than the 2s timeout", srv.ID(), srv.Addr())
	if err := srv.Stop(); err != nil {
		return "", err
	}
	if _, err := w.until(resilience.Suspended, 10*time.Second); err != nil {
		return "", err
	}
	// The other two servers keep quorum and expire the session.
	if err := d.sleep(4 * time.Second); err != nil {
		return "", err
	}
	w.note("starting server %d again", srv.ID())
	if err := srv.Start(d.ctx); err != nil {
		return "", err
	}
	tr, err := w.until(resilience.Connected, 30*time.Second)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s; session %#x replaced by %#x", w.path(), old, tr.SessionID), nil
}

func (d *demo) quickRestart() (string, error) {
	srv := d.ens.Server(1)
	w, err := d.connect([]string{srv.Addr()}, resilience.WithSessionTimeout(10*time.Second))
	if err != nil {
		return "", err
	}
	defer w.close()
	id := w.s.SessionID()
	w.note("restarting server %d", srv.ID())
	if err := srv.Stop(); err != nil {
		return "", err
	}
	if _, err := w.until(resilience.Suspended, 10*time.Second); err != nil {
		return "", err
	}
	if err := srv.Start(d.ctx); err != nil {
		return "", err
	}
	tr, err := w.until(resilience.Reconnected, 30*time.Second)
	if err != nil {
		return "", err
	}
	same := "same session"
	if tr.SessionID != id {
		same = "a DIFFERENT session"
	}
	return fmt.Sprintf("%s; %s %#x", w.path(), same, tr.SessionID), nil
}

func (d *demo) quorumLoss(fraction float64) func() (string, error) {
	return func() (string, error) {
		srv := d.ens.Server(2)
		timeout := 3 * time.Second
		w, err := d.connect([]string{srv.Addr()}, resilience.WithSessionTimeout(timeout), resilience.WithPresumedExpiry(fraction))
		if err != nil {
			return "", err
		}
		defer w.close()
		id := w.s.SessionID()
		eph, err := w.s.Create(d.ctx, fmt.Sprintf("/demo-eph-%d", time.Now().UnixNano()), nil, zk.FlagEphemeral, nil)
		if err != nil {
			return "", err
		}
		w.note("created ephemeral %s; stopping the other two servers for %v", eph, 3*timeout)
		for _, o := range d.ens.Servers() {
			if o != srv {
				if err := o.Stop(); err != nil {
					return "", err
				}
			}
		}
		if _, err := w.until(resilience.Suspended, 10*time.Second); err != nil {
			return "", err
		}
		if err := d.sleep(3 * timeout); err != nil {
			return "", err
		}
		w.note("starting them again; quorum returns")
		for _, o := range d.ens.Servers() {
			if o != srv {
				if err := o.Start(d.ctx); err != nil {
					return "", err
				}
			}
		}
		if fraction == 0 {
			tr, err := w.until(resilience.Reconnected, time.Minute)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%s; session %#x survived (was %#x)", w.path(), tr.SessionID, id), nil
		}
		tr, err := w.until(resilience.Connected, time.Minute)
		if err != nil {
			return "", err
		}
		ok, _, err := w.s.Exists(d.ctx, eph)
		if err != nil {
			return "", err
		}
		w.note("old session's ephemeral still there: %v", ok)
		return fmt.Sprintf("%s; new session %#x, old ephemeral gone: %v", w.path(), tr.SessionID, !ok), nil
	}
}

func (d *demo) failover() (string, error) {
	w, err := d.connect(d.ens.Addrs(), resilience.WithSessionTimeout(4*time.Second))
	if err != nil {
		return "", err
	}
	defer w.close()
	var first *zktest.Server
	for _, srv := range d.ens.Servers() {
		if srv.Addr() == w.s.Server() {
			first = srv
		}
	}
	if first == nil {
		return "", fmt.Errorf("connected to unknown server %s", w.s.Server())
	}
	w.note("stopping server %d, the one the client uses", first.ID())
	if err := first.Stop(); err != nil {
		return "", err
	}
	tr, err := w.until(resilience.Reconnected, 20*time.Second)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s; moved to %s with session %#x", w.path(), tr.Server, tr.SessionID), nil
}

func (d *demo) restore() error {
	ctx, cancel := context.WithTimeout(d.ctx, time.Minute)
	defer cancel()
	for _, srv := range d.ens.Servers() {
		srv.Proxy().Heal()
		if !srv.Running() {
			if err := srv.Start(ctx); err != nil {
				return err
			}
		}
	}
	return d.ens.WaitServing(ctx)
}

func (d *demo) sleep(t time.Duration) error {
	select {
	case <-time.After(t):
		return nil
	case <-d.ctx.Done():
		return d.ctx.Err()
	}
}

// observe prints the transitions of a session to an existing ensemble.
func observe(ctx context.Context, servers []string) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := resilience.Connect(cctx, servers)
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Printf("connected to %s, session %#x, timeout %v\n", s.Server(), s.SessionID(), s.Timeout())
	fmt.Println("stop or restart servers to watch the transitions; Ctrl-C to end")
	t0 := time.Now()
	for tr := range s.Subscribe(ctx) {
		fmt.Printf("+%6.2fs  %s\n", time.Since(t0).Seconds(), tr)
	}
	return nil
}
