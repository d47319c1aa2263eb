package fence_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/zkrecipes/zkrecipes/fence"
	"github.com/zkrecipes/zkrecipes/lock"
	"github.com/zkrecipes/zkrecipes/resilience"
)

// Two holders of one lock write the same resource. The first paused for
// longer than its session's timeout; the lock passed to the second, which
// wrote. When the first resumes, its write carries the older token and is
// refused. (The tokens are literals here; they come from lease.Token().)
func Example() {
	var store fence.Store
	const first, second = 0x100000011, 0x100000024 // two leases' Token()s

	_ = store.Write("balance", first, []byte("100"))   // first holder, before its pause
	_ = store.Write("balance", second, []byte("80"))   // the next holder
	err := store.Write("balance", first, []byte("90")) // the first holder, resumed
	fmt.Println(errors.Is(err, fence.ErrStaleToken))
	fmt.Println(err)

	value, token := store.Read("balance")
	fmt.Printf("%s, written with token %#x\n", value, token)
	// Output:
	// true
	// fence: stale fencing token: write to "balance" with token 4294967313, highest accepted 4294967332
	// 80, written with token 0x100000024
}

// A lock holder sends its lease's token with every write to the store.
func ExampleStore_Write() {
	ctx := context.Background()
	s, err := resilience.Connect(ctx, []string{"127.0.0.1:2181"})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	m, err := lock.NewMutex(s, "/locks/balance")
	if err != nil {
		log.Fatal(err)
	}
	lease, err := m.Lock(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer lease.Release(context.Background())

	var store fence.Store // in a real service: the database, over the network
	if err := store.Write("balance", lease.Token(), []byte("80")); errors.Is(err, fence.ErrStaleToken) {
		// A newer holder has written: this lease ended while we were not
		// looking. Stop; do not retry with the same token.
		log.Print("no longer the holder: ", err)
	}
}
