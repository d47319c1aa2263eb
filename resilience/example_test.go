package resilience_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkrecipes/zkrecipes/resilience"
)

func ExampleConnect() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := resilience.Connect(ctx, []string{"127.0.0.1:2181"},
		resilience.WithSessionTimeout(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	// An ephemeral node bound to this session: if the session is lost before
	// the create completes, the error wraps ErrSessionLost.
	p, err := s.Create(ctx, "/services/me", []byte("10.0.0.1:8080"), zk.FlagEphemeral, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("registered at", p)
}

func ExampleSession_Subscribe() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := resilience.Connect(ctx, []string{"127.0.0.1:2181"})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	for tr := range s.Subscribe(ctx) { // closed after Closed
		switch tr.To {
		case resilience.Suspended:
			fmt.Println("connection lost; the session may still be alive")
		case resilience.Reconnected:
			fmt.Println("same session back:", tr.SessionID)
		case resilience.Lost:
			fmt.Println("session gone:", tr.Cause)
		case resilience.Connected:
			fmt.Printf("new session %x (was %x)\n", tr.SessionID, tr.OldSessionID)
		}
	}
}

func ExampleSession_OnNewSession() {
	ctx := context.Background()
	s, err := resilience.Connect(ctx, []string{"127.0.0.1:2181"})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	// Re-create an ephemeral node on every new session after a Lost.
	register := func(ctx context.Context) error {
		_, err := s.Create(ctx, "/members/worker-1", nil, zk.FlagEphemeral, nil)
		return err
	}
	if err := register(ctx); err != nil {
		log.Fatal(err)
	}
	unregister := s.OnNewSession("membership", register)
	defer unregister()
}
