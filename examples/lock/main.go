// Command lock shows four workers, each with its own ZooKeeper session (as
// four processes would have), sharing one lock.Mutex. Midway the current
// holder is partitioned from ZooKeeper: its lease is cancelled when its
// connection is suspended, before the ensemble expires its session and the
// next worker takes over. Every acquisition prints its fencing token, which
// only ever grows.
//
// Without ZK_SERVERS it starts a local 3-node ensemble and puts a fault
// proxy in front of each worker. With ZK_SERVERS set it runs the workers
// against that ensemble, without faults.
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

	"github.com/zkrecipes/zkrecipes/lock"
	"github.com/zkrecipes/zkrecipes/resilience"
	"github.com/zkrecipes/zkrecipes/zktest"
)

const (
	workers  = 4
	runFor   = 15 * time.Second
	holdFor  = 1500 * time.Millisecond
	lockPath = "/demo/lock"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "lock demo:", err)
		os.Exit(1)
	}
}

type worker struct {
	name    string
	servers []string
	proxy   *zktest.Proxy // nil against an external ensemble
}

func run(ctx context.Context) error {
	t0 := time.Now()
	say := func(format string, args ...any) {
		fmt.Printf("+%6.2fs  %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
	}
	ws := make([]*worker, workers)
	if env := os.Getenv("ZK_SERVERS"); env != "" {
		for i := range ws {
			ws[i] = &worker{name: fmt.Sprintf("worker-%d", i+1), servers: strings.Split(env, ",")}
		}
	} else {
		fmt.Println("Starting a local 3-node ZooKeeper ensemble...")
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		ens, err := zktest.Start(sctx, zktest.WithServers(3))
		if err != nil {
			return err
		}
		defer ens.Close()
		for i := range ws {
			p, err := zktest.NewProxy(ens.Server(i % 3).DirectAddr())
			if err != nil {
				return err
			}
			defer p.Close()
			ws[i] = &worker{name: fmt.Sprintf("worker-%d", i+1), servers: []string{p.Addr()}, proxy: p}
		}
	}

	type holding struct {
		who        string
		start, end time.Time
		token      int64
	}
	var (
		mu       sync.Mutex
		holdings []holding
		wg       sync.WaitGroup
	)
	runCtx, cancel := context.WithTimeout(ctx, runFor)
	defer cancel()
	acquired := make(chan *worker, workers)
	timeout := 2 * time.Second
	for _, w := range ws {
		s, err := resilience.Connect(ctx, w.servers, resilience.WithSessionTimeout(timeout))
		if err != nil {
			return err
		}
		defer s.Close()
		m, err := lock.NewMutex(s, lockPath, lock.WithData([]byte(w.name)))
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				asked := time.Now()
				l, err := m.Lock(runCtx)
				if err != nil {
					if runCtx.Err() == nil {
						say("%s: %v", w.name, err)
					}
					continue
				}
				start := time.Now()
				say("%s acquired  token=%d  waited %v", w.name, l.Token(), start.Sub(asked).Round(time.Millisecond))
				select {
				case acquired <- w:
				default:
				}
				// "Work" for a while, stopping the moment the lease is lost.
				select {
				case <-l.Done():
					say("%s STEPS DOWN after %v: %v", w.name, time.Since(start).Round(time.Millisecond), context.Cause(l.Context()))
				case <-time.After(holdFor):
				case <-runCtx.Done():
				}
				end := time.Now()
				if err := l.Release(context.Background()); err != nil && !errors.Is(err, lock.ErrLeaseLost) {
					say("%s release: %v", w.name, err)
				} else if err == nil {
					say("%s released after %v", w.name, end.Sub(start).Round(time.Millisecond))
				}
				mu.Lock()
				holdings = append(holdings, holding{w.name, start, end, l.Token()})
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}

	if ws[0].proxy != nil {
		// A few seconds in, partition the next worker to acquire.
		time.Sleep(3 * time.Second)
		for len(acquired) > 0 {
			<-acquired
		}
		w := <-acquired
		say("== partitioning %s from ZooKeeper while it holds the lock (session timeout %v)", w.name, timeout)
		w.proxy.Blackhole()
		time.Sleep(2 * timeout)
		say("== healing %s: its session expired meanwhile; it queues again on a new one", w.name)
		w.proxy.Heal()
	}
	wg.Wait()

	// Check the record: no overlap, tokens only grow.
	sort.Slice(holdings, func(i, j int) bool { return holdings[i].start.Before(holdings[j].start) })
	overlaps, backwards := 0, 0
	for i := 1; i < len(holdings); i++ {
		prev, cur := holdings[i-1], holdings[i]
		if cur.start.Before(prev.end) {
			overlaps++
		}
		if cur.token != 0 && prev.token != 0 && cur.token <= prev.token {
			backwards++
		}
	}
	fmt.Printf("\n== What this showed\n%d holdings by %d workers; overlapping holdings: %d; fencing tokens that went backwards: %d\n",
		len(holdings), workers, overlaps, backwards)
	if overlaps > 0 || backwards > 0 {
		return errors.New("mutual exclusion violated")
	}
	return nil
}
