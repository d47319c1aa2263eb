// Command showcase shows the whole library at work on a local 3-node
// ensemble: three workers (each its own session, behind its own fault
// proxy) register themselves as a service, elect a leader and share a lock,
// while a client follows the service through a cache. Faults are injected
// on a timer: a dropped connection, a partition longer than the session
// timeout, a server killed and restarted, the ensemble leader killed. Every
// session transition and every recovery is printed live with its timing,
// and every span (suspensions, rebuilds, lock acquisitions, campaigns and
// terms, registrations) is exported with the OpenTelemetry stdout exporter
// to a file named at the end.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"time"

	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/zkrecipes/zkrecipes/election"
	"github.com/zkrecipes/zkrecipes/lock"
	"github.com/zkrecipes/zkrecipes/registry"
	"github.com/zkrecipes/zkrecipes/resilience"
	"github.com/zkrecipes/zkrecipes/zktest"
)

const timeout = 2 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "showcase:", err)
		os.Exit(1)
	}
}

type worker struct {
	name  string
	proxy *zktest.Proxy
	s     *resilience.Session
}

func run(ctx context.Context) error {
	t0 := time.Now()
	var pmu sync.Mutex
	say := func(format string, args ...any) {
		pmu.Lock()
		defer pmu.Unlock()
		fmt.Printf("+%6.2fs  %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
	}

	traceFile, err := os.CreateTemp("", "zkrecipes-showcase-traces-*.json")
	if err != nil {
		return err
	}
	defer traceFile.Close()
	exp, err := stdouttrace.New(stdouttrace.WithWriter(traceFile))
	if err != nil {
		return err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))

	fmt.Println("Starting a local 3-node ZooKeeper ensemble...")
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	ens, err := zktest.Start(sctx, zktest.WithServers(3))
	if err != nil {
		return err
	}
	defer ens.Close()

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	var wg sync.WaitGroup
	var workers []*worker
	var terms, handoffs, recoveries int
	var mu sync.Mutex
	for i := 0; i < 3; i++ {
		p, err := zktest.NewProxy(ens.Server(i).DirectAddr())
		if err != nil {
			return err
		}
		defer p.Close()
		w := &worker{name: fmt.Sprintf("worker-%d", i+1), proxy: p}
		w.s, err = resilience.Connect(ctx, []string{p.Addr()}, resilience.WithSessionTimeout(timeout), resilience.WithTracerProvider(tp),
			resilience.WithRebuildReport(func(r resilience.RebuildReport) {
				if r.Err == nil {
					mu.Lock()
					recoveries++
					mu.Unlock()
					say("%s: rebuilt on new session %#x in %v (registration back)", w.name, r.SessionID, r.Duration.Round(time.Millisecond))
				}
			}))
		if err != nil {
			return err
		}
		defer w.s.Close()
		workers = append(workers, w)
		sub := w.s.Subscribe(runCtx)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var suspended time.Time
			for tr := range sub {
				if tr.Cause == resilience.CauseCurrent {
					continue // the state at Subscribe: Connected
				}
				extra := ""
				switch tr.To {
				case resilience.Suspended:
					suspended = tr.Time
				case resilience.Reconnected, resilience.Lost:
					extra = fmt.Sprintf(" after %v suspended", tr.Time.Sub(suspended).Round(time.Millisecond))
				}
				say("%s: session %s -> %s (%s)%s", w.name, tr.From, tr.To, tr.Cause, extra)
			}
		}()

		reg, err := registry.New(w.s, "/showcase/services")
		if err != nil {
			return err
		}
		defer reg.Close()
		if _, err := reg.Register(ctx, registry.Instance{Name: "worker", ID: w.name, Address: "10.0.0." + fmt.Sprint(i+1), Port: registry.Int(8080)}); err != nil {
			return err
		}
		e, err := election.New(w.s, "/showcase/leader", election.WithID(w.name))
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = e.Run(runCtx, func(lead context.Context, t *election.Term) error {
				mu.Lock()
				terms++
				mu.Unlock()
				say("%s LEADS", w.name)
				<-lead.Done()
				if c := context.Cause(lead); !errors.Is(c, context.Canceled) {
					say("%s steps down as leader: %v", w.name, c)
				}
				return nil
			})
		}()
		m, err := lock.NewMutex(w.s, "/showcase/lock")
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				l, err := m.Lock(runCtx)
				if err != nil {
					continue
				}
				mu.Lock()
				handoffs++
				mu.Unlock()
				select {
				case <-l.Done():
					say("%s lost the lock: %v", w.name, context.Cause(l.Context()))
				case <-time.After(700 * time.Millisecond):
				case <-runCtx.Done():
				}
				_ = l.Release(context.Background())
			}
		}()
	}

	// A client following the service.
	cs, err := resilience.Connect(ctx, ens.Addrs(), resilience.WithTracerProvider(tp))
	if err != nil {
		return err
	}
	defer cs.Close()
	cr, err := registry.New(cs, "/showcase/services")
	if err != nil {
		return err
	}
	defer cr.Close()
	cache, err := cr.NewCache(ctx, "worker")
	if err != nil {
		return err
	}
	defer cache.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for e := range cache.Events() {
			say("client: service instance %s %s (now %d registered)", e.Node, e.Type, len(cache.Instances()))
		}
	}()

	faults := []struct {
		name string
		do   func()
	}{
		{"drop worker-1's connection", func() { workers[0].proxy.DropConnections() }},
		{"partition worker-2 for twice the session timeout", func() {
			workers[1].proxy.Blackhole()
			sleep(runCtx, 2*timeout)
			workers[1].proxy.Heal()
		}},
		{"kill server 3 (worker-3's) and restart it", func() {
			_ = ens.Server(2).Kill()
			sleep(runCtx, timeout)
			_ = ens.Server(2).Start(context.Background())
		}},
		{"kill the ensemble's leader and restart it", func() {
			if l, err := ens.Leader(runCtx); err == nil {
				_ = l.Kill()
				sleep(runCtx, timeout)
				_ = l.Start(context.Background())
			}
		}},
	}
	sleep(runCtx, 2*time.Second)
	for _, f := range faults {
		if runCtx.Err() != nil {
			break
		}
		say("== FAULT: %s", f.name)
		f.do()
		sleep(runCtx, 4*time.Second)
	}
	stopRun()
	cache.Close()
	for _, w := range workers {
		w.s.Close()
	}
	wg.Wait()
	if err := tp.Shutdown(context.Background()); err != nil {
		return err
	}
	name, _ := filepath.Abs(traceFile.Name())
	fmt.Printf("\n== What this showed\n%d faults injected; %d leadership terms, %d lock handoffs, %d sessions rebuilt with their registrations back.\n",
		len(faults), terms, handoffs, recoveries)
	fmt.Printf("OpenTelemetry spans (suspensions, rebuilds, lock acquisitions, campaigns, terms, registrations): %s\n", name)
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
