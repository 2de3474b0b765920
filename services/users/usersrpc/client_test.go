package usersrpc_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"go-micro.dev/v4/client"
	"go-micro.dev/v4/codec"

	"github.com/marketmesh/marketmesh/services/users/internal/handler"
	"github.com/marketmesh/marketmesh/services/users/usersrpc"
)

// recordingClient is a go-micro client that records calls and answers nothing.
type recordingClient struct {
	client.Client // not implemented: calling anything else panics
	calls         []recordedCall
}

type recordedCall struct {
	service, endpoint string
	req, rsp          any
}

type request struct {
	service, endpoint string
	body              any
}

func (r request) Service() string     { return r.service }
func (r request) Method() string      { return r.endpoint }
func (r request) Endpoint() string    { return r.endpoint }
func (r request) ContentType() string { return "application/json" }
func (r request) Body() any           { return r.body }
func (r request) Codec() codec.Writer { return nil }
func (r request) Stream() bool        { return false }

func (c *recordingClient) NewRequest(service, endpoint string, req any, _ ...client.RequestOption) client.Request {
	return request{service: service, endpoint: endpoint, body: req}
}

func (c *recordingClient) Call(_ context.Context, req client.Request, rsp any, _ ...client.CallOption) error {
	c.calls = append(c.calls, recordedCall{service: req.Service(), endpoint: req.Endpoint(), req: req.Body(), rsp: rsp})
	return nil
}

// TestClientMatchesTheHandler checks that every typed client method calls an
// endpoint the handler serves, with the request and response types it takes.
func TestClientMatchesTheHandler(t *testing.T) {
	rc := &recordingClient{}
	c := usersrpc.NewClient(rc)
	ctx := context.Background()
	calls := map[string]func() error{
		"Register":          func() error { _, err := c.Register(ctx, usersrpc.RegisterRequest{}); return err },
		"Authenticate":      func() error { _, err := c.Authenticate(ctx, usersrpc.AuthenticateRequest{}); return err },
		"Me":                func() error { _, err := c.Me(ctx); return err },
		"Update":            func() error { _, err := c.Update(ctx, usersrpc.UpdateRequest{}); return err },
		"Profile":           func() error { _, err := c.Profile(ctx, "id"); return err },
		"ListWishlist":      func() error { _, err := c.ListWishlist(ctx, usersrpc.PageRequest{}); return err },
		"AddWishlist":       func() error { _, err := c.AddWishlist(ctx, "pub"); return err },
		"RemoveWishlist":    func() error { return c.RemoveWishlist(ctx, "pub") },
		"ListBankAccounts":  func() error { _, err := c.ListBankAccounts(ctx, usersrpc.PageRequest{}); return err },
		"AddBankAccount":    func() error { _, err := c.AddBankAccount(ctx, usersrpc.AddBankAccountRequest{}); return err },
		"RemoveBankAccount": func() error { return c.RemoveBankAccount(ctx, "id") },
		"ListDevices":       func() error { _, err := c.ListDevices(ctx, usersrpc.PageRequest{}); return err },
		"AddDevice":         func() error { _, err := c.AddDevice(ctx, usersrpc.AddDeviceRequest{}); return err },
		"RemoveDevice":      func() error { return c.RemoveDevice(ctx, "tok") },
		"Preferences":       func() error { _, err := c.Preferences(ctx); return err },
		"SetPreferences":    func() error { _, err := c.SetPreferences(ctx, usersrpc.Preferences{}); return err },
	}
	h := reflect.TypeOf(&handler.Users{})
	for name, call := range calls {
		t.Run("Client."+name+" reaches a handler method", func(t *testing.T) {
			rc.calls = nil
			if err := call(); err != nil {
				t.Fatal(err)
			}
			if len(rc.calls) != 1 {
				t.Fatalf("%d calls, want 1", len(rc.calls))
			}
			got := rc.calls[0]
			if got.service != usersrpc.Service {
				t.Errorf("service = %q, want %q", got.service, usersrpc.Service)
			}
			method, ok := strings.CutPrefix(got.endpoint, "Users.")
			if !ok {
				t.Fatalf("endpoint %q does not start with Users.", got.endpoint)
			}
			m, ok := h.MethodByName(method)
			if !ok {
				t.Fatalf("endpoint %q: the handler has no method %s", got.endpoint, method)
			}
			// func(h *Users, ctx, req *Req, rsp *Rsp) error
			if m.Type.NumIn() != 4 {
				t.Fatalf("handler method %s has %d inputs", method, m.Type.NumIn())
			}
			if want, have := m.Type.In(2), reflect.TypeOf(got.req); want != have {
				t.Errorf("request type %v, the handler takes %v", have, want)
			}
			if want, have := m.Type.In(3), reflect.TypeOf(got.rsp); want != have {
				t.Errorf("response type %v, the handler takes %v", have, want)
			}
		})
	}
}
