// Command registry shows three instances of a service registering in
// Curator's service-discovery format and a client following them with a
// cache and a round-robin provider. One instance's session is forcibly
// expired: its registration vanishes with the session and comes back by
// itself on the new one, with its latest data. Another updates its payload;
// a third unregisters. The client prints every change as it sees it.
//
// Without ZK_SERVERS it starts a local 3-node ensemble (the forced expiry
// needs its fault proxies); with ZK_SERVERS set it registers, discovers and
// unregisters against that ensemble, without the expiry.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/zkrecipes/zkrecipes/registry"
	"github.com/zkrecipes/zkrecipes/resilience"
	"github.com/zkrecipes/zkrecipes/zktest"
)

const base = "/demo/services"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "registry demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	t0 := time.Now()
	say := func(format string, args ...any) {
		fmt.Printf("+%6.2fs  %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
	}
	servers := strings.Split(os.Getenv("ZK_SERVERS"), ",")
	var ens *zktest.Ensemble
	if servers[0] == "" {
		fmt.Println("Starting a local 3-node ZooKeeper ensemble...")
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		var err error
		if ens, err = zktest.Start(sctx, zktest.WithServers(3)); err != nil {
			return err
		}
		defer ens.Close()
		servers = ens.Addrs()
	}
	timeout := 2 * time.Second

	// Three instances, each with its own session, as three processes.
	var sessions []*resilience.Session
	var regs []*registry.Registration
	for i := 1; i <= 3; i++ {
		s, err := resilience.Connect(ctx, servers, resilience.WithSessionTimeout(timeout))
		if err != nil {
			return err
		}
		defer s.Close()
		r, err := registry.New(s, base)
		if err != nil {
			return err
		}
		defer r.Close()
		spec, _ := registry.ParseURISpec("{scheme}://{address}:{port}/api")
		reg, err := r.Register(ctx, registry.Instance{
			Name: "api", ID: fmt.Sprintf("api-%d", i), Address: "10.0.0." + fmt.Sprint(i), Port: registry.Int(8080),
			Payload: json.RawMessage(`{"version":"1.0"}`), URISpec: spec,
		})
		if err != nil {
			return err
		}
		sessions, regs = append(sessions, s), append(regs, reg)
		say("registered %s at %s", reg.Instance().ID, reg.Path())
	}

	// The client.
	cs, err := resilience.Connect(ctx, servers)
	if err != nil {
		return err
	}
	defer cs.Close()
	cr, err := registry.New(cs, base)
	if err != nil {
		return err
	}
	defer cr.Close()
	cache, err := cr.NewCache(ctx, "api")
	if err != nil {
		return err
	}
	defer cache.Close()
	provider, err := registry.NewProvider(cache)
	if err != nil {
		return err
	}
	events := map[registry.EventType]int{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range cache.Events() {
			events[e.Type]++
			say("client sees %-8s %s %s", e.Type, e.Node, string(e.Instance.Payload))
		}
	}()
	pick := func() {
		var ids []string
		for i := 0; i < 3; i++ {
			if in, err := provider.Instance(); err == nil {
				ids = append(ids, in.ID+" ("+in.URI(nil)+")")
			}
		}
		say("provider hands out: %s", strings.Join(ids, ", "))
	}
	waitFor := func(what string, cond func([]registry.Instance) bool) error {
		deadline := time.Now().Add(30 * time.Second)
		for !cond(cache.Instances()) {
			if time.Now().After(deadline) {
				return fmt.Errorf("cache never showed %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	}
	if err := waitFor("three instances", func(in []registry.Instance) bool { return len(in) == 3 }); err != nil {
		return err
	}
	pick()

	reExpired := ""
	if ens != nil {
		// Update api-2 first, then expire its session: the latest data comes back.
		if err := regs[1].Update(ctx, registry.Instance{Name: "api", ID: "api-2", Address: "10.0.0.2", Port: registry.Int(8080),
			Payload: json.RawMessage(`{"version":"1.1"}`), URISpec: regs[1].Instance().URISpec}); err != nil {
			return err
		}
		old := sessions[1].SessionID()
		say("== forcing the expiry of api-2's session %#x (timeout %v)", old, timeout)
		expired := time.Now()
		if err := ens.ExpireSession(ctx, old); err != nil {
			return err
		}
		// Back means: a new session, and api-2's node owned by it, seen by the client.
		deadline := time.Now().Add(30 * time.Second)
		for {
			sid := sessions[1].SessionID()
			if sid != 0 && sid != old {
				if ok, st, err := cs.Exists(ctx, regs[1].Path()); err == nil && ok && st.EphemeralOwner == sid {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("api-2 not registered again within 30s")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := waitFor("api-2 back", func(in []registry.Instance) bool { return len(in) == 3 }); err != nil {
			return err
		}
		reExpired = fmt.Sprintf("api-2 registered again %v after its session expired (new session %#x)",
			time.Since(expired).Round(time.Millisecond), sessions[1].SessionID())
		say("%s", reExpired)
		pick()
	}
	say("== api-1 unregisters")
	if err := regs[0].Unregister(ctx); err != nil {
		return err
	}
	if err := waitFor("two instances", func(in []registry.Instance) bool { return len(in) == 2 }); err != nil {
		return err
	}
	pick()
	cache.Close()
	<-done
	fmt.Printf("\n== What this showed\nclient events: %d added, %d updated, %d removed, %d malformed\n",
		events[registry.Added], events[registry.Updated], events[registry.Removed], events[registry.Malformed])
	if reExpired != "" {
		fmt.Println(reExpired)
	}
	return nil
}
