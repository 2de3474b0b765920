package server_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/marketmesh/marketmesh/api/internal/openapi"
	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
)

func TestRoutesMatchTheOpenAPIDocument(t *testing.T) {
	ta := newTestAPI(t)
	served := map[string]bool{}
	for _, r := range ta.api.Routes() {
		if served[r] {
			t.Errorf("route %q is listed twice", r)
		}
		served[r] = true
	}
	documented := map[string]bool{}
	for path, methods := range openapi.Paths() {
		for _, m := range methods {
			documented[m+" "+path] = true
		}
	}
	var missingDoc, missingRoute []string
	for r := range served {
		if !documented[r] {
			missingDoc = append(missingDoc, r)
		}
	}
	for r := range documented {
		if !served[r] {
			missingRoute = append(missingRoute, r)
		}
	}
	sort.Strings(missingDoc)
	sort.Strings(missingRoute)
	if len(missingDoc) > 0 {
		t.Errorf("served but not in openapi.json: %v", missingDoc)
	}
	if len(missingRoute) > 0 {
		t.Errorf("in openapi.json but not served: %v", missingRoute)
	}
	for _, op := range []string{"GET /openapi.json", "GET /docs", "GET /healthz"} {
		if !served[op] {
			t.Errorf("%s is not among the routes", op)
		}
	}
	// Readiness and metrics are on the ops listener only.
	for _, op := range []string{"GET /metrics", "GET /readyz"} {
		if served[op] {
			t.Errorf("%s is among the public routes", op)
		}
	}
}

// TestEveryRouteIsServed sends a valid request to each route in Routes()
// and expects success, so the route table, not just the list, is complete.
func TestEveryRouteIsServed(t *testing.T) {
	ta := newTestAPI(t)
	tok := ta.token(t, "01HCALLER")
	bodies := map[string]string{
		"POST /v1/auth/register":                    `{"email":"ada@example.com","password":"password123","name":"Ada"}`,
		"POST /v1/auth/login":                       `{"email":"ada@example.com","password":"password123"}`,
		"POST /v1/auth/refresh":                     `{"refresh_token":"rt-1"}`,
		"POST /v1/auth/logout":                      `{"refresh_token":"rt-1"}`,
		"PATCH /v1/users/me":                        `{"name":"Ada"}`,
		"POST /v1/users/me/wishlist":                `{"publication_id":"pub-1"}`,
		"POST /v1/users/me/bank-accounts":           `{"holder":"Ada","bank":"DB","account_number":"12345678","currency":"EUR"}`,
		"POST /v1/users/me/devices":                 `{"token":"tok-1","platform":"ios"}`,
		"PUT /v1/users/me/notification-preferences": `{"email":true,"push":false}`,
		"POST /v1/products":                         `{"name":"Lamp","category":"home/lighting"}`,
		"PATCH /v1/products/{id}":                   `{"name":"Lamp 2"}`,
		"POST /v1/publications":                     `{"product_id":"p1","title":"Lamp","price":{"amount":1999,"currency":"USD"},"quantity":1,"condition":"new"}`,
		"PATCH /v1/publications/{id}":               `{"quantity":2}`,
		"POST /v1/cart/items":                       `{"publication_id":"pub-1","quantity":1}`,
		"POST /v1/cart/checkout":                    `{"payment":{"method":"card","card_token":"tok_visa"},"shipping_address":{"name":"Ada","line1":"1 Main St","city":"London","postal_code":"SW1","country":"GB"}}`,
		"POST /v1/orders":                           `{"items":[{"publication_id":"pub-1","quantity":1}],"payment":{"method":"card","card_token":"tok_visa"},"shipping_address":{"name":"Ada","line1":"1 Main St","city":"London","postal_code":"SW1","country":"GB"}}`,
		"POST /v1/payments/webhook":                 `{"id":"evt_1","type":"charge.succeeded"}`,
		"POST /v1/images":                           "--B\r\nContent-Disposition: form-data; name=\"owner_type\"\r\n\r\nproduct\r\n--B\r\nContent-Disposition: form-data; name=\"owner_id\"\r\n\r\np1\r\n--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\nPNG\r\n--B--\r\n",
	}
	headers := map[string]map[string]string{
		"POST /v1/images":           {"Content-Type": "multipart/form-data; boundary=B"},
		"POST /v1/payments/webhook": {"X-Signature": "t=1,v1=ab"},
	}
	queries := map[string]string{"GET /v1/images": "?owner_type=product&owner_id=p1"}
	// paths fills the routes whose IDs have a shape of their own.
	paths := map[string]string{
		"POST /v1/admin/notifications/dead-letters/{id}/retry": "/v1/admin/notifications/dead-letters/ntf_0123456789abcdef01234567/retry",
	}
	ta.users.Answer = func(endpoint string, _ any) (any, error) {
		switch endpoint {
		case "Users.Register":
			return &usersrpc.User{ID: "01HCALLER", Email: "ada@example.com"}, nil
		case "Users.Login", "Users.Refresh":
			return &usersrpc.Session{User: usersrpc.User{ID: "01HCALLER", Email: "ada@example.com"}, RefreshToken: "rt-1"}, nil
		case "Products.Get":
			return &productsrpc.Product{ID: "p1", CreatorID: "01HCALLER"}, nil
		}
		return nil, nil
	}
	fill := strings.NewReplacer("{id}", "01HSOMEONE", "{publication_id}", "pub-1", "{token}", "tok-1",
		"{service}", "products", "{subscriber}", "publications", "{seq}", "1")
	adminTok := ta.adminToken(t)
	for _, route := range ta.api.Routes() {
		t.Run(route, func(t *testing.T) {
			method, path, _ := strings.Cut(route, " ")
			if p := paths[route]; p != "" {
				path = p
			}
			bearer := tok
			if strings.HasPrefix(path, "/v1/admin/") {
				bearer = adminTok
			}
			rec := ta.do(t, req{method: method, path: fill.Replace(path) + queries[route], body: bodies[route], header: headers[route], bearer: bearer})
			if rec.Code < 200 || rec.Code > 299 {
				t.Fatalf("status = %d, want 2xx; body %s", rec.Code, rec.Body)
			}
			if rec.Header().Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id on a successful response")
			}
		})
	}
	t.Run("the docs subtree serves Swagger UI assets", func(t *testing.T) {
		for _, p := range []string{"/docs/", "/docs/swagger-initializer.js", "/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js"} {
			if rec := ta.do(t, req{method: "GET", path: p}); rec.Code != http.StatusOK {
				t.Errorf("GET %s = %d", p, rec.Code)
			}
		}
	})
}

func TestSuccessfulResponses(t *testing.T) {
	ta := newTestAPI(t)
	ta.users.Answer = func(endpoint string, _ any) (any, error) {
		switch endpoint {
		case "Users.Register":
			return &usersrpc.User{ID: "01HNEWUSER", Email: "ada@example.com", Name: "Ada"}, nil
		case "Users.Login":
			return &usersrpc.Session{User: usersrpc.User{ID: "01HNEWUSER", Email: "ada@example.com", Name: "Ada"}, RefreshToken: "rt-1"}, nil
		case "Users.AddWishlist":
			return &usersrpc.WishlistAdded{Item: usersrpc.WishlistItem{PublicationID: "pub-1"}, Created: true}, nil
		case "Users.AddBankAccount":
			return &usersrpc.BankAccount{ID: "01HACCT", AccountNumber: "****5678"}, nil
		}
		return nil, nil
	}

	t.Run("register answers 201 with a Location", func(t *testing.T) {
		rec := ta.do(t, req{method: "POST", path: "/v1/auth/register", body: `{"email":"ada@example.com","password":"password123","name":"Ada"}`})
		if rec.Code != http.StatusCreated || rec.Header().Get("Location") != "/v1/users/01HNEWUSER" {
			t.Errorf("status %d, Location %q", rec.Code, rec.Header().Get("Location"))
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
	})
	t.Run("login answers a token for the authenticated user", func(t *testing.T) {
		rec := ta.do(t, req{method: "POST", path: "/v1/auth/login", body: `{"email":"ada@example.com","password":"password123"}`})
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Error("a token response must not be cached")
		}
		var body struct {
			Token string        `json:"token"`
			User  usersrpc.User `json:"user"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		uid, err := ta.signer.Verify(body.Token)
		if err != nil || uid != "01HNEWUSER" || body.User.ID != "01HNEWUSER" {
			t.Errorf("token subject %q (%v), user %q", uid, err, body.User.ID)
		}
	})
	t.Run("adding a new wishlist item answers 201", func(t *testing.T) {
		rec := ta.do(t, req{method: "POST", path: "/v1/users/me/wishlist", body: `{"publication_id":"pub-1"}`, bearer: ta.token(t, "u1")})
		if rec.Code != http.StatusCreated {
			t.Errorf("status %d", rec.Code)
		}
	})
	t.Run("a bank account answer is not cached", func(t *testing.T) {
		rec := ta.do(t, req{method: "POST", path: "/v1/users/me/bank-accounts", body: `{"holder":"Ada","bank":"DB","account_number":"12345678","currency":"EUR"}`, bearer: ta.token(t, "u1")})
		if rec.Code != http.StatusCreated || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("status %d, Cache-Control %q", rec.Code, rec.Header().Get("Cache-Control"))
		}
	})
	t.Run("the caller and request ID reach the users service", func(t *testing.T) {
		before := len(ta.users.Calls())
		rec := ta.do(t, req{method: "GET", path: "/v1/users/me/wishlist?page_size=100&page_token=abc", bearer: ta.token(t, "01HCALLER"), header: map[string]string{"X-Request-Id": "trace-42"}})
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		calls := ta.users.Calls()[before:]
		if len(calls) != 1 {
			t.Fatalf("%d calls", len(calls))
		}
		c := calls[0]
		p, _ := c.Req.(*usersrpc.PageRequest)
		if c.Endpoint != "Users.ListWishlist" || c.Caller != "01HCALLER" || c.RequestID != "trace-42" ||
			p == nil || p.PageSize != 100 || p.PageToken != "abc" {
			t.Errorf("call = %+v (req %+v)", c, p)
		}
	})
}

func TestUnknownPathsAndMethods(t *testing.T) {
	ta := newTestAPI(t)
	tests := []struct {
		name, method, path string
		status             int
		code               string
		allow              []string
	}{
		{"an unknown path is 404", "GET", "/v1/nope", 404, "not_found", nil},
		{"an unknown POST path is 404", "POST", "/v2/auth/login", 404, "not_found", nil},
		{"a trailing slash is another path", "GET", "/v1/users/me/wishlist/", 404, "not_found", nil},
		{"the root is 404", "GET", "/", 404, "not_found", nil},
		{"an unknown docs asset is 404", "GET", "/docs/nope.js", 404, "not_found", nil},
		{"a '..' segment is 404, not a redirect", "PATCH", "/v1/products/..", 404, "not_found", nil},
		{"a '..' segment that cleans to a route is 404", "GET", "/v1/users/me/wishlist/../../me", 404, "not_found", nil},
		{"a '.' segment is 404", "DELETE", "/v1/products/./p1", 404, "not_found", nil},
		{"a trailing '.' segment is 404", "GET", "/v1/users/me/.", 404, "not_found", nil},
		{"a doubled slash is 404", "GET", "/v1//users/me", 404, "not_found", nil},
		{"a leading doubled slash is 404", "GET", "//healthz", 404, "not_found", nil},
		{"DELETE on /v1/users/me is 405", "DELETE", "/v1/users/me", 405, "method_not_allowed", []string{"GET", "PATCH"}},
		{"GET on /v1/auth/register is 405", "GET", "/v1/auth/register", 405, "method_not_allowed", []string{"POST"}},
		{"PUT on /v1/auth/login is 405", "PUT", "/v1/auth/login", 405, "method_not_allowed", []string{"POST"}},
		{"POST on /healthz is 405", "POST", "/healthz", 405, "method_not_allowed", []string{"GET"}},
		{"DELETE on a collection is 405", "DELETE", "/v1/users/me/devices", 405, "method_not_allowed", []string{"GET", "POST"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := ta.do(t, req{method: tt.method, path: tt.path})
			msg := wantError(t, rec, tt.status, tt.code)
			if loc := rec.Header().Get("Location"); loc != "" {
				t.Errorf("Location = %q: an unknown path is not redirected", loc)
			}
			if !strings.Contains(msg, tt.path) {
				t.Errorf("message %q does not name the path", msg)
			}
			if tt.allow == nil {
				return
			}
			allow := strings.Split(strings.ReplaceAll(rec.Header().Get("Allow"), " ", ""), ",")
			for _, m := range tt.allow {
				if !slices.Contains(allow, m) {
					t.Errorf("Allow = %q, want it to contain %s", rec.Header().Get("Allow"), m)
				}
			}
			if slices.Contains(allow, tt.method) {
				t.Errorf("Allow = %q contains the refused method", rec.Header().Get("Allow"))
			}
		})
	}
	if n := len(ta.users.Calls()); n != 0 {
		t.Errorf("%d calls reached the users service", n)
	}
}
