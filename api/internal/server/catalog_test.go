package server_test

import (
	"net/http"
	"testing"

	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
)

func TestCreatePublicationKeepsAnExplicitZeroQuantity(t *testing.T) {
	ta := newTestAPI(t)
	ta.users.Answer = func(endpoint string, _ any) (any, error) {
		return &publicationsrpc.Publication{ID: "pub-1"}, nil
	}
	for _, tt := range []struct {
		body string
		want int64
	}{
		{`{"product_id":"p1","title":"Lamp","price":{"amount":1999,"currency":"USD"},"quantity":0,"condition":"new"}`, 0},
		{`{"product_id":"p1","title":"Lamp","price":{"amount":1999,"currency":"USD"},"quantity":7,"condition":"used"}`, 7},
	} {
		before := len(ta.users.Calls())
		rec := ta.do(t, req{method: "POST", path: "/v1/publications", body: tt.body, bearer: ta.token(t, "u1")})
		if rec.Code != http.StatusCreated {
			t.Fatalf("%s: status %d: %s", tt.body, rec.Code, rec.Body)
		}
		calls := ta.users.Calls()[before:]
		if len(calls) != 1 || calls[0].Endpoint != "Publications.Create" {
			t.Fatalf("calls %+v", calls)
		}
		if r, ok := calls[0].Req.(*publicationsrpc.CreateRequest); !ok || r.Quantity != tt.want || r.ProductID != "p1" || r.Price.Amount != 1999 {
			t.Errorf("Publications.Create got %+v, want quantity %d", calls[0].Req, tt.want)
		}
	}
}
