// Command election shows three workers, each with its own ZooKeeper session,
// electing a leader with election.Run. The leader is then cut off twice: its
// link partitioned, and later its server killed. Each time its term is
// cancelled when its connection is suspended, before the ensemble expires
// its session and the next worker takes over; the failover is printed with
// its timing.
//
// Without ZK_SERVERS it starts a local 3-node ensemble and puts a fault
// proxy in front of each worker. With ZK_SERVERS set it runs the workers
// against that ensemble, without faults, until interrupted.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/zkrecipes/zkrecipes/election"
	"github.com/zkrecipes/zkrecipes/resilience"
	"github.com/zkrecipes/zkrecipes/zktest"
)

const path = "/demo/election"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "election demo:", err)
		os.Exit(1)
	}
}

type worker struct {
	id      string
	servers []string
	proxy   *zktest.Proxy
	server  *zktest.Server
}

type term struct {
	who        string
	start, end time.Time
	token      int64
}

func run(ctx context.Context) error {
	t0 := time.Now()
	say := func(format string, args ...any) {
		fmt.Printf("+%6.2fs  %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
	}
	var ws []*worker
	var ens *zktest.Ensemble
	if env := os.Getenv("ZK_SERVERS"); env != "" {
		for i := 0; i < 3; i++ {
			ws = append(ws, &worker{id: fmt.Sprintf("worker-%d", i+1), servers: strings.Split(env, ",")})
		}
	} else {
		fmt.Println("Starting a local 3-node ZooKeeper ensemble...")
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		var err error
		if ens, err = zktest.Start(sctx, zktest.WithServers(3)); err != nil {
			return err
		}
		defer ens.Close()
		for i := 0; i < 3; i++ {
			srv := ens.Server(i)
			p, err := zktest.NewProxy(srv.DirectAddr())
			if err != nil {
				return err
			}
			defer p.Close()
			ws = append(ws, &worker{id: fmt.Sprintf("worker-%d", i+1), servers: []string{p.Addr()}, proxy: p, server: srv})
		}
	}

	timeout := 2 * time.Second
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu      sync.Mutex
		terms   []term
		leading = map[string]bool{}
		lastEnd time.Time
		wg      sync.WaitGroup
	)
	for _, w := range ws {
		s, err := resilience.Connect(ctx, w.servers, resilience.WithSessionTimeout(timeout))
		if err != nil {
			return err
		}
		defer s.Close()
		e, err := election.New(s, path, election.WithID(w.id))
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = e.Run(runCtx, func(lead context.Context, t *election.Term) error {
				start := time.Now()
				mu.Lock()
				leading[w.id] = true
				gap := ""
				if !lastEnd.IsZero() {
					gap = fmt.Sprintf(" (%v after the previous term ended)", start.Sub(lastEnd).Round(time.Millisecond))
				}
				mu.Unlock()
				say("%s LEADS, session %#x, fencing token %d%s", w.id, s.SessionID(), t.Token(), gap)
				<-lead.Done()
				end := time.Now()
				mu.Lock()
				leading[w.id] = false
				lastEnd = end
				terms = append(terms, term{w.id, start, end, 0})
				mu.Unlock()
				if cause := context.Cause(lead); !errors.Is(cause, context.Canceled) {
					say("%s steps down after %v: %v", w.id, end.Sub(start).Round(time.Millisecond), cause)
				}
				return nil
			})
		}()
	}
	leader := func() *worker {
		for {
			mu.Lock()
			for _, w := range ws {
				if leading[w.id] {
					mu.Unlock()
					return w
				}
			}
			mu.Unlock()
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	if ens == nil {
		<-ctx.Done()
		cancel()
		wg.Wait()
		return nil
	}
	sleep := func(d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	sleep(2 * time.Second)
	if l := leader(); l != nil {
		say("== partitioning the leader, %s, from ZooKeeper (session timeout %v)", l.id, timeout)
		l.proxy.Blackhole()
		sleep(2 * timeout)
		say("== healing %s: its session expired; it rejoins as a candidate", l.id)
		l.proxy.Heal()
	}
	sleep(2 * time.Second)
	if l := leader(); l != nil {
		say("== killing the leader's server (server %d, used by %s)", l.server.ID(), l.id)
		_ = l.server.Kill()
		sleep(2 * timeout)
		say("== restarting server %d", l.server.ID())
		_ = l.server.Start(ctx)
	}
	sleep(3 * time.Second)
	cancel()
	wg.Wait()

	sort.Slice(terms, func(i, j int) bool { return terms[i].start.Before(terms[j].start) })
	overlaps := 0
	for i := 1; i < len(terms); i++ {
		if terms[i].start.Before(terms[i-1].end) {
			overlaps++
		}
	}
	fmt.Printf("\n== What this showed\n%d terms among %d workers through a partition and a server kill; overlapping terms: %d\n",
		len(terms), len(ws), overlaps)
	if overlaps > 0 {
		return errors.New("two leaders at once")
	}
	return nil
}
