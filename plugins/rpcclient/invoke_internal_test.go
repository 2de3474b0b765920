package rpcclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	mbytes "go-micro.dev/v4/codec/bytes"
	merrors "go-micro.dev/v4/errors"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The stack's own call path names methods, builds errors and encodes as the
// go-micro gRPC client did.
func TestInvokeMatchesGoMicro(t *testing.T) {
	for _, c := range []struct{ service, endpoint, want string }{
		{"marketmesh.users", "Users.Me", "/marketmesh.users.Users/Me"},
		{"", "Users.Me", "/Users/Me"},
		{"marketmesh.users", "/already/grpc", "/already/grpc"},
		{"marketmesh.users", "NoDot", "NoDot"},
		{"marketmesh.users", "A.B.C", "A.B.C"},
	} {
		if got := grpcMethod(c.service, c.endpoint); got != c.want {
			t.Errorf("grpcMethod(%q, %q) = %q, want %q", c.service, c.endpoint, got, c.want)
		}
	}

	for _, detail := range []string{"Error sending request: dial tcp: refused", "100% done"} {
		// go-micro passes the detail as the format
		want := merrors.InternalServerError("go.micro.client", "%s", formatDetail(detail))
		if got := internalError(detail); !reflect.DeepEqual(got, want) {
			t.Errorf("internalError(%q) = %#v, want %#v", detail, got, want)
		}
	}

	micro := merrors.NotFound("marketmesh.users", "no such user")
	if got := microError(status.Error(codes.NotFound, micro.Error())); !reflect.DeepEqual(got, micro) {
		t.Errorf("a go-micro error in a status = %#v, want %#v", got, micro)
	}
	if got := microError(status.Error(codes.Unavailable, "connection refused")); !reflect.DeepEqual(got, merrors.New("go.micro.client", "connection refused", 503)) {
		t.Errorf("Unavailable = %#v", got)
	}
	plain := errors.New("plain")
	if got := microError(plain); got != plain {
		t.Errorf("a plain error = %v", got)
	}

	var c jsonCodec
	b, err := c.Marshal(map[string]any{"a": "<b>", "n": 1})
	if err != nil || string(b) != `{"a":"\u003cb\u003e","n":1}` {
		t.Errorf("Marshal = %s, %v", b, err)
	}
	var into struct{ A string }
	if err := c.Unmarshal([]byte(`{"A":"x"} trailing`), &into); err != nil || into.A != "x" {
		t.Errorf("Unmarshal (a decoder: trailing data ignored) = %+v, %v", into, err)
	}
	for _, data := range []string{`{"A":"x"`, `{"A":1}`, `[1]`, `{"A":"y"} {"A":"z"}`, ` {"A":"w"} `} {
		var got, want struct{ A string }
		gotErr := c.Unmarshal([]byte(data), &got)
		wantErr := json.NewDecoder(strings.NewReader(data)).Decode(&want)
		if got != want || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Errorf("Unmarshal(%s) = %+v, %v; go-micro's decoder: %+v, %v", data, got, gotErr, want, wantErr)
		}
	}
	if err := c.Unmarshal(nil, &into); err != nil {
		t.Errorf("Unmarshal of nothing = %v", err)
	}
	f := &mbytes.Frame{}
	if err := c.Unmarshal([]byte("raw"), f); err != nil || string(f.Data) != "raw" {
		t.Errorf("Unmarshal into a frame = %q, %v", f.Data, err)
	}
	if b, _ := c.Marshal(&mbytes.Frame{Data: []byte("raw")}); string(b) != "raw" {
		t.Errorf("Marshal of a frame = %q", b)
	}
}
