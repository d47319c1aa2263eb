package recipes_test

import (
	"testing"

	"github.com/zkrecipes/zkrecipes/recipes"
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
	cs := recipes.Contenders(names, "lock-", "__lock__")
	if len(cs) != 3 {
		t.Fatalf("contenders %v", cs)
	}
	for i, want := range []int64{1, 2, 3} {
		if cs[i].Seq != want {
			t.Fatalf("order %v", cs)
		}
	}
	if recipes.Index(cs, names[0]) != 2 || recipes.Index(cs, "unrelated") != -1 {
		t.Fatal("Index wrong")
	}
	if _, ok := recipes.ParseSeq("short"); ok {
		t.Fatal("short name parsed")
	}
	if n, ok := recipes.ParseSeq("a-0000000042"); !ok || n != 42 {
		t.Fatalf("ParseSeq = %d, %v", n, ok)
	}
	if got := recipes.Exclusive(cs, 0); got != -1 {
		t.Fatalf("Exclusive(0) = %d", got)
	}
}

func TestDecodeCount(t *testing.T) {
	for _, c := range []struct {
		in   []byte
		want int32
		ok   bool
	}{{nil, 0, true}, {[]byte{0, 0, 1, 0}, 256, true}, {[]byte{0xff, 0xff, 0xff, 0xfe}, -2, true}, {[]byte{1, 2, 3}, 0, false}, {[]byte("12345"), 0, false}} {
		got, err := recipes.DecodeCount(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("DecodeCount(%v) = %d, %v", c.in, got, err)
		}
	}
}
