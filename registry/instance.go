package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/zkrecipes/zkrecipes/resilience"
)

// ServiceType is how an instance's node lives, as curator-x-discovery
// names it.
type ServiceType string

// Service types.
const (
	// Dynamic instances are ephemeral nodes: they vanish with the session
	// and are registered again on the next one. The default.
	Dynamic ServiceType = "DYNAMIC"
	// DynamicSequential instances are ephemeral sequential nodes: the node
	// name is the id followed by a sequence number.
	DynamicSequential ServiceType = "DYNAMIC_SEQUENTIAL"
	// Static instances are persistent nodes that Unregister removes.
	Static ServiceType = "STATIC"
	// Permanent instances are persistent nodes, as Static.
	Permanent ServiceType = "PERMANENT"
)

// Instance is one registered instance of a service. Its JSON is exactly
// curator-x-discovery's ServiceInstance, so Java services read what Go
// registers and the other way round. Unknown fields are ignored on read.
type Instance struct {
	// Name is the service's name: the instance's node is under
	// <base>/<Name>. Required; a single path element.
	Name string `json:"name"`
	// ID names the instance within its service (the node's name, or its
	// prefix for DynamicSequential). Required; a single path element.
	ID string `json:"id"`
	// Address is where the instance listens (a host name or IP address).
	Address string `json:"address"`
	// Port is the instance's plain port, if any (see Int).
	Port *int `json:"port"`
	// SSLPort is the instance's TLS port, if any.
	SSLPort *int `json:"sslPort"`
	// Payload is any JSON the application attaches (Curator's payload
	// object; for a Java reader, with its "@class").
	Payload json.RawMessage `json:"payload"`
	// RegistrationTimeUTC is when the instance registered, in Unix
	// milliseconds (Register sets it when zero).
	RegistrationTimeUTC int64 `json:"registrationTimeUTC"`
	// ServiceType is how the node lives (empty means Dynamic).
	ServiceType ServiceType `json:"serviceType"`
	// URISpec is the template URI renders, if any.
	URISpec *URISpec `json:"uriSpec"`
}

// Int returns a pointer to n, for Port and SSLPort.
func Int(n int) *int { return &n }

// MaxPayload bounds the encoded instance (ZooKeeper refuses a znode much
// over 1 MiB); it leaves room for the request around it.
const MaxPayload = 1<<20 - 4096

var (
	// ErrInvalidInstance is returned for an instance that cannot be
	// registered: no name or id, a name or id that is not a single path
	// element, or an unknown service type.
	ErrInvalidInstance = errors.New("registry: invalid instance")
	// ErrMalformed wraps the reason a node's data is not an instance.
	ErrMalformed = errors.New("registry: malformed instance data")
)

func (in *Instance) validate() error {
	for what, v := range map[string]string{"name": in.Name, "id": in.ID} {
		if !pathElement(v) {
			return fmt.Errorf("%w: %s %q must be a non-empty single path element", ErrInvalidInstance, what, v)
		}
	}
	switch in.ServiceType {
	case "":
		in.ServiceType = Dynamic
	case Dynamic, DynamicSequential, Static, Permanent:
	default:
		return fmt.Errorf("%w: service type %q", ErrInvalidInstance, in.ServiceType)
	}
	if len(in.Payload) > 0 && !json.Valid(in.Payload) {
		return fmt.Errorf("%w: payload is not JSON", ErrInvalidInstance)
	}
	return nil
}

// pathElement reports whether v can be one element of a znode path.
func pathElement(v string) bool {
	return v != "" && v != "." && v != ".." && !strings.ContainsAny(v, "/\x00")
}

func (in Instance) ephemeral() bool {
	return in.ServiceType == Dynamic || in.ServiceType == DynamicSequential
}

func (in Instance) encode() ([]byte, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxPayload {
		return nil, fmt.Errorf("%w: encoded instance is %d bytes, over %d", ErrInvalidInstance, len(b), MaxPayload)
	}
	return b, nil
}

// Decode parses a node's data as an instance. Empty data, data that is not
// a JSON object, or an object without name and id gives an error wrapping
// ErrMalformed.
func Decode(data []byte) (Instance, error) {
	var in Instance
	if len(bytes.TrimSpace(data)) == 0 {
		return in, fmt.Errorf("%w: empty", ErrMalformed)
	}
	if err := json.Unmarshal(data, &in); err != nil {
		return in, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if in.Name == "" || in.ID == "" {
		return in, fmt.Errorf("%w: no name or id", ErrMalformed)
	}
	return in, nil
}

// DecodeAt parses the data of the node named node under service's node as
// an instance, as Decode does, and also checks that the instance is the
// one its path names: its name must be service and its id the node's name
// (for a DynamicSequential instance, the node's name is the id followed by
// ZooKeeper's ten-digit sequence number). Either name may be preceded by a
// protected-create prefix (resilience.ProtectedPrefix, a UUID and "-").
// A mismatch gives an error wrapping ErrMalformed: such a node is not
// served by Instances or a Cache.
func DecodeAt(service, node string, data []byte) (Instance, error) {
	in, err := Decode(data)
	if err != nil {
		return in, err
	}
	if in.Name != service {
		return in, fmt.Errorf("%w: name %q under service %q", ErrMalformed, in.Name, service)
	}
	rest := stripProtected(node)
	if in.ServiceType == DynamicSequential {
		seq, ok := strings.CutPrefix(rest, in.ID)
		if !ok || !sequenceNumber(seq) {
			return in, fmt.Errorf("%w: id %q of a sequential instance at node %q", ErrMalformed, in.ID, node)
		}
		return in, nil
	}
	if rest != in.ID {
		return in, fmt.Errorf("%w: id %q at node %q", ErrMalformed, in.ID, node)
	}
	return in, nil
}

// stripProtected removes a protected-create prefix (_c_<uuid>-) from name.
func stripProtected(name string) string {
	const uuidLen = 36
	rest, ok := strings.CutPrefix(name, resilience.ProtectedPrefix)
	if !ok || len(rest) < uuidLen+1 || rest[uuidLen] != '-' {
		return name
	}
	return rest[uuidLen+1:]
}

func sequenceNumber(s string) bool {
	if len(s) != 10 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// URISpec is curator-x-discovery's UriSpec: a template of literal and
// variable parts, such as "{scheme}://{address}:{port}/api".
type URISpec struct {
	Parts []URIPart `json:"parts"` // in order
}

// URIPart is one part of a URISpec.
type URIPart struct {
	Value    string `json:"value"`    // literal text, or the variable's name
	Variable bool   `json:"variable"` // Value names a variable
}

// ParseURISpec turns "{scheme}://{address}:{port}/x" into its parts.
func ParseURISpec(spec string) (*URISpec, error) {
	u := &URISpec{}
	for len(spec) > 0 {
		i := strings.IndexByte(spec, '{')
		if i < 0 {
			u.Parts = append(u.Parts, URIPart{Value: spec})
			break
		}
		if i > 0 {
			u.Parts = append(u.Parts, URIPart{Value: spec[:i]})
		}
		j := strings.IndexByte(spec[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("registry: uri spec %q: unclosed {", spec)
		}
		name := spec[i+1 : i+j]
		if name == "" {
			return nil, fmt.Errorf("registry: uri spec %q: empty variable", spec)
		}
		u.Parts = append(u.Parts, URIPart{Value: name, Variable: true})
		spec = spec[i+j+1:]
	}
	return u, nil
}

// URI renders the instance's URISpec. The variables are those of Curator:
// scheme ("https" when the instance has an SSL port, else "http"), name,
// id, address, port, ssl-port, registration-time-utc and service-type;
// extra supplies more (and overrides). An unknown variable renders empty.
func (in Instance) URI(extra map[string]string) string {
	if in.URISpec == nil {
		return ""
	}
	vars := map[string]string{
		"scheme":                "http",
		"name":                  in.Name,
		"id":                    in.ID,
		"address":               in.Address,
		"registration-time-utc": strconv.FormatInt(in.RegistrationTimeUTC, 10),
		"service-type":          string(in.ServiceType),
	}
	if in.Port != nil {
		vars["port"] = strconv.Itoa(*in.Port)
	}
	if in.SSLPort != nil {
		vars["ssl-port"] = strconv.Itoa(*in.SSLPort)
		vars["scheme"] = "https"
	}
	for k, v := range extra {
		vars[k] = v
	}
	var b strings.Builder
	for _, p := range in.URISpec.Parts {
		if p.Variable {
			b.WriteString(vars[p.Value])
		} else {
			b.WriteString(p.Value)
		}
	}
	return b.String()
}
