package registry

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/zkrecipes/zkrecipes/internal/interop"
	"github.com/zkrecipes/zkrecipes/internal/znode"
)

// A Java ServiceDiscovery (Curator) reads what Go registered, and Go reads
// what Java registered, field for field, payload included.
func TestInteropWithCuratorDiscovery(t *testing.T) {
	needZK(t)
	cur := interop.Curator(t)
	ctx := ctxT(t, time.Minute)
	base := basePath()
	if err := cur.Connect(ctx, "j", ens.ConnectString(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	r, _ := New(connect(t, ens.Addrs()), base)
	defer r.Close()
	spec, _ := ParseURISpec("{scheme}://{address}:{port}")
	mine := Instance{
		Name: "echo", ID: "go-1", Address: "10.0.0.9", Port: Int(8080), SSLPort: Int(8443),
		Payload:             json.RawMessage(`{"@class":"java.util.LinkedHashMap","zone":"a","weight":3}`),
		RegistrationTimeUTC: 1700000000000, ServiceType: Dynamic, URISpec: spec,
	}
	if _, err := r.Register(ctx, mine); err != nil {
		t.Fatal(err)
	}
	theirs := Instance{
		Name: "echo", ID: "java-1", Address: "10.0.0.7", Port: Int(9090),
		Payload:             json.RawMessage(`{"@class":"java.util.LinkedHashMap","zone":"b"}`),
		RegistrationTimeUTC: 1700000000001, ServiceType: Dynamic,
	}
	if _, err := cur.DiscoveryRegister(ctx, "j", base, mustJSON(t, theirs)); err != nil {
		t.Fatal(err)
	}

	// Java's view of both.
	raw, err := cur.DiscoveryQuery(ctx, "j", base, "echo")
	if err != nil {
		t.Fatal(err)
	}
	var javaSaw []Instance
	if err := json.Unmarshal(raw, &javaSaw); err != nil {
		t.Fatalf("Curator's answer %s: %v", raw, err)
	}
	byID := map[string]Instance{}
	for _, in := range javaSaw {
		byID[in.ID] = in
	}
	sameFields(t, "Go instance read by Curator", byID["go-1"], mine)

	// Go's view of both, once Go's server has applied Curator's write.
	if err := znode.Settle(ctx, r.s); err != nil {
		t.Fatal(err)
	}
	ins, err := r.Instances(ctx, "echo")
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 2 {
		t.Fatalf("Go sees %d instances", len(ins))
	}
	sameFields(t, "Java instance read by Go", ins[1], theirs)
	if u := ins[0].URI(nil); u != "https://10.0.0.9:8080" {
		t.Errorf("URI of the Go instance: %q", u)
	}
}

func sameFields(t *testing.T, what string, got, want Instance) {
	t.Helper()
	var gp, wp any
	_ = json.Unmarshal(got.Payload, &gp)
	_ = json.Unmarshal(want.Payload, &wp)
	got.Payload, want.Payload = nil, nil
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gp, wp) {
		t.Errorf("%s:\n got %+v payload %v\nwant %+v payload %v", what, got, gp, want, wp)
	}
}
