package handler_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/rpcfake"
	"github.com/marketmesh/marketmesh/services/publications/internal/handler"
)

// TestProductsClientMapsAnswers checks the real ProductChecker over the
// products contract: 404 means "no such product", other failures mean
// "cannot tell", and Create turns them into 422 and 503.
func TestProductsClientMapsAnswers(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		exists     bool
		checkErr   bool
		createCode int32
		detail     string
	}{
		{"an answer means the product exists", nil, true, false, 0, ""},
		{"a 404 means it does not", merrors.NotFound(productsrpc.Service, "product p not found"), false, false, 422, "product_id prod-x does not exist"},
		{"a 503 cannot tell", merrors.New(productsrpc.Service, "products is unavailable (circuit open)", 503), false, true, 503, "products is unavailable (circuit open)"},
		{"a timeout cannot tell", merrors.New("go.micro.client", "products is unavailable (timed out)", 408), false, true, 503, "timed out"},
		{"a plain error cannot tell", errors.New("connection reset"), false, true, 503, "connection reset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &rpcfake.Client{Answer: func(string, any) (any, error) { return nil, tt.err }}
			pc := handler.Products(productsrpc.NewClient(c))
			ok, err := pc.ProductExists(context.Background(), "prod-x")
			if ok != tt.exists || (err != nil) != tt.checkErr {
				t.Fatalf("ProductExists = %v, %v", ok, err)
			}
			calls := c.Calls()
			if len(calls) != 1 {
				t.Fatalf("ProductExists made %d calls, want 1", len(calls))
			}
			if got := calls[0].Service + " " + calls[0].Endpoint; got != "marketmesh.products Products.Get" {
				t.Errorf("called %q", got)
			}
			if r, _ := calls[0].Req.(*productsrpc.GetRequest); r == nil || r.ID != "prod-x" || r.CountView {
				t.Errorf("request %#v, want the product's ID and no view counted", calls[0].Req)
			}

			f := newFixture(t)
			h := handler.New(f.store, pc, f.relay, maxTTL)
			req := &publicationsrpc.CreateRequest{ProductID: "prod-x", Title: "Lamp", Price: usd(100), Quantity: 1, Condition: "new"}
			err = h.Create(as("seller"), req, &publicationsrpc.Publication{})
			if tt.createCode == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			me := microErr(t, err, tt.createCode)
			if !strings.Contains(me.Detail, tt.detail) {
				t.Errorf("detail %q does not say %q", me.Detail, tt.detail)
			}
		})
	}
}
