package openapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/contracts/notificationsrpc"
	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/money"
)

const errorRef = "#/components/schemas/Error"

func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(Document())
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if err := doc.Validate(loader.Context, openapi3.EnableSchemaFormatValidation()); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return doc
}

func TestDocumentValid(t *testing.T) {
	doc := loadDoc(t)
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
	// "/" first: Swagger UI's "Try it out" calls the origin it was loaded
	// from, whichever name that was; both development names follow.
	var servers []string
	for _, s := range doc.Servers {
		servers = append(servers, s.URL)
	}
	if want := []string{"/", "http://localhost:8080", "http://127.0.0.1:8080"}; !slices.Equal(servers, want) {
		t.Errorf("servers = %v, want %v", servers, want)
	}
	for _, name := range []string{
		"Error", "User", "PublicProfile", "LoginResponse", "RefreshRequest", "WishlistItem", "BankAccount",
		"Device", "NotificationPreferences", "WishlistItemList", "BankAccountList", "DeviceList",
		"WishlistEntry", "SellerProfile", "Money", "Product", "ProductList", "ProductPage", "Category",
		"CategoryTree", "Publication", "PublicationList", "PublicationPage", "ImageView", "ImageViewList",
		"CreateProductRequest", "UpdateProductRequest", "CreatePublicationRequest", "UpdatePublicationRequest",
		"UploadImageRequest", "Amount", "Address", "PaymentMethod", "OrderItemRequest", "CreateOrderRequest",
		"CheckoutRequest", "SetCartItemRequest", "OrderStatus", "OrderLine", "OrderLineView", "OrderPayment",
		"Shipment", "Order", "OrderList", "OrderPage", "CartLine", "Cart", "PaymentEvent", "WebhookAck",
		"DeadLetter", "DeadLetterList", "Notification", "NotificationPage", "NotificationDeadLetter",
		"NotificationDeadLetterPage",
	} {
		if doc.Components.Schemas[name] == nil {
			t.Errorf("components.schemas.%s missing", name)
		}
	}
	s := doc.Components.SecuritySchemes["bearerAuth"]
	if s == nil || s.Value.Type != "http" || s.Value.Scheme != "bearer" || s.Value.BearerFormat != "JWT" {
		t.Errorf("bearerAuth security scheme missing or not http bearer JWT")
	}
}

// route is one operation of the API as specified for v1.
type route struct {
	method, path string
	auth         bool
	codes        []int
}

// Status codes common to groups of routes.
var (
	failures = []int{500, 503, 504}
	body     = []int{400, 413, 415, 422}
)

func codes(groups ...[]int) []int {
	var out []int
	for _, g := range groups {
		out = append(out, g...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// bodyMedia names the routes whose request body is not application/json.
var bodyMedia = map[string]string{
	"POST /v1/images": "multipart/form-data",
}

// aggregated are the reads that combine several services: 200 with
// "partial" and "unavailable" when an optional part is down, 503 when the
// core part is.
var aggregated = []string{
	"GET /v1/products/{id}",
	"GET /v1/publications/{id}",
	"GET /v1/users/{id}",
	"GET /v1/users/me/wishlist",
	"GET /v1/cart",
	"GET /v1/orders/{id}",
	"GET /v1/admin/events/dead-letters",
}

// noBody names the routes that answer 422 without reading a body: the
// Idempotency-Key was used with another request.
var noBody = map[string]bool{
	"POST /v1/orders/{id}/cancel":  true,
	"POST /v1/orders/{id}/ship":    true,
	"POST /v1/orders/{id}/deliver": true,
}

// rawBody names the routes whose JSON body is passed on as received: it is
// documented and required, but its fields are someone else's.
var rawBody = map[string]bool{
	"POST /v1/payments/webhook": true,
}

// idempotent names the writes that accept an Idempotency-Key.
var idempotent = []string{
	"POST /v1/orders",
	"POST /v1/cart/checkout",
	"POST /v1/orders/{id}/cancel",
	"POST /v1/orders/{id}/ship",
	"POST /v1/orders/{id}/deliver",
}

// Status codes of the buying routes.
var (
	placed    = codes([]int{201, 202, 400, 401, 402, 404, 409, 422, 502}, body, failures)
	orderStep = codes([]int{200, 400, 401, 403, 404, 409, 422}, failures)
)

// routes is the API's specification, from which the document must not drift.
var routes = []route{
	{"POST", "/v1/auth/register", false, codes([]int{201, 409, 429}, body, failures)},
	{"POST", "/v1/auth/login", false, codes([]int{200, 401, 429}, body, failures)},
	{"POST", "/v1/auth/refresh", false, codes([]int{200, 401, 429}, body, failures)},
	{"POST", "/v1/auth/logout", false, codes([]int{204, 401, 429}, body, failures)},
	{"GET", "/v1/users/me", true, codes([]int{200, 401}, failures)},
	{"PATCH", "/v1/users/me", true, codes([]int{200, 401}, body, failures)},
	{"GET", "/v1/users/{id}", false, codes([]int{200, 404}, failures)},
	{"GET", "/v1/users/me/wishlist", true, codes([]int{200, 400, 401}, failures)},
	{"POST", "/v1/users/me/wishlist", true, codes([]int{200, 201, 401, 404}, body, failures)},
	{"DELETE", "/v1/users/me/wishlist/{publication_id}", true, codes([]int{204, 401, 404}, failures)},
	{"GET", "/v1/users/me/bank-accounts", true, codes([]int{200, 400, 401}, failures)},
	{"POST", "/v1/users/me/bank-accounts", true, codes([]int{201, 401}, body, failures)},
	{"DELETE", "/v1/users/me/bank-accounts/{id}", true, codes([]int{204, 401, 404}, failures)},
	{"GET", "/v1/users/me/devices", true, codes([]int{200, 400, 401}, failures)},
	{"POST", "/v1/users/me/devices", true, codes([]int{200, 201, 401}, body, failures)},
	{"DELETE", "/v1/users/me/devices/{token}", true, codes([]int{204, 401, 404}, failures)},
	{"GET", "/v1/users/me/notification-preferences", true, codes([]int{200, 401}, failures)},
	{"GET", "/v1/notifications", true, codes([]int{200, 400, 401}, failures)},
	{"PUT", "/v1/users/me/notification-preferences", true, codes([]int{200, 401}, body, failures)},
	{"POST", "/v1/products", true, codes([]int{201, 401}, body, failures)},
	{"GET", "/v1/products", false, codes([]int{200, 400}, failures)},
	{"GET", "/v1/products/{id}", false, codes([]int{200, 404}, failures)},
	{"PATCH", "/v1/products/{id}", true, codes([]int{200, 401, 403, 404}, body, failures)},
	{"DELETE", "/v1/products/{id}", true, codes([]int{204, 401, 403, 404}, failures)},
	{"GET", "/v1/categories", false, codes([]int{200}, failures)},
	{"POST", "/v1/publications", true, codes([]int{201, 401}, body, failures)},
	{"GET", "/v1/publications", false, codes([]int{200, 400}, failures)},
	{"GET", "/v1/publications/{id}", false, codes([]int{200, 404}, failures)},
	{"PATCH", "/v1/publications/{id}", true, codes([]int{200, 401, 403, 404, 409}, body, failures)},
	{"POST", "/v1/images", true, codes([]int{201, 401, 403}, body, failures)},
	{"GET", "/v1/images", false, codes([]int{200, 400}, failures)},
	{"GET", "/v1/images/{id}", false, codes([]int{200, 304, 404}, failures)},
	{"GET", "/v1/images/{id}/thumbnail", false, codes([]int{200, 304, 404}, failures)},
	{"DELETE", "/v1/images/{id}", true, codes([]int{204, 401, 403, 404}, failures)},
	{"GET", "/v1/cart", true, codes([]int{200, 401}, failures)},
	{"POST", "/v1/cart/items", true, codes([]int{200, 401, 404}, body, failures)},
	{"DELETE", "/v1/cart/items/{publication_id}", true, codes([]int{200, 401, 404}, failures)},
	{"POST", "/v1/cart/checkout", true, placed},
	{"POST", "/v1/orders", true, placed},
	{"GET", "/v1/orders", true, codes([]int{200, 400, 401}, failures)},
	{"GET", "/v1/orders/{id}", true, codes([]int{200, 401, 404}, failures)},
	{"POST", "/v1/orders/{id}/cancel", true, orderStep},
	{"POST", "/v1/orders/{id}/ship", true, orderStep},
	{"POST", "/v1/orders/{id}/deliver", true, orderStep},
	{"POST", "/v1/payments/webhook", false, codes([]int{200, 400, 401, 413, 415, 422}, failures)},
	{"GET", "/v1/admin/events/dead-letters", true, codes([]int{200, 400, 401, 403}, failures)},
	{"POST", "/v1/admin/events/dead-letters/{service}/{subscriber}/{seq}/replay", true, codes([]int{204, 400, 401, 403, 404, 409}, failures)},
	{"GET", "/v1/admin/notifications/dead-letters", true, codes([]int{200, 400, 401, 403}, failures)},
	{"POST", "/v1/admin/notifications/dead-letters/{id}/retry", true, codes([]int{200, 400, 401, 403, 404, 409}, failures)},
	{"GET", "/healthz", false, []int{200}},
	{"GET", "/openapi.json", false, []int{200}},
	{"GET", "/docs", false, []int{200}},
}

func TestPathsMatchSpec(t *testing.T) {
	want := map[string][]string{}
	for _, r := range routes {
		want[r.path] = append(want[r.path], r.method)
	}
	for _, ms := range want {
		sort.Strings(ms)
	}
	got := Paths()
	for p, ms := range want {
		if !slices.Equal(got[p], ms) {
			t.Errorf("Paths()[%q] = %v, want %v", p, got[p], ms)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("Paths() has undocumented route %q", p)
		}
	}
	// Paths must agree with what kin-openapi reads from the document.
	doc := loadDoc(t)
	for p, item := range doc.Paths.Map() {
		var ms []string
		for m := range item.Operations() {
			ms = append(ms, m)
		}
		sort.Strings(ms)
		if !slices.Equal(got[p], ms) {
			t.Errorf("kin: %s has %v, Paths() has %v", p, ms, got[p])
		}
	}
	// The result is a copy.
	got["/healthz"][0] = "POST"
	if Paths()["/healthz"][0] != "GET" {
		t.Error("Paths() shares its slices with callers")
	}
}

func TestOperations(t *testing.T) {
	doc := loadDoc(t)
	ids := map[string]bool{}
	for _, r := range routes {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			item := doc.Paths.Find(r.path)
			if item == nil {
				t.Fatal("path not documented")
			}
			op := item.GetOperation(r.method)
			if op == nil {
				t.Fatal("operation not documented")
			}
			if op.OperationID == "" || ids[op.OperationID] {
				t.Errorf("operationId %q empty or duplicated", op.OperationID)
			}
			ids[op.OperationID] = true
			if op.Summary == "" || len(op.Tags) == 0 {
				t.Error("summary or tags missing")
			}

			var got []int
			fourXX := false
			for code, resp := range op.Responses.Map() {
				h := resp.Value.Headers["X-Request-Id"]
				if h == nil || h.Ref != "#/components/headers/X-Request-Id" {
					t.Errorf("%s: X-Request-Id header missing", code)
				}
				if code == "default" {
					if !usesError(resp.Value) {
						t.Errorf("default response does not use %s", errorRef)
					}
					continue
				}
				n, err := strconv.Atoi(code)
				if err != nil {
					t.Fatalf("response code %q", code)
				}
				got = append(got, n)
				if n >= 400 && !usesError(resp.Value) {
					t.Errorf("%d does not use %s", n, errorRef)
				}
				if n >= 400 && n < 500 && usesError(resp.Value) {
					fourXX = true
				}
				if n == 429 && resp.Value.Headers["Retry-After"] == nil {
					t.Error("429 without Retry-After header")
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, r.codes) {
				t.Errorf("status codes = %v, want %v", got, r.codes)
			}
			// The health and docs routes have no client errors;
			// every /v1 route has at least one, except the category tree.
			if strings.HasPrefix(r.path, "/v1/") && r.path != "/v1/categories" && !fourXX {
				t.Error("no 4xx response using the Error schema")
			}

			key := r.method + " " + r.path
			switch {
			case rawBody[key]:
				if op.RequestBody == nil || !op.RequestBody.Value.Required || op.RequestBody.Value.Content.Get("application/json") == nil {
					t.Error("request body missing, not required or not application/json")
				}
			case slices.Contains(r.codes, 422) && !noBody[key]:
				media := bodyMedia[key]
				if media == "" {
					media = "application/json"
				}
				checkRequestBody(t, op, media)
			case op.RequestBody != nil:
				t.Error("unexpected request body")
			}

			var secured bool
			if op.Security != nil {
				for _, req := range *op.Security {
					if _, ok := req["bearerAuth"]; ok {
						secured = true
					}
				}
			}
			if secured != r.auth {
				t.Errorf("bearerAuth security = %v, want %v", secured, r.auth)
			}
		})
	}
}

func usesError(r *openapi3.Response) bool {
	mt := r.Content.Get("application/json")
	return mt != nil && mt.Schema != nil && mt.Schema.Ref == errorRef
}

func checkRequestBody(t *testing.T, op *openapi3.Operation, media string) {
	t.Helper()
	if op.RequestBody == nil || !op.RequestBody.Value.Required {
		t.Fatal("request body missing or not required")
	}
	content := op.RequestBody.Value.Content
	mt := content[media]
	if mt == nil || mt.Schema == nil || len(content) != 1 {
		t.Fatalf("request body must have exactly one schema, for %s", media)
	}
	s := mt.Schema.Value
	if !s.Type.Is("object") || s.AdditionalProperties.Has == nil || *s.AdditionalProperties.Has {
		t.Error("request body schema must be an object with additionalProperties: false")
	}
}

// requestSchema returns the application/json request body schema of an operation.
func requestSchema(t *testing.T, doc *openapi3.T, method, path string) *openapi3.Schema {
	t.Helper()
	return doc.Paths.Find(path).GetOperation(method).RequestBody.Value.Content.Get("application/json").Schema.Value
}

// tokenPairJSON is an answer of login and refresh.
const tokenPairJSON = `{"token":"eyJ.x.y","token_type":"Bearer","expires_at":"2024-05-01T12:15:00Z","expires_in":900,` +
	`"refresh_token":"rt","refresh_token_expires_at":"2024-05-31T12:00:00Z",` +
	`"user":{"id":"u1","email":"a@example.com","name":"A","phone":"","created_at":"2024-05-01T12:00:00Z","updated_at":"2024-05-01T12:00:00Z"}}`

func TestSchemasAcceptAndReject(t *testing.T) {
	doc := loadDoc(t)
	errSchema := doc.Components.Schemas["Error"].Value
	cases := []struct {
		name   string
		schema *openapi3.Schema
		body   string
		ok     bool
	}{
		{"register ok", requestSchema(t, doc, "POST", "/v1/auth/register"), `{"email":"a@example.com","password":"12345678","name":"A"}`, true},
		{"register unknown field", requestSchema(t, doc, "POST", "/v1/auth/register"), `{"email":"a@example.com","password":"12345678","name":"A","admin":true}`, false},
		{"register short password", requestSchema(t, doc, "POST", "/v1/auth/register"), `{"email":"a@example.com","password":"1234567","name":"A"}`, false},
		{"register missing email", requestSchema(t, doc, "POST", "/v1/auth/register"), `{"password":"12345678","name":"A"}`, false},
		{"register long name", requestSchema(t, doc, "POST", "/v1/auth/register"), `{"email":"a@example.com","password":"12345678","name":"` + strings.Repeat("x", 101) + `"}`, false},
		{"login missing password", requestSchema(t, doc, "POST", "/v1/auth/login"), `{"email":"a@example.com"}`, false},
		{"refresh ok", requestSchema(t, doc, "POST", "/v1/auth/refresh"), `{"refresh_token":"Jr8dNQ0mV4m3vJ0s9Z1xq3P2yT6bW5cA8eD7fG1hK2l"}`, true},
		{"refresh without a token", requestSchema(t, doc, "POST", "/v1/auth/refresh"), `{}`, false},
		{"refresh with an empty token", requestSchema(t, doc, "POST", "/v1/auth/refresh"), `{"refresh_token":""}`, false},
		{"refresh with another field", requestSchema(t, doc, "POST", "/v1/auth/refresh"), `{"refresh_token":"t","user_id":"u1"}`, false},
		{"logout ok", requestSchema(t, doc, "POST", "/v1/auth/logout"), `{"refresh_token":"t"}`, true},
		{"logout without a token", requestSchema(t, doc, "POST", "/v1/auth/logout"), `{}`, false},
		{"a token pair", schema(doc, "LoginResponse"), tokenPairJSON, true},
		{"a token pair without its refresh token", schema(doc, "LoginResponse"), strings.Replace(tokenPairJSON, `"refresh_token":"rt",`, ``, 1), false},
		{"a token pair of another type", schema(doc, "LoginResponse"), strings.Replace(tokenPairJSON, `"Bearer"`, `"MAC"`, 1), false},
		{"a token pair without expires_in", schema(doc, "LoginResponse"), strings.Replace(tokenPairJSON, `"expires_in":900,`, ``, 1), false},
		{"patch me empty", requestSchema(t, doc, "PATCH", "/v1/users/me"), `{}`, false},
		{"patch me clear phone", requestSchema(t, doc, "PATCH", "/v1/users/me"), `{"phone":""}`, true},
		{"patch me phone", requestSchema(t, doc, "PATCH", "/v1/users/me"), `{"phone":"+4915112345678"}`, true},
		{"patch me phone no plus", requestSchema(t, doc, "PATCH", "/v1/users/me"), `{"phone":"4915112345678"}`, false},
		{"patch me phone short", requestSchema(t, doc, "PATCH", "/v1/users/me"), `{"phone":"+123456"}`, false},
		{"patch me phone with spaces", requestSchema(t, doc, "PATCH", "/v1/users/me"), `{"phone":"+44 20 7946 0018"}`, true},
		{"patch me phone with dashes and parentheses", requestSchema(t, doc, "PATCH", "/v1/users/me"), `{"phone":"+1 (415) 555-0123"}`, true},
		{"patch me phone leading zero", requestSchema(t, doc, "PATCH", "/v1/users/me"), `{"phone":"+0123456"}`, false},
		{"patch me phone formatted leading zero", requestSchema(t, doc, "PATCH", "/v1/users/me"), `{"phone":"+0 20 7946 0018"}`, false},
		{"patch me phone 16 digits", requestSchema(t, doc, "PATCH", "/v1/users/me"), `{"phone":"+1234567890123456"}`, false},
		{"patch me phone with dots", requestSchema(t, doc, "PATCH", "/v1/users/me"), `{"phone":"+44.20.7946.0018"}`, false},
		{"patch me email", requestSchema(t, doc, "PATCH", "/v1/users/me"), `{"email":"a@example.com"}`, false},
		{"wishlist ok", requestSchema(t, doc, "POST", "/v1/users/me/wishlist"), `{"publication_id":"01HZX3M5Q8R6Y2T4V7W9K1N3P5"}`, true},
		{"wishlist missing", requestSchema(t, doc, "POST", "/v1/users/me/wishlist"), `{}`, false},
		{"bank ok", requestSchema(t, doc, "POST", "/v1/users/me/bank-accounts"), `{"holder":"A","bank":"B","account_number":"1234-5678 90","currency":"EUR"}`, true},
		{"an IBAN with letters is accepted", requestSchema(t, doc, "POST", "/v1/users/me/bank-accounts"), `{"holder":"A","bank":"B","account_number":"DE89 3704 0044 0532 0130 00","currency":"EUR"}`, true},
		{"punctuation in the account number is refused", requestSchema(t, doc, "POST", "/v1/users/me/bank-accounts"), `{"holder":"A","bank":"B","account_number":"1234.5678","currency":"EUR"}`, false},
		{"bank short", requestSchema(t, doc, "POST", "/v1/users/me/bank-accounts"), `{"holder":"A","bank":"B","account_number":"12345","currency":"EUR"}`, false},
		{"bank currency", requestSchema(t, doc, "POST", "/v1/users/me/bank-accounts"), `{"holder":"A","bank":"B","account_number":"123456","currency":"eur"}`, false},
		{"bank 34 characters", requestSchema(t, doc, "POST", "/v1/users/me/bank-accounts"), `{"holder":"A","bank":"B","account_number":"` + strings.Repeat("9", 34) + `","currency":"EUR"}`, true},
		{"bank 35 characters", requestSchema(t, doc, "POST", "/v1/users/me/bank-accounts"), `{"holder":"A","bank":"B","account_number":"` + strings.Repeat("9", 35) + `","currency":"EUR"}`, false},
		{"bank 34 characters with separators", requestSchema(t, doc, "POST", "/v1/users/me/bank-accounts"), `{"holder":"A","bank":"B","account_number":"` + strings.Repeat("99 - ", 17) + `","currency":"EUR"}`, true},
		{"bank 5 characters with separators", requestSchema(t, doc, "POST", "/v1/users/me/bank-accounts"), `{"holder":"A","bank":"B","account_number":"12-3 45","currency":"EUR"}`, false},
		{"device ok", requestSchema(t, doc, "POST", "/v1/users/me/devices"), `{"token":"t","platform":"android"}`, true},
		{"device platform", requestSchema(t, doc, "POST", "/v1/users/me/devices"), `{"token":"t","platform":"windows"}`, false},
		{"device empty token", requestSchema(t, doc, "POST", "/v1/users/me/devices"), `{"token":"","platform":"web"}`, false},
		{"device token with a colon", requestSchema(t, doc, "POST", "/v1/users/me/devices"), `{"token":"fcm:APA91b-x_y","platform":"web"}`, true},
		{"device token with a slash", requestSchema(t, doc, "POST", "/v1/users/me/devices"), `{"token":"a/b","platform":"web"}`, false},
		{"device token with a space", requestSchema(t, doc, "POST", "/v1/users/me/devices"), `{"token":"a b","platform":"web"}`, false},
		{"device token with a newline", requestSchema(t, doc, "POST", "/v1/users/me/devices"), `{"token":"a\nb","platform":"web"}`, false},
		{"prefs ok", requestSchema(t, doc, "PUT", "/v1/users/me/notification-preferences"), `{"email":true,"push":false}`, true},
		{"prefs partial", requestSchema(t, doc, "PUT", "/v1/users/me/notification-preferences"), `{"email":true}`, false},
		{"product ok", requestSchema(t, doc, "POST", "/v1/products"), `{"name":"Pixel 8","category":"electronics/phones","brand":"Google","attributes":{"color":"black"}}`, true},
		{"product minimal", requestSchema(t, doc, "POST", "/v1/products"), `{"name":"P","category":"phones"}`, true},
		{"product missing category", requestSchema(t, doc, "POST", "/v1/products"), `{"name":"Pixel 8"}`, false},
		{"product blank name", requestSchema(t, doc, "POST", "/v1/products"), `{"name":" ","category":"phones"}`, false},
		{"product long name", requestSchema(t, doc, "POST", "/v1/products"), `{"name":"` + strings.Repeat("x", 201) + `","category":"phones"}`, false},
		{"product long description", requestSchema(t, doc, "POST", "/v1/products"), `{"name":"P","category":"phones","description":"` + strings.Repeat("x", 5001) + `"}`, false},
		{"product long brand", requestSchema(t, doc, "POST", "/v1/products"), `{"name":"P","category":"phones","brand":"` + strings.Repeat("x", 101) + `"}`, false},
		{"product category upper case is folded", requestSchema(t, doc, "POST", "/v1/products"), `{"name":"P","category":"Electronics/phones"}`, true},
		{"patch product category upper case", requestSchema(t, doc, "PATCH", "/v1/products/{id}"), `{"category":"Home/Lighting"}`, true},
		{"product category 40-character segment", requestSchema(t, doc, "POST", "/v1/products"), `{"name":"P","category":"a/` + strings.Repeat("b", 40) + `"}`, true},
		{"product category 41-character segment", requestSchema(t, doc, "POST", "/v1/products"), `{"name":"P","category":"a/` + strings.Repeat("b", 41) + `"}`, false},
		{"product category underscore", requestSchema(t, doc, "POST", "/v1/products"), `{"name":"P","category":"home_garden"}`, false},
		{"a product shows its category in lower case", schema(doc, "Product"), strings.Replace(productJSON, "electronics/phones", "Electronics/phones", 1), false},
		{"product category 4 segments", requestSchema(t, doc, "POST", "/v1/products"), `{"name":"P","category":"a/b-2/c/d"}`, true},
		{"product category 5 segments", requestSchema(t, doc, "POST", "/v1/products"), `{"name":"P","category":"a/b/c/d/e"}`, false},
		{"product category empty segment", requestSchema(t, doc, "POST", "/v1/products"), `{"name":"P","category":"a//b"}`, false},
		{"product category trailing slash", requestSchema(t, doc, "POST", "/v1/products"), `{"name":"P","category":"a/"}`, false},
		{"product attribute not a string", requestSchema(t, doc, "POST", "/v1/products"), `{"name":"P","category":"a","attributes":{"ram":8}}`, false},
		{"product 50 attributes", requestSchema(t, doc, "POST", "/v1/products"), `{"name":"P","category":"a","attributes":` + attrs(50) + `}`, true},
		{"product 51 attributes", requestSchema(t, doc, "POST", "/v1/products"), `{"name":"P","category":"a","attributes":` + attrs(51) + `}`, false},
		{"product unknown field", requestSchema(t, doc, "POST", "/v1/products"), `{"name":"P","category":"a","price":1}`, false},
		{"patch product one field", requestSchema(t, doc, "PATCH", "/v1/products/{id}"), `{"brand":""}`, true},
		{"patch product empty", requestSchema(t, doc, "PATCH", "/v1/products/{id}"), `{}`, false},
		{"patch product creator", requestSchema(t, doc, "PATCH", "/v1/products/{id}"), `{"creator_id":"x"}`, false},
		{"publication ok", requestSchema(t, doc, "POST", "/v1/publications"), `{"product_id":"p1","title":"T","price":{"amount":1999,"currency":"USD"},"quantity":0,"condition":"new"}`, true},
		{"publication missing quantity", requestSchema(t, doc, "POST", "/v1/publications"), `{"product_id":"p1","title":"T","price":{"amount":1999,"currency":"USD"},"condition":"used"}`, false},
		{"publication condition", requestSchema(t, doc, "POST", "/v1/publications"), `{"product_id":"p1","title":"T","price":{"amount":1999,"currency":"USD"},"quantity":1,"condition":"refurbished"}`, false},
		{"publication quantity too large", requestSchema(t, doc, "POST", "/v1/publications"), `{"product_id":"p1","title":"T","price":{"amount":1999,"currency":"USD"},"quantity":1000001,"condition":"new"}`, false},
		{"publication price zero", requestSchema(t, doc, "POST", "/v1/publications"), `{"product_id":"p1","title":"T","price":{"amount":0,"currency":"USD"},"quantity":1,"condition":"new"}`, false},
		{"publication price decimal", requestSchema(t, doc, "POST", "/v1/publications"), `{"product_id":"p1","title":"T","price":{"amount":19.99,"currency":"USD"},"quantity":1,"condition":"new"}`, false},
		{"publication price as number", requestSchema(t, doc, "POST", "/v1/publications"), `{"product_id":"p1","title":"T","price":1999,"quantity":1,"condition":"new"}`, false},
		{"publication price extra field", requestSchema(t, doc, "POST", "/v1/publications"), `{"product_id":"p1","title":"T","price":{"amount":1,"currency":"USD","display":"0.01"},"quantity":1,"condition":"new"}`, false},
		{"publication currency", requestSchema(t, doc, "POST", "/v1/publications"), `{"product_id":"p1","title":"T","price":{"amount":1,"currency":"usd"},"quantity":1,"condition":"new"}`, false},
		{"publication seller_id", requestSchema(t, doc, "POST", "/v1/publications"), `{"product_id":"p1","title":"T","price":{"amount":1,"currency":"USD"},"quantity":1,"condition":"new","seller_id":"x"}`, false},
		{"patch publication close", requestSchema(t, doc, "PATCH", "/v1/publications/{id}"), `{"status":"closed"}`, true},
		{"patch publication price", requestSchema(t, doc, "PATCH", "/v1/publications/{id}"), `{"price":{"amount":2500,"currency":"EUR"},"quantity":7}`, true},
		{"patch publication status", requestSchema(t, doc, "PATCH", "/v1/publications/{id}"), `{"status":"deleted"}`, false},
		{"patch publication negative quantity", requestSchema(t, doc, "PATCH", "/v1/publications/{id}"), `{"quantity":-1}`, false},
		{"patch publication empty", requestSchema(t, doc, "PATCH", "/v1/publications/{id}"), `{}`, false},
		{"patch publication title", requestSchema(t, doc, "PATCH", "/v1/publications/{id}"), `{"title":"T"}`, false},
		{"upload ok", formSchema(t, doc), `{"owner_type":"product","owner_id":"01HZX3M5Q8R6Y2T4V7W9K1N3P5","file":"..."}`, true},
		{"upload owner type", formSchema(t, doc), `{"owner_type":"order","owner_id":"o1","file":"..."}`, false},
		{"upload owner id slash", formSchema(t, doc), `{"owner_type":"user","owner_id":"a/b","file":"..."}`, false},
		{"upload without file", formSchema(t, doc), `{"owner_type":"user","owner_id":"u1"}`, false},
		{"upload extra field", formSchema(t, doc), `{"owner_type":"user","owner_id":"u1","file":"...","caption":"c"}`, false},
		{"product page partial", schema(doc, "ProductPage"), `{"product":` + productJSON + `,"images":[],"publications":[],"partial":true,"unavailable":["images","publications"]}`, true},
		{"product page unknown part", schema(doc, "ProductPage"), `{"product":` + productJSON + `,"images":[],"publications":[],"partial":true,"unavailable":["seller"]}`, false},
		{"product page without product", schema(doc, "ProductPage"), `{"product":null,"images":[],"publications":[],"partial":false,"unavailable":[]}`, false},
		{"publication page partial", schema(doc, "PublicationPage"), `{"publication":` + publicationJSON + `,"product":null,"images":[],"seller":null,"partial":true,"unavailable":["product","seller"]}`, true},
		{"publication page whole", schema(doc, "PublicationPage"), `{"publication":` + publicationJSON + `,"product":` + productJSON + `,"images":[` + imageJSON + `],"seller":{"id":"u1","name":"A","member_since":"2024-05-01T12:00:00Z"},"partial":false,"unavailable":[]}`, true},
		{"publication page without publication", schema(doc, "PublicationPage"), `{"publication":null,"product":null,"images":[],"seller":null,"partial":true,"unavailable":[]}`, false},
		{"publication page bad seller", schema(doc, "PublicationPage"), `{"publication":` + publicationJSON + `,"product":null,"images":[],"seller":{"id":"u1"},"partial":true,"unavailable":["product"]}`, false},
		{"seller profile", schema(doc, "SellerProfile"), `{"id":"u1","name":"A","member_since":"2024-05-01T12:00:00Z","publication_count":3,"partial":false,"unavailable":[]}`, true},
		{"seller profile partial", schema(doc, "SellerProfile"), `{"id":"u1","name":"A","member_since":"2024-05-01T12:00:00Z","publication_count":null,"partial":true,"unavailable":["publications"]}`, true},
		{"seller profile without count", schema(doc, "SellerProfile"), `{"id":"u1","name":"A","member_since":"2024-05-01T12:00:00Z","partial":false,"unavailable":[]}`, false},
		{"wishlist page", schema(doc, "WishlistItemList"), `{"items":[{"publication_id":"p1","added_at":"2024-05-01T12:00:00Z","title":"T","price":{"amount":1,"currency":"USD"},"active":true,"image":` + imageJSON + `},{"publication_id":"p2","added_at":"2024-05-01T12:00:00Z","active":false}],"next_page_token":"","partial":true,"unavailable":["images"]}`, true},
		{"wishlist page without partial", schema(doc, "WishlistItemList"), `{"items":[],"next_page_token":""}`, false},
		{"wishlist entry bad price", schema(doc, "WishlistEntry"), `{"publication_id":"p1","added_at":"2024-05-01T12:00:00Z","price":19.99}`, false},
		{"category tree", schema(doc, "CategoryTree"), `{"categories":[{"name":"electronics","path":"electronics","count":3,"children":[{"name":"phones","path":"electronics/phones","count":3,"children":[]}]}]}`, true},
		{"category tree deep error", schema(doc, "CategoryTree"), `{"categories":[{"name":"electronics","path":"electronics","count":3,"children":[{"name":"phones","path":"electronics/phones","count":"3","children":[]}]}]}`, false},
		{"image bad content type", schema(doc, "ImageView"), strings.Replace(imageJSON, "image/png", "image/svg+xml", 1), false},
		{"error ok", errSchema, `{"error":{"code":"not_found","message":"m","request_id":"r"}}`, true},
		{"error bad code", errSchema, `{"error":{"code":"teapot","message":"m","request_id":"r"}}`, false},
		{"error flat", errSchema, `{"code":"not_found","message":"m","request_id":"r"}`, false},
		{"error of a failed order", errSchema, `{"error":{"code":"payment_declined","message":"m","request_id":"r","order_id":"o1"}}`, true},
		{"error idempotency", errSchema, `{"error":{"code":"idempotency_key_reused","message":"m","request_id":"r"}}`, true},
		{"order ok", requestSchema(t, doc, "POST", "/v1/orders"), `{"items":[{"publication_id":"p1","quantity":1}],"payment":{"method":"card","card_token":"tok_visa"},"shipping_address":` + addressJSON + `}`, true},
		{"order without items", requestSchema(t, doc, "POST", "/v1/orders"), `{"payment":{"method":"card","card_token":"tok_visa"},"shipping_address":` + addressJSON + `}`, false},
		{"order empty items", requestSchema(t, doc, "POST", "/v1/orders"), `{"items":[],"payment":{"method":"card","card_token":"tok_visa"},"shipping_address":` + addressJSON + `}`, false},
		{"order zero quantity", requestSchema(t, doc, "POST", "/v1/orders"), `{"items":[{"publication_id":"p1","quantity":0}],"payment":{"method":"card","card_token":"tok_visa"},"shipping_address":` + addressJSON + `}`, false},
		{"order item extra field", requestSchema(t, doc, "POST", "/v1/orders"), `{"items":[{"publication_id":"p1","quantity":1,"price":1}],"payment":{"method":"card","card_token":"tok_visa"},"shipping_address":` + addressJSON + `}`, false},
		{"order payment method", requestSchema(t, doc, "POST", "/v1/orders"), `{"items":[{"publication_id":"p1","quantity":1}],"payment":{"method":"cash","card_token":"x"},"shipping_address":` + addressJSON + `}`, false},
		{"order address country", requestSchema(t, doc, "POST", "/v1/orders"), `{"items":[{"publication_id":"p1","quantity":1}],"payment":{"method":"card","card_token":"t"},"shipping_address":{"name":"A","line1":"l","city":"c","postal_code":"p","country":"gb"}}`, false},
		{"order address extra field", requestSchema(t, doc, "POST", "/v1/orders"), `{"items":[{"publication_id":"p1","quantity":1}],"payment":{"method":"card","card_token":"t"},"shipping_address":{"name":"A","line1":"l","city":"c","postal_code":"p","country":"GB","phone":"1"}}`, false},
		{"checkout ok", requestSchema(t, doc, "POST", "/v1/cart/checkout"), `{"payment":{"method":"card","card_token":"tok_visa"},"shipping_address":` + addressJSON + `}`, true},
		{"checkout with items", requestSchema(t, doc, "POST", "/v1/cart/checkout"), `{"items":[],"payment":{"method":"card","card_token":"tok_visa"},"shipping_address":` + addressJSON + `}`, false},
		{"cart item ok", requestSchema(t, doc, "POST", "/v1/cart/items"), `{"publication_id":"p1","quantity":3}`, true},
		{"cart item removal", requestSchema(t, doc, "POST", "/v1/cart/items"), `{"publication_id":"p1","quantity":0}`, true},
		{"cart item without quantity", requestSchema(t, doc, "POST", "/v1/cart/items"), `{"publication_id":"p1"}`, false},
		{"cart item negative", requestSchema(t, doc, "POST", "/v1/cart/items"), `{"publication_id":"p1","quantity":-1}`, false},
		{"cart partial", schema(doc, "Cart"), `{"items":[{"publication_id":"p1","quantity":1,"added_at":"2024-05-01T12:00:00Z"}],"subtotals":[],"partial":true,"unavailable":["publications"]}`, true},
		{"cart bad reason", schema(doc, "Cart"), `{"items":[{"publication_id":"p1","quantity":1,"added_at":"2024-05-01T12:00:00Z","available":false,"reason":"stolen"}],"subtotals":[],"partial":false,"unavailable":[]}`, false},
		{"cart unknown part", schema(doc, "Cart"), `{"items":[],"subtotals":[],"partial":true,"unavailable":["orders"]}`, false},
		{"a line never reserved has a zero price", schema(doc, "OrderLine"), `{"publication_id":"pub1","quantity":2,"unit_price":{"amount":0,"currency":""},"subtotal":{"amount":0,"currency":""}}`, true},
		{"a line view never reserved has a zero price", schema(doc, "OrderLineView"), `{"publication_id":"pub1","quantity":2,"unit_price":{"amount":0,"currency":""},"subtotal":{"amount":0,"currency":""}}`, true},
		{"a line's price is in minor units", schema(doc, "OrderLine"), `{"publication_id":"pub1","quantity":1,"unit_price":{"amount":19.99,"currency":"USD"},"subtotal":{"amount":1999,"currency":"USD"}}`, false},
		{"a line's currency is upper case", schema(doc, "OrderLine"), `{"publication_id":"pub1","quantity":1,"unit_price":{"amount":1999,"currency":"usd"},"subtotal":{"amount":1999,"currency":"USD"}}`, false},
		{"order bad status", schema(doc, "Order"), `{"id":"o1","buyer_id":"u1","status":"lost","items":[],"total":{"amount":0,"currency":""},"shipments":[],"shipping_address":` + addressJSON + `,"created_at":"2024-05-01T12:00:00Z","updated_at":"2024-05-01T12:00:00Z"}`, false},
		{"webhook ack not received", schema(doc, "WebhookAck"), `{"received":false,"event_id":"e","duplicate":false}`, false},
		{"dead letters partial", schema(doc, "DeadLetterList"), `{"items":[` + deadLetterJSON + `],"partial":true,"unavailable":["orders"]}`, true},
		{"dead letters of an unknown service", schema(doc, "DeadLetterList"), `{"items":[],"partial":true,"unavailable":["images"]}`, false},
		{"dead letters without partial", schema(doc, "DeadLetterList"), `{"items":[]}`, false},
		{"a dead letter with a null payload", schema(doc, "DeadLetter"), strings.Replace(deadLetterJSON, `{"product_id":"p1"}`, `null`, 1), true},
		{"a dead letter with a string payload", schema(doc, "DeadLetter"), strings.Replace(deadLetterJSON, `{"product_id":"p1"}`, `"x"`, 1), true},
		{"a dead letter without its sequence", schema(doc, "DeadLetter"), strings.Replace(deadLetterJSON, `"seq":42,`, ``, 1), false},
		{"a dead letter at sequence 0", schema(doc, "DeadLetter"), strings.Replace(deadLetterJSON, `"seq":42,`, `"seq":0,`, 1), false},
		{"error dead letter not found", errSchema, `{"error":{"code":"dead_letter_not_found","message":"m","request_id":"r"}}`, true},
		{"error replay refused", errSchema, `{"error":{"code":"replay_refused","message":"m","request_id":"r"}}`, true},
		{"a notification not yet sent", schema(doc, "Notification"), notificationJSON, true},
		{"a sent notification about an order", schema(doc, "Notification"), strings.Replace(notificationJSON, `"sent_at":null`, `"sent_at":"2024-05-01T12:00:05Z","order_id":"o1"`, 1), true},
		{"a notification without sent_at", schema(doc, "Notification"), strings.Replace(notificationJSON, `,"sent_at":null`, ``, 1), false},
		{"a notification on another channel", schema(doc, "Notification"), strings.Replace(notificationJSON, `"email"`, `"sms"`, 1), false},
		{"a notification with another status", schema(doc, "Notification"), strings.Replace(notificationJSON, `"queued"`, `"bounced"`, 1), false},
		{"a notification with an unknown template", schema(doc, "Notification"), strings.Replace(notificationJSON, `"welcome"`, `"newsletter"`, 1), false},
		{"a notification with a ULID", schema(doc, "Notification"), strings.Replace(notificationJSON, `"ntf_9f86d081884c7d659a2feaa0"`, `"01HZX3M5Q8R6Y2T4V7W9K1N3P5"`, 1), false},
		{"a recipient's notification has a channel", schema(doc, "Notification"), strings.Replace(notificationJSON, `"email"`, `""`, 1), false},
		{"notification page", schema(doc, "NotificationPage"), `{"items":[` + notificationJSON + `],"next_page_token":"n"}`, true},
		{"notification page without token", schema(doc, "NotificationPage"), `{"items":[]}`, false},
		{"a notification dead letter", schema(doc, "NotificationDeadLetter"), notificationDeadLetterJSON, true},
		{"a dead letter queued again has no failed_at", schema(doc, "NotificationDeadLetter"), strings.Replace(notificationDeadLetterJSON, `"failed_at":"2024-05-01T12:05:00Z"`, `"failed_at":null`, 1), true},
		{"a dead letter of an unreadable event has no channel", schema(doc, "NotificationDeadLetter"), `{"id":"ntf_0123456789abcdef01234567","channel":"","template":"","status":"failed","attempts":0,"created_at":"2024-05-01T12:00:00Z","sent_at":null,"user_id":"","event_id":"e1","topic":"order.paid","provider":"","last_error":"malformed","failed_at":"2024-05-01T12:00:00Z"}`, true},
		{"a dead letter without its event", schema(doc, "NotificationDeadLetter"), strings.Replace(notificationDeadLetterJSON, `"event_id":"01HZX3M5Q8R6Y2T4V7W9K1N3P5",`, ``, 1), false},
		{"a dead letter without its provider", schema(doc, "NotificationDeadLetter"), strings.Replace(notificationDeadLetterJSON, `"provider":"sendgrid",`, ``, 1), false},
		{"notification dead letter page", schema(doc, "NotificationDeadLetterPage"), `{"items":[` + notificationDeadLetterJSON + `],"next_page_token":""}`, true},
		{"order page with notifications", schema(doc, "OrderPage"), `{"id":"o1","buyer_id":"u1","status":"paid","items":[],"total":{"amount":0,"currency":"USD"},"shipments":[],"shipping_address":` + addressJSON + `,"created_at":"2024-05-01T12:00:00Z","updated_at":"2024-05-01T12:00:00Z","notifications":[` + notificationJSON + `],"partial":false,"unavailable":[]}`, true},
		{"order page without notifications", schema(doc, "OrderPage"), `{"id":"o1","buyer_id":"u1","status":"paid","items":[],"total":{"amount":0,"currency":"USD"},"shipments":[],"shipping_address":` + addressJSON + `,"created_at":"2024-05-01T12:00:00Z","updated_at":"2024-05-01T12:00:00Z","notifications":[],"partial":true,"unavailable":["notifications"]}`, true},
		{"order page lacking the notifications member", schema(doc, "OrderPage"), `{"id":"o1","buyer_id":"u1","status":"paid","items":[],"total":{"amount":0,"currency":"USD"},"shipments":[],"shipping_address":` + addressJSON + `,"created_at":"2024-05-01T12:00:00Z","updated_at":"2024-05-01T12:00:00Z","partial":false,"unavailable":[]}`, false},
		{"error notification not found", errSchema, `{"error":{"code":"notification_not_found","message":"m","request_id":"r"}}`, true},
		{"error notification not dead", errSchema, `{"error":{"code":"notification_not_dead","message":"m","request_id":"r"}}`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var v any
			if err := json.Unmarshal([]byte(c.body), &v); err != nil {
				t.Fatal(err)
			}
			err := c.schema.VisitJSON(v)
			if (err == nil) != c.ok {
				t.Errorf("VisitJSON(%s) = %v, want ok=%v", c.body, err, c.ok)
			}
		})
	}
}

// serverPhoneRE and serverNormalizePhone copy the users service's
// user.NormalizePhone (services/users/internal/user), which the api cannot
// import: spaces, dashes and parentheses are removed, then an empty string
// clears the phone and anything else must be E.164.
var serverPhoneRE = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

func serverNormalizePhone(s string) (string, bool) {
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' || r == '(' || r == ')' {
			return -1
		}
		return r
	}, s)
	return s, s == "" || serverPhoneRE.MatchString(s)
}

// TestPhonePatternMatchesServer checks that the PATCH /v1/users/me phone
// pattern accepts exactly what the users service accepts.
func TestPhonePatternMatchesServer(t *testing.T) {
	doc := loadDoc(t)
	phone := requestSchema(t, doc, "PATCH", "/v1/users/me").Properties["phone"].Value
	for _, c := range []struct {
		in     string
		stored string // what the server keeps; "-" when it refuses
	}{
		{"", ""},
		{" ", ""},
		{"( - )", ""},
		{"+4915112345678", "+4915112345678"},
		{"+44 20 7946 0018", "+442079460018"},
		{"+1 (415) 555-0123", "+14155550123"},
		{" +1-415-555-0123 ", "+14155550123"},
		{"(+1) 415 555 0123", "+14155550123"},
		{"+ 1 415 555 0123", "+14155550123"},
		{"+1234567", "+1234567"},
		{"+123456789012345", "+123456789012345"},
		{"+1 234 567 890 123 45", "+123456789012345"},
		{"+0123456", "-"},
		{"+01234567", "-"},
		{"+0 20 7946 0018", "-"},
		{"+123456", "-"},
		{"+1 23 45 6", "-"},
		{"+1234567890123456", "-"},
		{"4915112345678", "-"},
		{"00 49 151 12345678", "-"},
		{"+", "-"},
		{"++4915112345678", "-"},
		{"+49 151 1234567 8+", "-"},
		{"+44.20.7946.0018", "-"},
		{"+44/20/7946/0018", "-"},
		{"+44\t2079460018", "-"},
		{"+44\u00a02079460018", "-"},
		{"+44 20 7946 001x", "-"},
		{"+４４2079460018", "-"},
	} {
		stored, ok := serverNormalizePhone(c.in)
		if want := c.stored != "-"; ok != want || (ok && stored != c.stored) {
			t.Errorf("table: the server's NormalizePhone(%q) = %q, %v; the table says %q", c.in, stored, ok, c.stored)
		}
		if err := phone.VisitJSON(c.in); (err == nil) != ok {
			t.Errorf("phone pattern on %q: %v, but the server accepts it = %v", c.in, err, ok)
		}
	}
}

// Response samples for TestSchemasAcceptAndReject.
const (
	productJSON     = `{"id":"p1","name":"Pixel 8","description":"","category":"electronics/phones","brand":"","attributes":{},"creator_id":"u1","view_count":0,"lowest_prices":[{"amount":49900,"currency":"USD"}],"created_at":"2024-05-01T12:00:00Z","updated_at":"2024-05-01T12:00:00Z"}`
	publicationJSON = `{"id":"pub1","seller_id":"u1","product_id":"p1","title":"T","price":{"amount":49900,"currency":"USD"},"quantity":2,"reserved":0,"condition":"new","status":"active","created_at":"2024-05-01T12:00:00Z","updated_at":"2024-05-01T12:00:00Z"}`
	addressJSON     = `{"name":"Ada","line1":"1 Main St","city":"London","postal_code":"SW1","country":"GB"}`
	deadLetterJSON  = `{"service":"products","subscriber":"publications","seq":42,"event_id":"01HZX3M5Q8R6Y2T4V7W9K1N3P5","topic":"product.deleted","attempts":10,"last_error":"refused","failed_at":"2024-05-01T12:00:00Z","payload":{"product_id":"p1"}}`
	imageJSON       = `{"id":"i1","owner_type":"product","owner_id":"p1","uploader_id":"u1","content_type":"image/png","bytes":1024,"width":64,"height":48,"sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","created_at":"2024-05-01T12:00:00Z","url":"/v1/images/i1","thumbnail_url":"/v1/images/i1/thumbnail"}`
)

// Notification samples for TestSchemasAcceptAndReject.
const (
	notificationJSON           = `{"id":"ntf_9f86d081884c7d659a2feaa0","channel":"email","template":"welcome","status":"queued","attempts":0,"created_at":"2024-05-01T12:00:00Z","sent_at":null}`
	notificationDeadLetterJSON = `{"id":"ntf_9f86d081884c7d659a2feaa0","channel":"push","template":"order_paid_buyer","status":"failed","attempts":5,"created_at":"2024-05-01T12:00:00Z","sent_at":null,"order_id":"o1","user_id":"u1","event_id":"01HZX3M5Q8R6Y2T4V7W9K1N3P5","topic":"order.paid","provider":"sendgrid","last_error":"refused","failed_at":"2024-05-01T12:05:00Z"}`
)

// attrs returns a JSON object of n string attributes.
func attrs(n int) string {
	m := map[string]string{}
	for i := range n {
		m["k"+strconv.Itoa(i)] = "v"
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func schema(doc *openapi3.T, name string) *openapi3.Schema {
	return doc.Components.Schemas[name].Value
}

// formSchema returns the multipart request body schema of POST /v1/images.
func formSchema(t *testing.T, doc *openapi3.T) *openapi3.Schema {
	t.Helper()
	return doc.Paths.Find("/v1/images").Post.RequestBody.Value.Content.Get("multipart/form-data").Schema.Value
}

// response returns the schema of an operation's JSON response with the given code.
func response(t *testing.T, doc *openapi3.T, method, path string, code int) *openapi3.Schema {
	t.Helper()
	resp := doc.Paths.Find(path).GetOperation(method).Responses.Status(code)
	if resp == nil {
		t.Fatalf("%s %s: no %d response", method, path, code)
	}
	mt := resp.Value.Content.Get("application/json")
	if mt == nil || mt.Schema == nil {
		t.Fatalf("%s %s: %d has no application/json schema", method, path, code)
	}
	return mt.Schema.Value
}

func TestAggregatedReads(t *testing.T) {
	doc := loadDoc(t)
	for _, route := range aggregated {
		t.Run(route, func(t *testing.T) {
			method, path, _ := strings.Cut(route, " ")
			op := doc.Paths.Find(path).GetOperation(method)
			for _, word := range []string{"partial", "unavailable", "503", "core part", "optional part"} {
				if !strings.Contains(op.Description, word) {
					t.Errorf("description does not mention %q", word)
				}
			}
			if op.Responses.Status(503) == nil {
				t.Error("no 503 response")
			}
			s := response(t, doc, method, path, 200)
			for _, f := range []string{"partial", "unavailable"} {
				if !slices.Contains(s.Required, f) {
					t.Errorf("200 schema does not require %q", f)
				}
			}
			if p := s.Properties["partial"]; p == nil || !p.Value.Type.Is("boolean") {
				t.Error("partial is not a boolean")
			}
			u := s.Properties["unavailable"]
			if u == nil || !u.Value.Type.Is("array") || u.Value.Items == nil || len(u.Value.Items.Value.Enum) == 0 {
				t.Error("unavailable is not an array of part names")
			}
		})
	}
}

// TestUploadFieldOrder checks that the form lists owner_type and owner_id
// before file: the api refuses a file that comes first, and Swagger UI sends
// the fields in the order the schema lists them.
func TestUploadFieldOrder(t *testing.T) {
	var raw struct {
		Components struct {
			Schemas map[string]struct {
				Properties json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(Document(), &raw); err != nil {
		t.Fatal(err)
	}
	keys, err := objectKeys(raw.Components.Schemas["UploadImageRequest"].Properties)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"owner_type", "owner_id", "file"}; !slices.Equal(keys, want) {
		t.Errorf("form fields in order %v, want %v", keys, want)
	}
	doc := loadDoc(t)
	s := formSchema(t, doc)
	if f := s.Properties["file"]; f == nil || !f.Value.Type.Is("string") || f.Value.Format != "binary" {
		t.Error("file is not a binary string")
	}
	enc := doc.Paths.Find("/v1/images").Post.RequestBody.Value.Content.Get("multipart/form-data").Encoding["file"]
	if enc == nil || !strings.Contains(enc.ContentType, "image/webp") {
		t.Error("file encoding does not list the image types")
	}
	// The api ignores the part's Content-Type (the images service detects
	// the type from the bytes), and clients send application/octet-stream
	// for a file whose extension they do not know.
	if enc == nil || !strings.Contains(enc.ContentType, "application/octet-stream") {
		t.Error("file encoding does not accept application/octet-stream")
	}
}

// objectKeys returns the keys of a JSON object in document order.
func objectKeys(obj json.RawMessage) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object: %s", obj)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

func TestImageDownloads(t *testing.T) {
	doc := loadDoc(t)
	for path, types := range map[string][]string{
		"/v1/images/{id}":           {"image/gif", "image/jpeg", "image/png", "image/webp"},
		"/v1/images/{id}/thumbnail": {"image/jpeg", "image/png"},
	} {
		t.Run(path, func(t *testing.T) {
			op := doc.Paths.Find(path).Get
			var inm bool
			for _, p := range op.Parameters {
				if p.Value.In == "header" && p.Value.Name == "If-None-Match" {
					inm = true
				}
			}
			if !inm {
				t.Error("no If-None-Match header parameter")
			}
			ok := op.Responses.Status(200).Value
			var got []string
			for ct, mt := range ok.Content {
				got = append(got, ct)
				if mt.Schema == nil || !mt.Schema.Value.Type.Is("string") || mt.Schema.Value.Format != "binary" {
					t.Errorf("%s is not a binary string", ct)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, types) {
				t.Errorf("200 content types = %v, want %v", got, types)
			}
			for _, h := range []string{"ETag", "Cache-Control", "Content-Length"} {
				if ok.Headers[h] == nil {
					t.Errorf("200 lacks the %s header", h)
				}
			}
			cc := ok.Headers["Cache-Control"]
			if cc == nil || !slices.Contains(cc.Value.Schema.Value.Enum, any("public, max-age=31536000, immutable")) {
				t.Error("Cache-Control is not public, max-age=31536000, immutable")
			}
			nm := op.Responses.Status(304).Value
			if len(nm.Content) != 0 || nm.Headers["ETag"] == nil {
				t.Error("304 must have an ETag and no body")
			}
		})
	}
}

// TestBuyingHeaders checks the Idempotency-Key parameter on exactly the
// writes that accept it, and the webhook's required X-Signature.
func TestBuyingHeaders(t *testing.T) {
	doc := loadDoc(t)
	headers := func(op *openapi3.Operation) map[string]*openapi3.Parameter {
		out := map[string]*openapi3.Parameter{}
		for _, p := range op.Parameters {
			if p.Value.In == "header" {
				out[p.Value.Name] = p.Value
			}
		}
		return out
	}
	for _, r := range routes {
		key := r.method + " " + r.path
		op := doc.Paths.Find(r.path).GetOperation(r.method)
		h := headers(op)["Idempotency-Key"]
		if want := slices.Contains(idempotent, key); (h != nil) != want {
			t.Errorf("%s: Idempotency-Key parameter = %v, want %v", key, h != nil, want)
			continue
		}
		if h == nil {
			continue
		}
		s := h.Schema.Value
		if h.Required || s.MinLength != 1 || s.MaxLength == nil || *s.MaxLength != 255 || s.Pattern == "" {
			t.Errorf("%s: Idempotency-Key must be optional, 1..255 characters with a pattern", key)
		}
		for _, k := range []string{"abc-123", " ~", strings.Repeat("k", 255)} {
			if err := s.VisitJSON(k); err != nil {
				t.Errorf("%s: Idempotency-Key schema rejects %q: %v", key, k, err)
			}
		}
		for _, k := range []string{"", "é", "a\tb", strings.Repeat("k", 256)} {
			if s.VisitJSON(k) == nil {
				t.Errorf("%s: Idempotency-Key schema accepts %q", key, k)
			}
		}
		if op.Responses.Status(400) == nil || !strings.Contains(*op.Responses.Status(400).Value.Description, "Idempotency-Key") {
			t.Errorf("%s: the 400 response does not mention Idempotency-Key", key)
		}
	}
	sig := headers(doc.Paths.Find("/v1/payments/webhook").Post)["X-Signature"]
	if sig == nil || !sig.Required {
		t.Error("POST /v1/payments/webhook: no required X-Signature header parameter")
	}
}

// TestOrderFailures checks that every failure reason and idempotency code of
// the orders contract is an error code, and that the placing routes document
// failed orders with their order_id.
func TestOrderFailures(t *testing.T) {
	doc := loadDoc(t)
	enum := schema(doc, "ErrorCode").Enum
	for _, c := range []string{ordersrpc.ReasonOutOfStock, ordersrpc.ReasonPaymentDeclined, ordersrpc.ReasonPaymentError,
		ordersrpc.ReasonPublicationUnavailable, ordersrpc.ReasonMixedCurrency, ordersrpc.ReasonReservationExpired,
		ordersrpc.CodeIdempotencyKeyReused, ordersrpc.CodeRequestInProgress} {
		if !slices.Contains(enum, any(c)) {
			t.Errorf("ErrorCode lacks %q", c)
		}
	}
	if p := schema(doc, "Error").Properties["error"].Value.Properties["order_id"]; p == nil || !p.Value.Type.Is("string") {
		t.Error("the error document has no order_id string")
	}
	for _, path := range []string{"/v1/orders", "/v1/cart/checkout"} {
		op := doc.Paths.Find(path).Post
		for _, code := range []int{402, 409, 422, 502} {
			ex, _ := op.Responses.Status(code).Value.Content.Get("application/json").Example.(map[string]any)
			e, _ := ex["error"].(map[string]any)
			if e["order_id"] == nil {
				t.Errorf("POST %s: the %d example carries no order_id", path, code)
			}
			if err := schema(doc, "Error").VisitJSON(ex); err != nil {
				t.Errorf("POST %s: the %d example is not an Error: %v", path, code, err)
			}
		}
		if op.Responses.Status(202).Value.Headers["Location"] == nil {
			t.Errorf("POST %s: 202 has no Location header", path)
		}
	}
}

// TestNotificationCodes checks that the notifications contract's error IDs
// are error codes, each with a response that shows it.
func TestNotificationCodes(t *testing.T) {
	doc := loadDoc(t)
	enum := schema(doc, "ErrorCode").Enum
	op := doc.Paths.Find("/v1/admin/notifications/dead-letters/{id}/retry").Post
	for code, name := range map[int]string{404: notificationsrpc.CodeNotificationNotFound, 409: notificationsrpc.CodeNotDead} {
		if !slices.Contains(enum, any(name)) {
			t.Errorf("ErrorCode lacks %q", name)
		}
		ex, _ := op.Responses.Status(code).Value.Content.Get("application/json").Example.(map[string]any)
		if e, _ := ex["error"].(map[string]any); e["code"] != name {
			t.Errorf("retry: the %d example's code is %v, want %s", code, e["code"], name)
		}
		if err := schema(doc, "Error").VisitJSON(ex); err != nil {
			t.Errorf("retry: the %d example is not an Error: %v", code, err)
		}
	}
	id := doc.Components.Parameters["NotificationId"].Value.Schema.Value
	for _, v := range []string{"ntf_0123456789abcdef01234567"} {
		if err := id.VisitJSON(v); err != nil {
			t.Errorf("NotificationId rejects %q: %v", v, err)
		}
	}
	for _, v := range []string{"ntf_0123456789ABCDEF01234567", "ntf_0123", "01HZX3M5Q8R6Y2T4V7W9K1N3P5", "ntf_0123456789abcdef012345678"} {
		if id.VisitJSON(v) == nil {
			t.Errorf("NotificationId accepts %q", v)
		}
	}
}

func TestCreatedResourcesHaveLocation(t *testing.T) {
	doc := loadDoc(t)
	for _, path := range []string{"/v1/products", "/v1/publications", "/v1/images", "/v1/orders", "/v1/cart/checkout"} {
		if doc.Paths.Find(path).Post.Responses.Status(201).Value.Headers["Location"] == nil {
			t.Errorf("POST %s: 201 has no Location header", path)
		}
	}
}

// TestSchemasMatchGoTypes encodes the services' contract types and checks
// the document's schemas accept them, so a renamed or retyped field fails.
func TestSchemasMatchGoTypes(t *testing.T) {
	doc := loadDoc(t)
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	price := money.Money{Amount: 1999, Currency: "USD"}
	product := productsrpc.Product{ID: "p1", Name: "Pixel 8", Category: "electronics/phones", Brand: "Google",
		Attributes: map[string]string{"color": "black"}, CreatorID: "u1", ViewCount: 3,
		LowestPrices: []money.Money{price}, CreatedAt: at, UpdatedAt: at}
	publication := publicationsrpc.Publication{ID: "pub1", SellerID: "u1", ProductID: "p1", Title: "T", Price: price,
		Quantity: 2, Reserved: 1, Condition: publicationsrpc.ConditionUsed, Status: publicationsrpc.StatusPaused, CreatedAt: at, UpdatedAt: at}
	image := imagesrpc.Image{ID: "i1", OwnerType: imagesrpc.OwnerPublication, OwnerID: "pub1", UploaderID: "u1",
		ContentType: "image/webp", Bytes: 2048, Width: 640, Height: 480, SHA256: strings.Repeat("ab", 32), CreatedAt: at}
	view := struct {
		imagesrpc.Image
		URL          string `json:"url"`
		ThumbnailURL string `json:"thumbnail_url"`
	}{image, "/v1/images/i1", "/v1/images/i1/thumbnail"}
	leaf := productsrpc.Category{Name: "phones", Path: "electronics/phones", Count: 1, Children: []productsrpc.Category{}}
	tree := productsrpc.CategoriesResponse{Categories: []productsrpc.Category{{Name: "electronics", Path: "electronics", Count: 1, Children: []productsrpc.Category{leaf}}}}
	profile := usersrpc.PublicProfile{ID: "u1", Name: "Ada", MemberSince: at}
	address := ordersrpc.Address{Name: "Ada", Line1: "1 Main St", City: "London", PostalCode: "SW1", Country: "GB"}
	line := ordersrpc.Line{PublicationID: "pub1", ProductID: "p1", SellerID: "u2", Title: "T", Quantity: 2, UnitPrice: price, Subtotal: money.Money{Amount: 3998, Currency: "USD"}}
	order := ordersrpc.Order{ID: "o1", BuyerID: "u1", Status: ordersrpc.StatusPaid, Lines: []ordersrpc.Line{line}, Total: line.Subtotal,
		Payment:   &ordersrpc.Payment{Provider: "sandbox", ChargeID: "ch_1", Status: ordersrpc.PaymentSucceeded, Amount: line.Subtotal},
		Shipments: []ordersrpc.Shipment{{SellerID: "u2", Status: ordersrpc.ShipmentShipped, ShippedAt: &at}}, ShippingAddress: address,
		FromCart: true, CreatedAt: at, UpdatedAt: at, PaidAt: &at}
	failed := ordersrpc.Order{ID: "o2", BuyerID: "u1", Status: ordersrpc.StatusFailed, FailureReason: ordersrpc.ReasonMixedCurrency,
		FailureMessage: "m", Lines: []ordersrpc.Line{}, Shipments: []ordersrpc.Shipment{}, ShippingAddress: address, CreatedAt: at, UpdatedAt: at}
	// A line whose stock was never reserved keeps zero prices without a
	// currency, as do the lines of an order that failed before reserving.
	unreserved := ordersrpc.Line{PublicationID: "pub2", Quantity: 4}
	outOfStock := ordersrpc.Order{ID: "o3", BuyerID: "u1", Status: ordersrpc.StatusFailed, FailureReason: ordersrpc.ReasonOutOfStock,
		FailureMessage: "publication pub2 is out of stock: 3 available", Lines: []ordersrpc.Line{unreserved, unreserved},
		Payment:   &ordersrpc.Payment{Status: ordersrpc.PaymentPending},
		Shipments: []ordersrpc.Shipment{}, ShippingAddress: address, CreatedAt: at, UpdatedAt: at}
	interrupted := outOfStock
	interrupted.ID, interrupted.FailureReason, interrupted.FailureMessage = "o4", ordersrpc.ReasonServiceUnavailable, "nothing was charged"
	unreservedView := struct {
		ordersrpc.Line
		Image any `json:"image"`
	}{unreserved, view}
	payment := ordersrpc.PaymentMethod{Method: "card", CardToken: "tok_visa"}
	queued := notificationsrpc.Notification{ID: "ntf_0123456789abcdef01234567", Channel: notificationsrpc.ChannelEmail,
		Template: notificationsrpc.TemplateWelcome, Status: notificationsrpc.StatusQueued, CreatedAt: at}
	sent := notificationsrpc.Notification{ID: "ntf_89abcdef0123456789abcdef", Channel: notificationsrpc.ChannelPush,
		Template: notificationsrpc.TemplateOrderCancelledSeller, Status: notificationsrpc.StatusSent, Attempts: 2, CreatedAt: at, SentAt: &at, OrderID: "o1"}

	for _, c := range []struct {
		schema string
		value  any
	}{
		{"Money", price},
		{"Product", product},
		{"ProductList", productsrpc.SearchResponse{Items: []productsrpc.Product{product}, NextPageToken: "n"}},
		{"CategoryTree", tree},
		{"Publication", publication},
		{"PublicationList", publicationsrpc.SearchResponse{Items: []publicationsrpc.Publication{publication}}},
		{"ImageView", view},
		{"PublicProfile", profile},
		{"RefreshRequest", usersrpc.RefreshRequest{RefreshToken: "rt"}},
		{"ProductPage", map[string]any{"product": product, "images": []any{view}, "publications": []any{publication}, "partial": false, "unavailable": []string{}}},
		{"PublicationPage", map[string]any{"publication": publication, "product": product, "images": []any{}, "seller": profile, "partial": false, "unavailable": []string{}}},
		{"CreateProductRequest", productsrpc.CreateRequest{Name: "P", Category: "phones", Attributes: map[string]string{}}},
		{"CreatePublicationRequest", publicationsrpc.CreateRequest{ProductID: "p1", Title: "T", Price: price, Quantity: 1, Condition: "new"}},
		{"Order", order},
		{"Order", failed},
		{"OrderList", ordersrpc.ListResponse{Items: []ordersrpc.Order{order, failed}, NextPageToken: "n"}},
		{"OrderLine", unreserved},
		{"OrderLineView", unreservedView},
		{"Order", outOfStock},
		{"Order", interrupted},
		{"OrderList", ordersrpc.ListResponse{Items: []ordersrpc.Order{outOfStock, order, interrupted}}},
		{"OrderPage", map[string]any{"id": "o3", "buyer_id": "u1", "status": "failed", "failure_reason": ordersrpc.ReasonOutOfStock,
			"failure_message": "m", "items": []any{unreservedView, unreserved}, "total": outOfStock.Total,
			"payment": outOfStock.Payment, "shipments": []any{}, "shipping_address": address,
			"created_at": at, "updated_at": at, "notifications": []any{}, "partial": false, "unavailable": []string{}}},
		{"OrderPage", map[string]any{"id": "o1", "buyer_id": "u1", "status": "pending", "items": []any{map[string]any{"publication_id": "pub1", "quantity": 1,
			"unit_price": price, "subtotal": price, "image": view}}, "total": price, "shipments": []any{}, "shipping_address": address,
			"created_at": at, "updated_at": at, "notifications": []any{}, "partial": true, "unavailable": []string{"images"}}},
		{"CreateOrderRequest", ordersrpc.CreateRequest{Items: []ordersrpc.Item{{PublicationID: "pub1", Quantity: 2}}, Payment: payment, ShippingAddress: address}},
		{"CheckoutRequest", ordersrpc.CheckoutRequest{Payment: payment, ShippingAddress: address}},
		{"SetCartItemRequest", ordersrpc.SetCartItemRequest{PublicationID: "pub1", Quantity: 0}},
		{"Cart", map[string]any{"items": []any{
			map[string]any{"publication_id": "pub1", "quantity": 2, "added_at": at, "available": true, "title": "T", "price": price,
				"seller_id": "u2", "status": "active", "quantity_available": 3, "image": view},
			map[string]any{"publication_id": "pub2", "quantity": 1, "added_at": at, "available": false, "reason": "gone"}},
			"subtotals": []any{money.Money{Amount: 3998, Currency: "USD"}}, "partial": false, "unavailable": []string{}}},
		{"WebhookAck", map[string]any{"received": true, "event_id": "evt_1", "duplicate": false}},
		{"Notification", queued},
		{"Notification", sent},
		{"NotificationPage", notificationsrpc.Page{Items: []notificationsrpc.Notification{sent, queued}, NextPageToken: "n"}},
		{"OrderPage", map[string]any{"id": "o1", "buyer_id": "u1", "status": "paid", "items": []any{}, "total": price, "shipments": []any{},
			"shipping_address": address, "created_at": at, "updated_at": at, "notifications": []any{sent},
			"partial": true, "unavailable": []string{"images"}}},
	} {
		t.Run(c.schema, func(t *testing.T) {
			b, err := json.Marshal(c.value)
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			if err := schema(doc, c.schema).VisitJSON(v); err != nil {
				t.Errorf("%s rejects %s: %v", c.schema, b, err)
			}
		})
	}
}

func get(t *testing.T, h http.Handler, path string) (*http.Response, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	res := rec.Result()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, b
}

func TestHandlerServesDocument(t *testing.T) {
	res, b := get(t, Handler(), "/openapi.json")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", res.StatusCode)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q", ct)
	}
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("body is not JSON: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0.") {
		t.Errorf("openapi = %q, want 3.0.x", doc.OpenAPI)
	}
	if len(doc.Paths) != len(Paths()) {
		t.Errorf("served %d paths, Paths() has %d", len(doc.Paths), len(Paths()))
	}
}

var assetRE = regexp.MustCompile(`(?:src|href)="([^"]+)"`)

func TestHandlerServesSwaggerUI(t *testing.T) {
	h := Handler()
	for _, page := range []string{"/docs", "/docs/"} {
		t.Run(page, func(t *testing.T) {
			res, b := get(t, h, page)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status = %d", res.StatusCode)
			}
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
				t.Errorf("Content-Type = %q", ct)
			}
			html := string(b)
			if !strings.Contains(html, "<html") || !strings.Contains(html, `id="swagger-ui"`) {
				t.Error("not the Swagger UI page")
			}
			if !strings.Contains(html, `"/openapi.json"`) {
				t.Error("page does not reference /openapi.json")
			}
			var js, css int
			for _, m := range assetRE.FindAllStringSubmatch(html, -1) {
				u := m[1]
				if strings.Contains(u, "//") {
					t.Errorf("asset %s is not served locally", u)
					continue
				}
				res, b := get(t, h, u)
				if res.StatusCode != http.StatusOK || len(b) == 0 {
					t.Errorf("GET %s = %d, %d bytes", u, res.StatusCode, len(b))
					continue
				}
				ct := res.Header.Get("Content-Type")
				switch {
				case strings.HasSuffix(u, ".js"):
					js++
					if !strings.HasPrefix(ct, "text/javascript") {
						t.Errorf("GET %s: Content-Type = %q", u, ct)
					}
				case strings.HasSuffix(u, ".css"):
					css++
					if !strings.HasPrefix(ct, "text/css") {
						t.Errorf("GET %s: Content-Type = %q", u, ct)
					}
				}
			}
			if js < 3 || css < 1 {
				t.Errorf("page references %d scripts and %d stylesheets, want >= 3 and >= 1", js, css)
			}
		})
	}
}

func TestSwaggerInitializerUsesDocument(t *testing.T) {
	res, b := get(t, Handler(), "/docs/swagger-initializer.js")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", res.StatusCode)
	}
	js := string(b)
	if strings.Contains(js, "petstore") || !strings.Contains(js, `"/openapi.json"`) {
		t.Errorf("initializer does not load /openapi.json:\n%s", js)
	}
	if !strings.Contains(js, "validatorUrl: null") {
		t.Error("initializer must disable the online validator badge")
	}
}

func TestHandlerUnknownAssetIsJSONError(t *testing.T) {
	for _, p := range []string{"/docs/nope.js", "/docs/index.html"} {
		rec := httptest.NewRecorder()
		rec.Header().Set("X-Request-Id", "req-1")
		Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		if rec.Code != http.StatusNotFound {
			t.Fatalf("GET %s = %d, want 404", p, rec.Code)
		}
		var raw map[string]map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
			t.Fatalf("GET %s: body is not JSON: %v", p, err)
		}
		if raw["error"]["code"] != "not_found" || raw["error"]["request_id"] != "req-1" || raw["error"]["message"] == "" {
			t.Errorf("GET %s: body = %s", p, rec.Body)
		}
	}
}

func TestSwaggerUIPagesCarryAStrictPolicy(t *testing.T) {
	h := Handler("http://127.0.0.1:8080", "bad origin;script-src *")
	for _, p := range []string{"/docs", "/docs/", "/docs/swagger-ui-bundle.js", "/docs/nope.js"} {
		res, _ := get(t, h, p)
		csp := res.Header.Get("Content-Security-Policy")
		if csp != ContentSecurityPolicy("http://127.0.0.1:8080") {
			t.Errorf("GET %s: Content-Security-Policy = %q", p, csp)
		}
		if res.Header.Get("X-Frame-Options") != "DENY" || res.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: X-Frame-Options %q, Referrer-Policy %q", p, res.Header.Get("X-Frame-Options"), res.Header.Get("Referrer-Policy"))
		}
	}
	csp := ContentSecurityPolicy("http://127.0.0.1:8080")
	for _, want := range []string{"default-src 'none'", "script-src 'self';", "style-src 'self';", "img-src 'self' data: blob:;",
		"connect-src 'self' http://127.0.0.1:8080;", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("policy %q lacks %q", csp, want)
		}
	}
	// The policy allows no inline code: the pages must have none.
	for _, p := range []string{"/docs", "/docs/"} {
		_, b := get(t, h, p)
		if regexp.MustCompile(`<script>|<script [^>]*>[^<]|<style|\sstyle=|\son[a-z]+=`).Match(b) {
			t.Errorf("GET %s has inline script or style:\n%s", p, b)
		}
	}
	// The document itself is not a page: no policy needed.
	if res, _ := get(t, h, "/openapi.json"); res.Header.Get("Content-Security-Policy") != "" {
		t.Error("/openapi.json carries the UI's policy")
	}
}
