package openapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
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
	if len(doc.Servers) == 0 || doc.Servers[0].URL != "http://localhost:8080" {
		t.Errorf("servers = %v, want http://localhost:8080 first", doc.Servers)
	}
	for _, name := range []string{
		"Error", "User", "PublicProfile", "LoginResponse", "WishlistItem", "BankAccount",
		"Device", "NotificationPreferences", "WishlistItemList", "BankAccountList", "DeviceList",
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

// routes is the API's specification, from which the document must not drift.
var routes = []route{
	{"POST", "/v1/auth/register", false, codes([]int{201, 409, 429}, body, failures)},
	{"POST", "/v1/auth/login", false, codes([]int{200, 401, 429}, body, failures)},
	{"GET", "/v1/users/me", true, codes([]int{200, 401}, failures)},
	{"PATCH", "/v1/users/me", true, codes([]int{200, 401}, body, failures)},
	{"GET", "/v1/users/{id}", false, codes([]int{200, 404}, failures)},
	{"GET", "/v1/users/me/wishlist", true, codes([]int{200, 400, 401}, failures)},
	{"POST", "/v1/users/me/wishlist", true, codes([]int{200, 201, 401}, body, failures)},
	{"DELETE", "/v1/users/me/wishlist/{publication_id}", true, codes([]int{204, 401, 404}, failures)},
	{"GET", "/v1/users/me/bank-accounts", true, codes([]int{200, 400, 401}, failures)},
	{"POST", "/v1/users/me/bank-accounts", true, codes([]int{201, 401}, body, failures)},
	{"DELETE", "/v1/users/me/bank-accounts/{id}", true, codes([]int{204, 401, 404}, failures)},
	{"GET", "/v1/users/me/devices", true, codes([]int{200, 401}, failures)},
	{"POST", "/v1/users/me/devices", true, codes([]int{200, 201, 401}, body, failures)},
	{"DELETE", "/v1/users/me/devices/{token}", true, codes([]int{204, 401, 404}, failures)},
	{"GET", "/v1/users/me/notification-preferences", true, codes([]int{200, 401}, failures)},
	{"PUT", "/v1/users/me/notification-preferences", true, codes([]int{200, 401}, body, failures)},
	{"GET", "/healthz", false, []int{200}},
	{"GET", "/readyz", false, []int{200, 503}},
	{"GET", "/metrics", false, []int{200}},
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
				isErr := n >= 400 && !(r.path == "/readyz" && n == 503)
				if isErr && !usesError(resp.Value) {
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
			// The health, metrics and docs routes have no client errors.
			if strings.HasPrefix(r.path, "/v1/") && !fourXX {
				t.Error("no 4xx response using the Error schema")
			}

			if slices.Contains(r.codes, 422) {
				checkRequestBody(t, op)
			} else if op.RequestBody != nil {
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

func checkRequestBody(t *testing.T, op *openapi3.Operation) {
	t.Helper()
	if op.RequestBody == nil || !op.RequestBody.Value.Required {
		t.Fatal("request body missing or not required")
	}
	mt := op.RequestBody.Value.Content.Get("application/json")
	if mt == nil || mt.Schema == nil {
		t.Fatal("request body has no application/json schema")
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
		{"patch me empty", requestSchema(t, doc, "PATCH", "/v1/users/me"), `{}`, true},
		{"patch me clear phone", requestSchema(t, doc, "PATCH", "/v1/users/me"), `{"phone":""}`, true},
		{"patch me phone", requestSchema(t, doc, "PATCH", "/v1/users/me"), `{"phone":"+4915112345678"}`, true},
		{"patch me phone no plus", requestSchema(t, doc, "PATCH", "/v1/users/me"), `{"phone":"4915112345678"}`, false},
		{"patch me phone short", requestSchema(t, doc, "PATCH", "/v1/users/me"), `{"phone":"+123456"}`, false},
		{"patch me email", requestSchema(t, doc, "PATCH", "/v1/users/me"), `{"email":"a@example.com"}`, false},
		{"wishlist ok", requestSchema(t, doc, "POST", "/v1/users/me/wishlist"), `{"publication_id":"01HZX3M5Q8R6Y2T4V7W9K1N3P5"}`, true},
		{"wishlist missing", requestSchema(t, doc, "POST", "/v1/users/me/wishlist"), `{}`, false},
		{"bank ok", requestSchema(t, doc, "POST", "/v1/users/me/bank-accounts"), `{"holder":"A","bank":"B","account_number":"1234-5678 90","currency":"EUR"}`, true},
		{"an IBAN with letters is accepted", requestSchema(t, doc, "POST", "/v1/users/me/bank-accounts"), `{"holder":"A","bank":"B","account_number":"DE89 3704 0044 0532 0130 00","currency":"EUR"}`, true},
		{"punctuation in the account number is refused", requestSchema(t, doc, "POST", "/v1/users/me/bank-accounts"), `{"holder":"A","bank":"B","account_number":"1234.5678","currency":"EUR"}`, false},
		{"bank short", requestSchema(t, doc, "POST", "/v1/users/me/bank-accounts"), `{"holder":"A","bank":"B","account_number":"12345","currency":"EUR"}`, false},
		{"bank currency", requestSchema(t, doc, "POST", "/v1/users/me/bank-accounts"), `{"holder":"A","bank":"B","account_number":"123456","currency":"eur"}`, false},
		{"device ok", requestSchema(t, doc, "POST", "/v1/users/me/devices"), `{"token":"t","platform":"android"}`, true},
		{"device platform", requestSchema(t, doc, "POST", "/v1/users/me/devices"), `{"token":"t","platform":"windows"}`, false},
		{"device empty token", requestSchema(t, doc, "POST", "/v1/users/me/devices"), `{"token":"","platform":"web"}`, false},
		{"prefs ok", requestSchema(t, doc, "PUT", "/v1/users/me/notification-preferences"), `{"email":true,"push":false}`, true},
		{"prefs partial", requestSchema(t, doc, "PUT", "/v1/users/me/notification-preferences"), `{"email":true}`, false},
		{"error ok", errSchema, `{"error":{"code":"not_found","message":"m","request_id":"r"}}`, true},
		{"error bad code", errSchema, `{"error":{"code":"teapot","message":"m","request_id":"r"}}`, false},
		{"error flat", errSchema, `{"code":"not_found","message":"m","request_id":"r"}`, false},
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
