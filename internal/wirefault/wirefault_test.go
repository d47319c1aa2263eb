package wirefault

import (
	"encoding/binary"
	"testing"
)

func frame(xid, op int32, body []byte) []byte {
	b := make([]byte, 12, 12+len(body))
	binary.BigEndian.PutUint32(b[0:4], uint32(8+len(body)))
	binary.BigEndian.PutUint32(b[4:8], uint32(xid))
	binary.BigEndian.PutUint32(b[8:12], uint32(op))
	return append(b, body...)
}

func pathBody(p string) []byte {
	b := make([]byte, 4, 4+len(p)+8)
	binary.BigEndian.PutUint32(b, uint32(len(p)))
	return append(append(b, p...), 0, 0, 0, 0, 0, 0, 0, 1)
}

func TestParseRequest(t *testing.T) {
	multi := append([]byte{0, 0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff}, pathBody("/a/m")...)
	for _, c := range []struct {
		name  string
		frame []byte
		want  Request
		write bool
	}{
		{"create", frame(7, OpCreate, pathBody("/a/b")), Request{Xid: 7, Op: OpCreate, Path: "/a/b"}, true},
		{"get", frame(8, OpGetData, pathBody("/x")), Request{Xid: 8, Op: OpGetData, Path: "/x"}, false},
		{"multi", frame(9, OpMulti, multi), Request{Xid: 9, Op: OpMulti, Path: "/a/m"}, true},
		{"ping", frame(-2, 11, nil), Request{Xid: -2, Op: 11}, false},
		{"bad path length", frame(3, OpDelete, []byte{0x7f, 0, 0, 0, 'x'}), Request{Xid: 3, Op: OpDelete}, true},
	} {
		got, ok := parseRequest(c.frame)
		if !ok || got != c.want || got.IsWrite() != c.write {
			t.Errorf("%s: %+v (ok %v, write %v), want %+v (write %v)", c.name, got, ok, got.IsWrite(), c.want, c.write)
		}
	}
	if _, ok := parseRequest([]byte{0, 0, 0, 4}); ok {
		t.Error("a short frame parsed")
	}
}
