package queue_test

import (
	"testing"

	"github.com/zkrecipes/zkrecipes/internal/queue"
)

func TestContendersOrderAnyClientAndIgnoreStrangers(t *testing.T) {
	names := []string{
		"_c_0f8fad5b-d9cb-469f-a165-70867728950e-lock-0000000003", // Curator / us
		"6ba7b8109dad11d180b400c04fd430c8__lock__0000000001",      // Kazoo
		"_c_6ba7b8109dad11d180b400c04fd430c8-lock-0000000002",     // go-zookeeper/zk
		"unrelated",
		"lock-",
		"x-lock-00000000zz",
		"_c_a-latch-0000000000",
	}
	cs := queue.Contenders(names, "lock-", "__lock__")
	if len(cs) != 3 {
		t.Fatalf("contenders %v", cs)
	}
	for i, want := range []int64{1, 2, 3} {
		if cs[i].Seq != want {
			t.Fatalf("order %v", cs)
		}
	}
	if queue.Index(cs, names[0]) != 2 || queue.Index(cs, "unrelated") != -1 {
		t.Fatal("Index wrong")
	}
	if _, ok := queue.ParseSeq("short"); ok {
		t.Fatal("short name parsed")
	}
	if n, ok := queue.ParseSeq("a-0000000042"); !ok || n != 42 {
		t.Fatalf("ParseSeq = %d, %v", n, ok)
	}
	if got := queue.Exclusive(cs, 0); got != -1 {
		t.Fatalf("Exclusive(0) = %d", got)
	}
}
