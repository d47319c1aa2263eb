package queue

import (
	"sort"
	"strconv"
)

// SeqDigits is the width of the sequence suffix ZooKeeper appends to
// sequential nodes.
const SeqDigits = 10

// Contender is one child of a queue: a node whose name ends in a marker
// followed by a sequence number.
type Contender struct {
	Name   string // the child's name
	Seq    int64  // its sequence suffix
	Marker string // the marker it matched, e.g. "lock-"
}

// ParseSeq returns the sequence suffix of a sequential node's name.
func ParseSeq(name string) (int64, bool) {
	if len(name) < SeqDigits {
		return 0, false
	}
	tail := name[len(name)-SeqDigits:]
	for i := 0; i < len(tail); i++ {
		if tail[i] < '0' || tail[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(tail, 10, 64)
	return n, err == nil
}

// Contenders picks the children whose names end in one of markers followed
// by a sequence suffix and returns them ordered by that suffix (then name).
// Other children are ignored, not errors: a queue may share its parent with
// nodes another client put there.
func Contenders(names []string, markers ...string) []Contender {
	out := make([]Contender, 0, len(names))
	for _, n := range names {
		seq, ok := ParseSeq(n)
		if !ok {
			continue
		}
		head := n[:len(n)-SeqDigits]
		for _, m := range markers {
			if len(head) >= len(m) && head[len(head)-len(m):] == m {
				out = append(out, Contender{Name: n, Seq: seq, Marker: m})
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Seq != out[j].Seq {
			return out[i].Seq < out[j].Seq
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Index returns the position of the contender named name, or -1.
func Index(cs []Contender, name string) int {
	for i, c := range cs {
		if c.Name == name {
			return i
		}
	}
	return -1
}
