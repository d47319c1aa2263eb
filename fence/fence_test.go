package fence_test

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/zkrecipes/zkrecipes/fence"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func read(t *testing.T, s *fence.Store, res string) (string, int64) {
	t.Helper()
	v, tok := s.Read(res)
	return string(v), tok
}

func TestStoreRule(t *testing.T) {
	var s fence.Store
	if v, tok := s.Read("r"); v != nil || tok != 0 {
		t.Fatalf("unwritten resource: %q, %d; want nil, 0", v, tok)
	}
	steps := []struct {
		token int64
		value string
		ok    bool
	}{
		{0, "zero", false},   // not a token a lease can carry
		{-5, "neg", false},   // nor this
		{10, "a", true},      // first write
		{10, "b", true},      // same holder again
		{12, "c", true},      // a newer holder
		{11, "stale", false}, // an older holder resumes
		{10, "stale", false},
		{0, "stale", false},
		{12, "d", true},
	}
	want, wantTok := "", int64(0)
	for _, st := range steps {
		err := s.Write("r", st.token, []byte(st.value))
		switch {
		case st.ok && err != nil:
			t.Fatalf("Write(token %d) = %v, want accepted", st.token, err)
		case !st.ok && !errors.Is(err, fence.ErrStaleToken):
			t.Fatalf("Write(token %d) = %v, want an error wrapping ErrStaleToken", st.token, err)
		case st.ok:
			want, wantTok = st.value, st.token
		}
		if v, tok := read(t, &s, "r"); v != want || tok != wantTok {
			t.Fatalf("after Write(token %d, %q): Read = %q, %d; want %q, %d", st.token, st.value, v, tok, want, wantTok)
		}
	}
}

func TestStoreResourcesAreIndependent(t *testing.T) {
	var s fence.Store
	if err := s.Write("a", 100, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.Write("b", 5, []byte("b")); err != nil {
		t.Fatalf("a low token on another resource: %v", err)
	}
	if err := s.Write("a", 5, []byte("x")); !errors.Is(err, fence.ErrStaleToken) {
		t.Fatalf("a low token on a: %v, want ErrStaleToken", err)
	}
	if v, tok := read(t, &s, "b"); v != "b" || tok != 5 {
		t.Fatalf("b = %q, %d", v, tok)
	}
}

func TestStoreCopiesValues(t *testing.T) {
	var s fence.Store
	in := []byte("abc")
	if err := s.Write("r", 1, in); err != nil {
		t.Fatal(err)
	}
	in[0] = 'X'
	out, _ := s.Read("r")
	if string(out) != "abc" {
		t.Fatalf("the caller's slice changed the stored value: %q", out)
	}
	out[0] = 'Y'
	if v, _ := read(t, &s, "r"); v != "abc" {
		t.Fatalf("a read slice changed the stored value: %q", v)
	}
}

// Writers race with tokens in every order while readers watch: the stored
// token never goes down (neither as the readers see it nor below a token a
// writer just had accepted), the value read is always the one written with
// the token read, and the highest token wins.
func TestStoreConcurrentWritesNeverGoBack(t *testing.T) {
	var s fence.Store
	const writers, perWriter = 8, 2000
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, writers+2)
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last int64
			for {
				v, tok := s.Read("r")
				if tok < last {
					errs <- fmt.Errorf("stored token went back from %d to %d", last, tok)
					return
				}
				if tok != 0 && string(v) != strconv.FormatInt(tok, 10) {
					errs <- fmt.Errorf("value %q stored with token %d", v, tok)
					return
				}
				last = tok
				select {
				case <-done:
					return
				default:
				}
			}
		}()
	}
	var ww sync.WaitGroup
	var accepted, refused [writers]int
	for w := 0; w < writers; w++ {
		ww.Add(1)
		go func() {
			defer ww.Done()
			for i := 0; i < perWriter; i++ {
				// Writer w's tokens interleave with the others': w+1,
				// w+1+writers, ...; every other write resends the
				// writer's previous token, stale once another got ahead.
				tok := int64(1 + w + writers*i)
				if i%2 == 1 {
					tok -= int64(writers)
				}
				err := s.Write("r", tok, []byte(strconv.FormatInt(tok, 10)))
				switch {
				case err == nil:
					accepted[w]++
					// What was accepted is never undone by a lower token.
					if _, now := s.Read("r"); now < tok {
						errs <- fmt.Errorf("accepted token %d, then the store held %d", tok, now)
						return
					}
				case errors.Is(err, fence.ErrStaleToken):
					refused[w]++
				default:
					errs <- err
					return
				}
			}
		}()
	}
	ww.Wait()
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var na, nr int
	for w := range accepted {
		na, nr = na+accepted[w], nr+refused[w]
	}
	t.Logf("%d writes accepted, %d refused", na, nr)
	if nr == 0 {
		t.Error("no write was refused: the race did not exercise the rule")
	}
	// The highest token any writer sent (writer writers-1, i = perWriter-2).
	max := int64(1 + (writers - 1) + writers*(perWriter-2))
	if v, tok := read(t, &s, "r"); tok != max || v != strconv.FormatInt(max, 10) {
		t.Fatalf("final value %q with token %d, want the highest token %d", v, tok, max)
	}
}
