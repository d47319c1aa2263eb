package resilience

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-zookeeper/zk"
)

// maxPacket is ZooKeeper's default jute.maxbuffer: the largest request a
// server accepts. A larger one makes the server drop the connection.
const maxPacket = 0xfffff

// ValidatePath reports whether ZooKeeper accepts p as a znode path. With
// sequential set, a trailing '/' is allowed (the server appends the
// sequence number). The error wraps ErrInvalidPath and says what is wrong.
func ValidatePath(p string, sequential bool) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidPath, p, why) }
	if p == "" {
		return bad("empty")
	}
	if p[0] != '/' {
		return bad("must start with '/'")
	}
	if p == "/" {
		return nil
	}
	if !utf8.ValidString(p) {
		return bad("not valid UTF-8")
	}
	body := p[1:]
	if sequential && strings.HasSuffix(body, "/") {
		body = body[:len(body)-1]
		if body == "" {
			return nil
		}
	}
	for _, seg := range strings.Split(body, "/") {
		switch seg {
		case "":
			return bad("empty path element")
		case ".", "..":
			return bad("relative path element")
		}
	}
	for _, r := range p {
		switch {
		case r == 0:
			return bad("contains NUL")
		case r <= 0x1f, r >= 0x7f && r <= 0x9f, r >= 0xd800 && r <= 0xf8ff, r >= 0xfff0 && r <= 0xffff:
			return bad(fmt.Sprintf("contains disallowed character %U", r))
		}
	}
	return nil
}

// requestSize estimates the encoded size of a request carrying path and data.
func requestSize(path string, data []byte, acl []zk.ACL) int {
	n := 64 + len(path) + len(data)
	for _, a := range acl {
		n += 12 + len(a.Scheme) + len(a.ID)
	}
	return n
}

func checkSize(path string, data []byte, acl []zk.ACL) error {
	if n := requestSize(path, data, acl); n > maxPacket {
		return fmt.Errorf("%w: request for %q would be about %d bytes, over ZooKeeper's %d-byte limit", ErrDataTooLarge, path, n, maxPacket)
	}
	return nil
}

// parseServers accepts "host:port" or "host" (port 2181) entries; an entry
// may itself be a comma-separated connect string.
func parseServers(servers []string) ([]string, error) {
	var out []string
	for _, entry := range servers {
		for _, s := range strings.Split(entry, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			host, port := s, "2181"
			if strings.Contains(s, ":") {
				h, p, err := net.SplitHostPort(s)
				if err != nil {
					return nil, fmt.Errorf("%w %q: %v", ErrInvalidServer, s, err)
				}
				host, port = h, p
			}
			if host == "" || strings.ContainsAny(host, " /\t") {
				return nil, fmt.Errorf("%w %q: bad host", ErrInvalidServer, s)
			}
			pn, err := strconv.Atoi(port)
			if err != nil || pn < 1 || pn > 65535 {
				return nil, fmt.Errorf("%w %q: port must be 1-65535", ErrInvalidServer, s)
			}
			out = append(out, net.JoinHostPort(host, port))
		}
	}
	if len(out) == 0 {
		return nil, ErrNoServers
	}
	return out, nil
}
