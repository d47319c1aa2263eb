package feed

import (
	"context"
	"testing"
	"time"
)

func TestPumpDeliversInOrderThenCloses(t *testing.T) {
	q := New[int]()
	for i := 0; i < 1000; i++ {
		q.Push(i)
	}
	q.Close()
	if q.Push(-1) {
		t.Fatal("Push after Close reported true")
	}
	out := make(chan int)
	go Pump(context.Background(), q, out)
	want := 0
	for v := range out {
		if v != want {
			t.Fatalf("got %d, want %d", v, want)
		}
		want++
	}
	if want != 1000 {
		t.Fatalf("delivered %d values, want 1000", want)
	}
}

func TestFeedStopsWithContext(t *testing.T) {
	f := NewFeed[string]()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	f.Push("a")
	f.Push("b")
	if v := <-f.C(); v != "a" {
		t.Fatalf("first value %q, want a", v)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	for range f.C() {
	}
}
