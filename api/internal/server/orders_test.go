package server_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/money"
)

const (
	orderBody    = `{"items":[{"publication_id":"pub-1","quantity":2}],"payment":{"method":"card","card_token":"tok_visa"},"shipping_address":{"name":"Ada","line1":"1 Main St","city":"London","postal_code":"SW1","country":"GB"}}`
	checkoutBody = `{"payment":{"method":"card","card_token":"tok_visa"},"shipping_address":{"name":"Ada","line1":"1 Main St","city":"London","postal_code":"SW1","country":"GB"}}`
)

// placing are the two routes that place an order, with a valid body each.
var placing = []struct{ path, body, endpoint string }{
	{"/v1/orders", orderBody, "Orders.Create"},
	{"/v1/cart/checkout", checkoutBody, "Orders.Checkout"},
}

// endpoints returns the endpoints of the calls the fake received.
func endpoints(ta *testAPI) []string {
	var out []string
	for _, c := range ta.users.Calls() {
		out = append(out, c.Endpoint)
	}
	return out
}

func TestPlacingAnOrderMapsItsOutcome(t *testing.T) {
	tests := []struct {
		name           string
		status, reason string
		wantStatus     int
		wantCode       string // error code; "" for a success
	}{
		{"a paid order is 201", ordersrpc.StatusPaid, "", 201, ""},
		{"a pending order is 202", ordersrpc.StatusPending, "", 202, ""},
		{"a declined payment is 402", ordersrpc.StatusFailed, ordersrpc.ReasonPaymentDeclined, 402, "payment_declined"},
		{"out of stock is 409", ordersrpc.StatusFailed, ordersrpc.ReasonOutOfStock, 409, "out_of_stock"},
		{"an unavailable publication is 409", ordersrpc.StatusFailed, ordersrpc.ReasonPublicationUnavailable, 409, "publication_unavailable"},
		{"an expired reservation is 409", ordersrpc.StatusFailed, ordersrpc.ReasonReservationExpired, 409, "reservation_expired"},
		{"mixed currencies are 422", ordersrpc.StatusFailed, ordersrpc.ReasonMixedCurrency, 422, "mixed_currency"},
		{"a payment provider error is 502", ordersrpc.StatusFailed, ordersrpc.ReasonPaymentError, 502, "payment_error"},
		{"another reason is a 409 conflict", ordersrpc.StatusFailed, "fraud_suspected", 409, "conflict"},
	}
	for _, p := range placing {
		for _, tt := range tests {
			t.Run(p.path+": "+tt.name, func(t *testing.T) {
				ta := newTestAPI(t)
				ta.users.Answer = func(endpoint string, _ any) (any, error) {
					if endpoint != p.endpoint {
						t.Errorf("endpoint %s, want %s", endpoint, p.endpoint)
					}
					return &ordersrpc.Order{ID: "01HORDER", BuyerID: "01HCALLER", Status: tt.status,
						FailureReason: tt.reason, FailureMessage: "because " + tt.reason}, nil
				}
				rec := ta.do(t, req{method: "POST", path: p.path, body: p.body, bearer: ta.token(t, "01HCALLER")})
				if tt.wantCode != "" {
					if msg := wantOrderError(t, rec, tt.wantStatus, tt.wantCode, "01HORDER"); msg != "because "+tt.reason {
						t.Errorf("message = %q, want the order's failure message", msg)
					}
					return
				}
				if rec.Code != tt.wantStatus {
					t.Fatalf("status = %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
				}
				if loc := rec.Header().Get("Location"); loc != "/v1/orders/01HORDER" {
					t.Errorf("Location = %q", loc)
				}
				var o ordersrpc.Order
				if err := json.Unmarshal(rec.Body.Bytes(), &o); err != nil || o.ID != "01HORDER" || o.Status != tt.status {
					t.Errorf("body %s (%v)", rec.Body, err)
				}
			})
		}
	}
	t.Run("a failed order without a message still says what failed", func(t *testing.T) {
		ta := newTestAPI(t)
		ta.users.Answer = func(string, any) (any, error) {
			return &ordersrpc.Order{ID: "01HORDER", Status: ordersrpc.StatusFailed, FailureReason: ordersrpc.ReasonOutOfStock}, nil
		}
		rec := ta.do(t, req{method: "POST", path: "/v1/orders", body: orderBody, bearer: ta.token(t, "u1")})
		if msg := wantOrderError(t, rec, 409, "out_of_stock", "01HORDER"); !strings.Contains(msg, "out_of_stock") {
			t.Errorf("message %q", msg)
		}
	})
}

func TestPlacingAnOrderSendsTheRequest(t *testing.T) {
	ta := newTestAPI(t)
	rec := ta.do(t, req{method: "POST", path: "/v1/orders", body: orderBody, bearer: ta.token(t, "01HCALLER")})
	if rec.Code != 201 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	rec = ta.do(t, req{method: "POST", path: "/v1/cart/checkout", body: checkoutBody, bearer: ta.token(t, "01HCALLER")})
	if rec.Code != 201 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	calls := ta.users.Calls()
	if len(calls) != 2 || calls[0].Caller != "01HCALLER" {
		t.Fatalf("calls %+v", calls)
	}
	create, _ := calls[0].Req.(*ordersrpc.CreateRequest)
	want := ordersrpc.CreateRequest{Items: []ordersrpc.Item{{PublicationID: "pub-1", Quantity: 2}},
		Payment:         ordersrpc.PaymentMethod{Method: "card", CardToken: "tok_visa"},
		ShippingAddress: ordersrpc.Address{Name: "Ada", Line1: "1 Main St", City: "London", PostalCode: "SW1", Country: "GB"}}
	if create == nil || !slices.Equal(create.Items, want.Items) || create.Payment != want.Payment || create.ShippingAddress != want.ShippingAddress {
		t.Errorf("Create request %+v, want %+v", create, want)
	}
	checkout, _ := calls[1].Req.(*ordersrpc.CheckoutRequest)
	if checkout == nil || checkout.Payment != want.Payment || checkout.ShippingAddress != want.ShippingAddress {
		t.Errorf("Checkout request %+v", checkout)
	}
}

func TestOrdersServiceErrorsPassThrough(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"a validation failure is 422 with its message", merrors.New(ordersrpc.Service, "shipping_address.country must be an ISO 3166-1 alpha-2 code", 422), 422, "unprocessable_entity"},
		{"a reused idempotency key keeps its code", merrors.New(ordersrpc.CodeIdempotencyKeyReused, "Idempotency-Key was used with another request", 422), 422, "idempotency_key_reused"},
		{"a request in progress keeps its code", merrors.New(ordersrpc.CodeRequestInProgress, "a request with this Idempotency-Key is still running", 409), 409, "request_in_progress"},
		{"an empty cart is 422", merrors.New(ordersrpc.Service, "the cart is empty", 422), 422, "unprocessable_entity"},
		{"orders down is 503", merrors.New(ordersrpc.Service, "orders is unavailable", 503), 503, "unavailable"},
	}
	for _, tt := range tests {
		for _, r := range []req{
			{method: "POST", path: "/v1/orders", body: orderBody},
			{method: "POST", path: "/v1/cart/checkout", body: checkoutBody},
			{method: "POST", path: "/v1/orders/o1/cancel"},
		} {
			t.Run(r.path+": "+tt.name, func(t *testing.T) {
				ta := newTestAPI(t)
				ta.users.Answer = func(string, any) (any, error) { return nil, tt.err }
				r.bearer = ta.token(t, "u1")
				var me *merrors.Error = tt.err.(*merrors.Error)
				if msg := wantError(t, ta.do(t, r), tt.status, tt.code); msg != me.Detail {
					t.Errorf("message = %q, want %q", msg, me.Detail)
				}
			})
		}
	}
}

func TestIdempotencyKeys(t *testing.T) {
	routes := []req{
		{method: "POST", path: "/v1/orders", body: orderBody},
		{method: "POST", path: "/v1/cart/checkout", body: checkoutBody},
		{method: "POST", path: "/v1/orders/o1/cancel"},
		{method: "POST", path: "/v1/orders/o1/ship"},
		{method: "POST", path: "/v1/orders/o1/deliver"},
	}
	valid := []string{"k", "3f1c2a7e-4b7d-4d1e-9a55-0d6f0c1e2b3a", "with space~!", strings.Repeat("k", 255)}
	invalid := []http.Header{
		{"Idempotency-Key": {""}},
		{"Idempotency-Key": {strings.Repeat("k", 256)}},
		{"Idempotency-Key": {"clé"}},
		{"Idempotency-Key": {"tab\there"}},
		{"Idempotency-Key": {"del\x7f"}},
		{"Idempotency-Key": {"a", "b"}},
	}
	for _, r := range routes {
		t.Run(r.path, func(t *testing.T) {
			ta := newTestAPI(t)
			r.bearer = ta.token(t, "u1")
			for _, h := range invalid {
				r.rawHeader = h
				if msg := wantError(t, ta.do(t, r), 400, "bad_request"); !strings.Contains(msg, "Idempotency-Key") {
					t.Errorf("%q: message %q does not name the header", h.Values("Idempotency-Key"), msg)
				}
			}
			if n := len(ta.users.Calls()); n != 0 {
				t.Fatalf("%d calls with an invalid key", n)
			}
			r.rawHeader = nil
			for _, k := range append(valid, "") {
				r.header = map[string]string{"Idempotency-Key": k}
				if rec := ta.do(t, r); rec.Code/100 != 2 {
					t.Fatalf("key %q: status %d: %s", k, rec.Code, rec.Body)
				}
			}
			var got []string
			for _, c := range ta.orders.idempotencyKeys() {
				got = append(got, c.key)
			}
			if want := append(valid, ""); !slices.Equal(got, want) {
				t.Errorf("keys reaching the orders service = %q, want %q", got, want)
			}
		})
	}
	t.Run("reads and cart writes carry no key", func(t *testing.T) {
		ta := newTestAPI(t)
		h := map[string]string{"Idempotency-Key": "k1"}
		tok := ta.token(t, "u1")
		for _, r := range []req{
			{method: "GET", path: "/v1/orders", header: h, bearer: tok},
			{method: "GET", path: "/v1/cart", header: h, bearer: tok},
			{method: "POST", path: "/v1/cart/items", body: `{"publication_id":"p","quantity":1}`, header: h, bearer: tok},
		} {
			if rec := ta.do(t, r); rec.Code != 200 {
				t.Fatalf("%s %s: %d %s", r.method, r.path, rec.Code, rec.Body)
			}
		}
		for _, c := range ta.orders.idempotencyKeys() {
			if c.key != "" {
				t.Errorf("%s carries key %q", c.endpoint, c.key)
			}
		}
	})
}

// cartFixture answers Orders.Cart (and the cart writes) with lines of every
// kind, and Publications.GetMany and Images.First for them, failing the
// endpoints named in down.
func cartFixture(t *testing.T, down ...string) func(string, any) (any, error) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	cart := &ordersrpc.Cart{UpdatedAt: at, Items: []ordersrpc.CartItem{
		{PublicationID: "p-usd", Quantity: 2, AddedAt: at},
		{PublicationID: "p-gone", Quantity: 1, AddedAt: at},
		{PublicationID: "p-eur", Quantity: 1, AddedAt: at},
		{PublicationID: "p-paused", Quantity: 1, AddedAt: at},
		{PublicationID: "p-short", Quantity: 3, AddedAt: at},
		{PublicationID: "p-closed", Quantity: 1, AddedAt: at},
		{PublicationID: "p-usd2", Quantity: 4, AddedAt: at},
	}}
	pub := func(id string, amount int64, cur, status string, qty int64) publicationsrpc.Publication {
		return publicationsrpc.Publication{ID: id, SellerID: "s-" + id, Title: "T " + id, Price: money.Money{Amount: amount, Currency: cur}, Status: status, Quantity: qty}
	}
	return func(endpoint string, r any) (any, error) {
		if slices.Contains(down, endpoint) {
			return nil, merrors.New("x", endpoint+" is unavailable", 503)
		}
		switch endpoint {
		case "Orders.Cart", "Orders.SetCartItem", "Orders.RemoveCartItem":
			return cart, nil
		case "Publications.GetMany":
			if ids := r.(*publicationsrpc.GetManyRequest).IDs; len(ids) != len(cart.Items) {
				t.Errorf("GetMany(%v)", ids)
			}
			return &publicationsrpc.GetManyResponse{Items: []publicationsrpc.Publication{
				pub("p-usd", 1000, "USD", "active", 5), pub("p-eur", 500, "EUR", "active", 1),
				pub("p-paused", 700, "USD", "paused", 9), pub("p-short", 300, "USD", "active", 1),
				pub("p-closed", 900, "GBP", "closed", 0), pub("p-usd2", 250, "USD", "active", 4),
			}}, nil
		case "Images.First":
			return &imagesrpc.FirstResponse{Images: map[string]imagesrpc.Image{"p-usd": {ID: "img-1", OwnerID: "p-usd"}}}, nil
		}
		t.Errorf("unexpected call %s", endpoint)
		return nil, nil
	}
}

type cartLine struct {
	PublicationID     string       `json:"publication_id"`
	Quantity          int64        `json:"quantity"`
	AddedAt           time.Time    `json:"added_at"`
	Available         *bool        `json:"available"`
	Reason            string       `json:"reason"`
	Title             string       `json:"title"`
	Price             *money.Money `json:"price"`
	SellerID          string       `json:"seller_id"`
	Status            string       `json:"status"`
	QuantityAvailable *int64       `json:"quantity_available"`
	Image             *struct {
		ID           string `json:"id"`
		URL          string `json:"url"`
		ThumbnailURL string `json:"thumbnail_url"`
	} `json:"image"`
}

type cartBody struct {
	Items       []cartLine    `json:"items"`
	Subtotals   []money.Money `json:"subtotals"`
	Partial     bool          `json:"partial"`
	Unavailable []string      `json:"unavailable"`
}

func decodeCart(t *testing.T, rec interface{ Bytes() []byte }) (cartBody, []map[string]any) {
	t.Helper()
	var c cartBody
	var raw struct {
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal(rec.Bytes(), &c); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(rec.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	return c, raw.Items
}

func TestCartIsAnAggregatedRead(t *testing.T) {
	t.Run("every line is kept, with its availability and the subtotals of the available ones", func(t *testing.T) {
		ta := newTestAPI(t)
		ta.users.Answer = cartFixture(t)
		rec := ta.do(t, req{method: "GET", path: "/v1/cart", bearer: ta.token(t, "u1")})
		if rec.Code != 200 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		c, _ := decodeCart(t, rec.Body)
		type want struct {
			id        string
			available bool
			reason    string
			title     string
		}
		wants := []want{
			{"p-usd", true, "", "T p-usd"}, {"p-gone", false, "gone", ""}, {"p-eur", true, "", "T p-eur"},
			{"p-paused", false, "paused", "T p-paused"}, {"p-short", false, "insufficient_stock", "T p-short"},
			{"p-closed", false, "closed", "T p-closed"}, {"p-usd2", true, "", "T p-usd2"},
		}
		if len(c.Items) != len(wants) {
			t.Fatalf("%d lines, want %d: %s", len(c.Items), len(wants), rec.Body)
		}
		for i, w := range wants {
			l := c.Items[i]
			if l.PublicationID != w.id || l.Available == nil || *l.Available != w.available || l.Reason != w.reason || l.Title != w.title {
				t.Errorf("line %d = %+v, want %+v", i, l, w)
			}
		}
		usd := c.Items[0]
		if usd.Price == nil || *usd.Price != (money.Money{Amount: 1000, Currency: "USD"}) || usd.SellerID != "s-p-usd" || usd.Status != "active" ||
			usd.QuantityAvailable == nil || *usd.QuantityAvailable != 5 || usd.Quantity != 2 {
			t.Errorf("line p-usd = %+v", usd)
		}
		if usd.Image == nil || usd.Image.ID != "img-1" || usd.Image.URL != "/v1/images/img-1" || usd.Image.ThumbnailURL != "/v1/images/img-1/thumbnail" {
			t.Errorf("image of p-usd = %+v", usd.Image)
		}
		if short := c.Items[4]; short.QuantityAvailable == nil || *short.QuantityAvailable != 1 {
			t.Errorf("p-short quantity_available = %v", short.QuantityAvailable)
		}
		// 2 × 10.00 + 4 × 2.50 USD; 5.00 EUR; the paused, short and closed lines do not count.
		if want := []money.Money{{Amount: 500, Currency: "EUR"}, {Amount: 3000, Currency: "USD"}}; !slices.Equal(c.Subtotals, want) {
			t.Errorf("subtotals = %v, want %v", c.Subtotals, want)
		}
		if c.Partial || c.Unavailable == nil || len(c.Unavailable) != 0 {
			t.Errorf("partial %v, unavailable %v", c.Partial, c.Unavailable)
		}
	})
	t.Run("publications down is 200, partial, with the lines as stored", func(t *testing.T) {
		ta := newTestAPI(t)
		ta.users.Answer = cartFixture(t, "Publications.GetMany")
		rec := ta.do(t, req{method: "GET", path: "/v1/cart", bearer: ta.token(t, "u1")})
		if rec.Code != 200 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		c, raw := decodeCart(t, rec.Body)
		if !c.Partial || !slices.Equal(c.Unavailable, []string{"publications"}) || c.Subtotals == nil || len(c.Subtotals) != 0 {
			t.Errorf("partial %v, unavailable %v, subtotals %v", c.Partial, c.Unavailable, c.Subtotals)
		}
		if len(raw) != 7 {
			t.Fatalf("%d lines, want 7", len(raw))
		}
		for i, l := range raw {
			delete(l, "image") // the images part answered
			if len(l) != 3 || l["publication_id"] == nil || l["quantity"] == nil || l["added_at"] == nil {
				t.Errorf("line %d = %v, want only publication_id, quantity and added_at", i, l)
			}
		}
	})
	t.Run("images down is 200, partial, with availability", func(t *testing.T) {
		ta := newTestAPI(t)
		ta.users.Answer = cartFixture(t, "Images.First")
		rec := ta.do(t, req{method: "GET", path: "/v1/cart", bearer: ta.token(t, "u1")})
		c, _ := decodeCart(t, rec.Body)
		if rec.Code != 200 || !c.Partial || !slices.Equal(c.Unavailable, []string{"images"}) || c.Items[0].Image != nil || c.Items[0].Available == nil {
			t.Errorf("%d %s", rec.Code, rec.Body)
		}
	})
	t.Run("both down", func(t *testing.T) {
		ta := newTestAPI(t)
		ta.users.Answer = cartFixture(t, "Images.First", "Publications.GetMany")
		c, _ := decodeCart(t, ta.do(t, req{method: "GET", path: "/v1/cart", bearer: ta.token(t, "u1")}).Body)
		if !slices.Equal(c.Unavailable, []string{"images", "publications"}) {
			t.Errorf("unavailable %v", c.Unavailable)
		}
	})
	t.Run("orders down is 503", func(t *testing.T) {
		ta := newTestAPI(t)
		ta.users.Answer = cartFixture(t, "Orders.Cart")
		wantError(t, ta.do(t, req{method: "GET", path: "/v1/cart", bearer: ta.token(t, "u1")}), 503, "unavailable")
	})
	t.Run("an empty cart asks nothing more", func(t *testing.T) {
		ta := newTestAPI(t)
		rec := ta.do(t, req{method: "GET", path: "/v1/cart", bearer: ta.token(t, "u1")})
		if want := `{"items":[],"subtotals":[],"partial":false,"unavailable":[]}` + "\n"; rec.Code != 200 || rec.Body.String() != want {
			t.Errorf("%d %s, want %s", rec.Code, rec.Body, want)
		}
		if got := endpoints(ta); !slices.Equal(got, []string{"Orders.Cart"}) {
			t.Errorf("calls %v", got)
		}
	})
}

func TestCartWritesAnswerTheCart(t *testing.T) {
	ta := newTestAPI(t)
	ta.users.Answer = cartFixture(t)
	tok := ta.token(t, "01HCALLER")
	for _, r := range []req{
		{method: "POST", path: "/v1/cart/items", body: `{"publication_id":"p-usd","quantity":2}`, bearer: tok},
		{method: "POST", path: "/v1/cart/items", body: `{"publication_id":"p-usd","quantity":0}`, bearer: tok},
		{method: "DELETE", path: "/v1/cart/items/p-eur", bearer: tok},
	} {
		rec := ta.do(t, r)
		c, _ := decodeCart(t, rec.Body)
		if rec.Code != 200 || len(c.Items) != 7 || len(c.Subtotals) != 2 {
			t.Errorf("%s %s: %d %s", r.method, r.path, rec.Code, rec.Body)
		}
	}
	var writes []any
	for _, c := range ta.users.Calls() {
		if strings.HasPrefix(c.Endpoint, "Orders.") {
			if c.Caller != "01HCALLER" {
				t.Errorf("%s as %q", c.Endpoint, c.Caller)
			}
			writes = append(writes, c.Req)
		}
	}
	if len(writes) != 3 {
		t.Fatalf("%d orders calls, want 3", len(writes))
	}
	if s, _ := writes[0].(*ordersrpc.SetCartItemRequest); s == nil || *s != (ordersrpc.SetCartItemRequest{PublicationID: "p-usd", Quantity: 2}) {
		t.Errorf("SetCartItem %+v", writes[0])
	}
	if s, _ := writes[1].(*ordersrpc.SetCartItemRequest); s == nil || s.Quantity != 0 {
		t.Errorf("SetCartItem %+v, want quantity 0 passed on", writes[1])
	}
	if s, _ := writes[2].(*ordersrpc.CartItemRequest); s == nil || s.PublicationID != "p-eur" {
		t.Errorf("RemoveCartItem %+v", writes[2])
	}
	t.Run("an unknown publication passes its 404 through", func(t *testing.T) {
		ta.users.Answer = func(string, any) (any, error) {
			return nil, merrors.NotFound(ordersrpc.Service, "publication p9 not found")
		}
		wantError(t, ta.do(t, req{method: "POST", path: "/v1/cart/items", body: `{"publication_id":"p9","quantity":1}`, bearer: tok}), 404, "not_found")
	})
}

func TestListOrders(t *testing.T) {
	ta := newTestAPI(t)
	tok := ta.token(t, "u1")
	rec := ta.do(t, req{method: "GET", path: "/v1/orders", bearer: tok})
	if want := `{"items":[],"next_page_token":""}` + "\n"; rec.Code != 200 || rec.Body.String() != want {
		t.Errorf("%d %s, want %s", rec.Code, rec.Body, want)
	}
	if rec := ta.do(t, req{method: "GET", path: "/v1/orders?role=seller&page_size=5&page_token=abc", bearer: tok}); rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	calls := ta.users.Calls()
	first, _ := calls[0].Req.(*ordersrpc.ListRequest)
	second, _ := calls[1].Req.(*ordersrpc.ListRequest)
	if first == nil || *first != (ordersrpc.ListRequest{PageSize: 20}) {
		t.Errorf("List %+v", first)
	}
	if second == nil || *second != (ordersrpc.ListRequest{Role: "seller", PageSize: 5, PageToken: "abc"}) {
		t.Errorf("List %+v", second)
	}
	for _, q := range []string{"?role=admin", "?role=", "?role=Buyer", "?page_size=0"} {
		before := len(ta.users.Calls())
		rec := ta.do(t, req{method: "GET", path: "/v1/orders" + q, bearer: tok})
		if q == "?role=" {
			if rec.Code != 200 {
				t.Errorf("%s: %d", q, rec.Code)
			}
			continue
		}
		wantError(t, rec, 400, "bad_request")
		if len(ta.users.Calls()) != before {
			t.Errorf("%s reached the orders service", q)
		}
	}
}

func TestGetOrderAddsImages(t *testing.T) {
	order := &ordersrpc.Order{ID: "o1", BuyerID: "u1", Status: ordersrpc.StatusPaid, Lines: []ordersrpc.Line{
		{PublicationID: "p1", Quantity: 1, Title: "One"}, {PublicationID: "p2", Quantity: 2}, {PublicationID: "p1", Quantity: 1},
	}}
	answer := func(imagesDown bool) func(string, any) (any, error) {
		return func(endpoint string, r any) (any, error) {
			switch endpoint {
			case "Orders.Get":
				if id := r.(*ordersrpc.IDRequest).ID; id != "o1" {
					return nil, merrors.NotFound(ordersrpc.Service, "order %s not found", id)
				}
				return order, nil
			case "Images.First":
				if imagesDown {
					return nil, merrors.New("x", "images is unavailable", 503)
				}
				if ids := r.(*imagesrpc.FirstRequest).OwnerIDs; !slices.Equal(ids, []string{"p1", "p2"}) {
					t.Errorf("First(%v), want each publication once", ids)
				}
				return &imagesrpc.FirstResponse{Images: map[string]imagesrpc.Image{"p1": {ID: "img-1"}}}, nil
			}
			return nil, nil
		}
	}
	var page struct {
		ID    string `json:"id"`
		Items []struct {
			PublicationID string `json:"publication_id"`
			Title         string `json:"title"`
			Image         *struct {
				URL string `json:"url"`
			} `json:"image"`
		} `json:"items"`
		Shipments   []any    `json:"shipments"`
		Partial     bool     `json:"partial"`
		Unavailable []string `json:"unavailable"`
	}
	ta := newTestAPI(t)
	ta.users.Answer = answer(false)
	rec := ta.do(t, req{method: "GET", path: "/v1/orders/o1", bearer: ta.token(t, "u1")})
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if page.ID != "o1" || len(page.Items) != 3 || page.Items[0].Image == nil || page.Items[0].Image.URL != "/v1/images/img-1" ||
		page.Items[0].Title != "One" || page.Items[1].Image != nil || page.Items[2].Image == nil || page.Partial || page.Shipments == nil {
		t.Errorf("page %s", rec.Body)
	}

	ta.users.Answer = answer(true)
	rec = ta.do(t, req{method: "GET", path: "/v1/orders/o1", bearer: ta.token(t, "u1")})
	page.Items, page.Unavailable = nil, nil
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if !page.Partial || !slices.Equal(page.Unavailable, []string{"images"}) || len(page.Items) != 3 || page.Items[0].Image != nil {
		t.Errorf("page %s", rec.Body)
	}
	wantError(t, ta.do(t, req{method: "GET", path: "/v1/orders/o9", bearer: ta.token(t, "u1")}), 404, "not_found")
}

func TestOrderSteps(t *testing.T) {
	for step, endpoint := range map[string]string{"cancel": "Orders.Cancel", "ship": "Orders.Ship", "deliver": "Orders.Deliver"} {
		t.Run(step, func(t *testing.T) {
			ta := newTestAPI(t)
			ta.users.Answer = func(string, any) (any, error) {
				return &ordersrpc.Order{ID: "o1", Status: ordersrpc.StatusCancelled}, nil
			}
			rec := ta.do(t, req{method: "POST", path: "/v1/orders/o1/" + step, bearer: ta.token(t, "u1")})
			if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"id":"o1"`) {
				t.Errorf("%d %s", rec.Code, rec.Body)
			}
			calls := ta.users.Calls()
			if r, _ := calls[0].Req.(*ordersrpc.IDRequest); len(calls) != 1 || calls[0].Endpoint != endpoint || r == nil || r.ID != "o1" {
				t.Errorf("calls %+v", calls)
			}
			ta.users.Answer = func(string, any) (any, error) { return nil, merrors.Forbidden(ordersrpc.Service, "not your order") }
			wantError(t, ta.do(t, req{method: "POST", path: "/v1/orders/o1/" + step, bearer: ta.token(t, "u1")}), 403, "forbidden")
			ta.users.Answer = func(string, any) (any, error) {
				return nil, merrors.Conflict(ordersrpc.Service, "order o1 has shipped")
			}
			wantError(t, ta.do(t, req{method: "POST", path: "/v1/orders/o1/" + step, bearer: ta.token(t, "u1")}), 409, "conflict")
		})
	}
}

func TestPaymentWebhook(t *testing.T) {
	const event = "{ \"id\": \"evt_1\",\n  \"type\":\"charge.succeeded\" }\n"
	sig := map[string]string{"X-Signature": "t=1714564800,v1=abcdef"}
	t.Run("the raw body and the signature reach the orders service", func(t *testing.T) {
		ta := newTestAPI(t)
		ta.users.Answer = func(string, any) (any, error) {
			return &ordersrpc.WebhookResponse{EventID: "evt_1", Duplicate: true}, nil
		}
		rec := ta.do(t, req{method: "POST", path: "/v1/payments/webhook", body: event, header: sig})
		if want := `{"received":true,"event_id":"evt_1","duplicate":true}` + "\n"; rec.Code != 200 || rec.Body.String() != want {
			t.Errorf("%d %s, want %s", rec.Code, rec.Body, want)
		}
		calls := ta.users.Calls()
		if len(calls) != 1 || calls[0].Endpoint != "Orders.Webhook" || calls[0].Caller != "" {
			t.Fatalf("calls %+v", calls)
		}
		w, _ := calls[0].Req.(*ordersrpc.WebhookRequest)
		if w == nil || string(w.Body) != event || w.Signature != "t=1714564800,v1=abcdef" {
			t.Errorf("Webhook request %+v", w)
		}
	})
	t.Run("a bearer token is not needed, and a bad one is ignored", func(t *testing.T) {
		ta := newTestAPI(t)
		rec := ta.do(t, req{method: "POST", path: "/v1/payments/webhook", body: event, header: map[string]string{"X-Signature": "t=1,v1=ab", "Authorization": "Bearer junk"}})
		if rec.Code != 200 {
			t.Errorf("%d %s", rec.Code, rec.Body)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		ta := newTestAPI(t)
		for _, tt := range []struct {
			name   string
			r      req
			status int
			code   string
		}{
			{"no signature is 401", req{body: event}, 401, "unauthenticated"},
			{"a blank signature is 401", req{body: event, header: map[string]string{"X-Signature": "  "}}, 401, "unauthenticated"},
			{"another content type is 415", req{body: event, header: map[string]string{"X-Signature": "t=1,v1=ab", "Content-Type": "text/plain"}}, 415, "unsupported_media_type"},
			{"no content type is 415", req{body: event, header: map[string]string{"X-Signature": "t=1,v1=ab", "Content-Type": ""}}, 415, "unsupported_media_type"},
			{"a body over 64 KiB is 413", req{body: `{"pad":"` + strings.Repeat("x", 64<<10) + `"}`, header: sig}, 413, "payload_too_large"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				tt.r.method, tt.r.path = "POST", "/v1/payments/webhook"
				wantError(t, ta.do(t, tt.r), tt.status, tt.code)
			})
		}
		if n := len(ta.users.Calls()); n != 0 {
			t.Errorf("%d refused webhooks reached the orders service", n)
		}
		rec := ta.do(t, req{method: "POST", path: "/v1/payments/webhook", body: `{"pad":"` + strings.Repeat("x", 64<<10-10) + `"}`, header: sig})
		if rec.Code != 200 {
			t.Errorf("a body of 64 KiB = %d", rec.Code)
		}
	})
	t.Run("a bad or stale signature is the orders service's 401", func(t *testing.T) {
		ta := newTestAPI(t)
		ta.users.Answer = func(string, any) (any, error) {
			return nil, merrors.Unauthorized(ordersrpc.Service, "signature is stale")
		}
		if msg := wantError(t, ta.do(t, req{method: "POST", path: "/v1/payments/webhook", body: event, header: sig}), 401, "unauthenticated"); msg != "signature is stale" {
			t.Errorf("message %q", msg)
		}
	})
}

func TestBuyingBodiesAreStrict(t *testing.T) {
	ta := newTestAPI(t)
	tok := ta.token(t, "u1")
	tests := []struct {
		name, path, body string
		status           int
		mention          string
	}{
		{"an order with an unknown field", "/v1/orders", strings.Replace(orderBody, `"items"`, `"coupon":"X","items"`, 1), 400, "coupon"},
		{"an order with an unknown payment field", "/v1/orders", strings.Replace(orderBody, `"method"`, `"cvv":"123","method"`, 1), 400, "cvv"},
		{"an order with an unknown address field", "/v1/orders", strings.Replace(orderBody, `"city"`, `"phone":"1","city"`, 1), 400, "phone"},
		{"an order with an unknown item field", "/v1/orders", strings.Replace(orderBody, `"quantity":2`, `"quantity":2,"price":1`, 1), 400, "price"},
		{"an order with a string quantity", "/v1/orders", strings.Replace(orderBody, `"quantity":2`, `"quantity":"2"`, 1), 400, "quantity"},
		{"an order with a fractional quantity", "/v1/orders", strings.Replace(orderBody, `"quantity":2`, `"quantity":1.5`, 1), 400, "quantity"},
		{"an order with items as an object", "/v1/orders", strings.Replace(orderBody, `[{"publication_id":"pub-1","quantity":2}]`, `{}`, 1), 400, "items"},
		{"an order with a numeric card token", "/v1/orders", strings.Replace(orderBody, `"tok_visa"`, `42`, 1), 400, "card_token"},
		{"malformed order JSON", "/v1/orders", orderBody[:40], 400, "malformed"},
		{"an order array", "/v1/orders", `[]`, 400, "JSON object"},
		{"a checkout with items", "/v1/cart/checkout", strings.Replace(checkoutBody, `"payment"`, `"items":[],"payment"`, 1), 400, "items"},
		{"a checkout with a string address", "/v1/cart/checkout", strings.Replace(checkoutBody, `{"name":"Ada","line1":"1 Main St","city":"London","postal_code":"SW1","country":"GB"}`, `"London"`, 1), 400, "shipping_address"},
		{"malformed checkout JSON", "/v1/cart/checkout", `{"payment":`, 400, "malformed"},
		{"a cart item with an unknown field", "/v1/cart/items", `{"publication_id":"p","quantity":1,"price":1}`, 400, "price"},
		{"a cart item with a string quantity", "/v1/cart/items", `{"publication_id":"p","quantity":"1"}`, 400, "quantity"},
		{"a cart item without quantity", "/v1/cart/items", `{"publication_id":"p"}`, 422, "quantity"},
		{"a cart item without publication", "/v1/cart/items", `{"quantity":1}`, 422, "publication_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(ta.users.Calls())
			code := "bad_request"
			if tt.status == 422 {
				code = "unprocessable_entity"
			}
			if msg := wantError(t, ta.do(t, req{method: "POST", path: tt.path, body: tt.body, bearer: tok}), tt.status, code); !strings.Contains(msg, tt.mention) {
				t.Errorf("message %q does not mention %q", msg, tt.mention)
			}
			if n := len(ta.users.Calls()) - before; n != 0 {
				t.Errorf("bad input reached the orders service (%d calls)", n)
			}
		})
	}
	for _, path := range []string{"/v1/orders", "/v1/cart/checkout", "/v1/cart/items"} {
		wantError(t, ta.do(t, req{method: "POST", path: path, body: orderBody, bearer: tok, header: map[string]string{"Content-Type": "text/plain"}}), 415, "unsupported_media_type")
	}
}
