package productsrpc_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"go-micro.dev/v4/client"
	"go-micro.dev/v4/codec"

	"github.com/marketmesh/marketmesh/services/products/internal/handler"
	"github.com/marketmesh/marketmesh/services/products/productsrpc"
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
	c := productsrpc.NewClient(rc)
	ctx := context.Background()
	calls := map[string]func() error{
		"Create":     func() error { _, err := c.Create(ctx, productsrpc.CreateRequest{}); return err },
		"Get":        func() error { _, err := c.Get(ctx, productsrpc.GetRequest{}); return err },
		"Update":     func() error { _, err := c.Update(ctx, productsrpc.UpdateRequest{}); return err },
		"Delete":     func() error { return c.Delete(ctx, "id") },
		"Search":     func() error { _, err := c.Search(ctx, productsrpc.SearchRequest{}); return err },
		"Categories": func() error { _, err := c.Categories(ctx); return err },
	}
	h := reflect.TypeOf(&handler.Products{})
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
			if got.service != productsrpc.Service {
				t.Errorf("service = %q, want %q", got.service, productsrpc.Service)
			}
			method, ok := strings.CutPrefix(got.endpoint, "Products.")
			if !ok {
				t.Fatalf("endpoint %q does not start with Products.", got.endpoint)
			}
			m, ok := h.MethodByName(method)
			if !ok {
				t.Fatalf("endpoint %q: the handler has no method %s", got.endpoint, method)
			}
			// func(h *Products, ctx, req *Req, rsp *Rsp) error
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
