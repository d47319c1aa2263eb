package recipes

import "testing"

func TestDecodeCount(t *testing.T) {
	for _, c := range []struct {
		in   []byte
		want int32
		ok   bool
	}{{nil, 0, true}, {[]byte{0, 0, 1, 0}, 256, true}, {[]byte{0xff, 0xff, 0xff, 0xfe}, -2, true}, {[]byte{1, 2, 3}, 0, false}, {[]byte("12345"), 0, false}} {
		got, err := decodeCount(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("DecodeCount(%v) = %d, %v", c.in, got, err)
		}
	}
}
