package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/marketmesh/marketmesh/api/internal/server"
)

const maxBody = 512

func TestBadInputIsA4xxNamingTheProblem(t *testing.T) {
	ta := newTestAPI(t, func(o *server.Options) { o.MaxBody = maxBody })
	tok := ta.token(t, "01HCALLER")
	const validRegister = `{"email":"ada@example.com","password":"password123","name":"Ada"}`
	noCT := map[string]string{"Content-Type": ""}
	tests := []struct {
		name    string
		r       req
		status  int
		code    string
		mention string // the message must contain this
	}{
		// Body decoding, on register.
		{"malformed JSON is 400", req{method: "POST", path: "/v1/auth/register", body: `{"email":`}, 400, "bad_request", "malformed JSON"},
		{"a syntax error is 400 with its offset", req{method: "POST", path: "/v1/auth/register", body: `{"email" "ada@example.com"}`}, 400, "bad_request", "byte"},
		{"trailing garbage is 400", req{method: "POST", path: "/v1/auth/register", body: validRegister + ` trailing`}, 400, "bad_request", "single JSON object"},
		{"a second object is 400", req{method: "POST", path: "/v1/auth/register", body: validRegister + validRegister}, 400, "bad_request", "single JSON object"},
		{"a JSON array is 400", req{method: "POST", path: "/v1/auth/register", body: `[` + validRegister + `]`}, 400, "bad_request", "JSON object"},
		{"a JSON string is 400", req{method: "POST", path: "/v1/auth/register", body: `"ada@example.com"`}, 400, "bad_request", "JSON object"},
		{"an unknown field is 400 naming it", req{method: "POST", path: "/v1/auth/register", body: `{"email":"ada@example.com","password":"password123","name":"Ada","is_admin":true}`}, 400, "bad_request", "is_admin"},
		{"a number for a string is 400 naming the field", req{method: "POST", path: "/v1/auth/register", body: `{"email":42,"password":"password123","name":"Ada"}`}, 400, "bad_request", `"email"`},
		{"an object for a string is 400 naming the field", req{method: "POST", path: "/v1/auth/register", body: `{"email":"ada@example.com","password":"password123","name":{"first":"Ada"}}`}, 400, "bad_request", `"name"`},
		{"an empty body is 400", req{method: "POST", path: "/v1/auth/register", header: map[string]string{"Content-Type": "application/json"}}, 400, "bad_request", "empty"},
		{"a blank body is 400", req{method: "POST", path: "/v1/auth/register", body: " \n "}, 400, "bad_request", "empty"},
		{"a missing Content-Type is 415", req{method: "POST", path: "/v1/auth/register", body: validRegister, header: noCT}, 415, "unsupported_media_type", "application/json"},
		{"text/plain is 415", req{method: "POST", path: "/v1/auth/register", body: validRegister, header: map[string]string{"Content-Type": "text/plain"}}, 415, "unsupported_media_type", "application/json"},
		{"a form is 415", req{method: "POST", path: "/v1/auth/register", body: "email=a", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 415, "unsupported_media_type", "application/json"},
		{"a garbled Content-Type is 415", req{method: "POST", path: "/v1/auth/register", body: validRegister, header: map[string]string{"Content-Type": "application/json; ;="}}, 415, "unsupported_media_type", "application/json"},
		{"an oversize body is 413", req{method: "POST", path: "/v1/auth/register", body: `{"email":"ada@example.com","password":"password123","name":"` + strings.Repeat("a", maxBody) + `"}`}, 413, "payload_too_large", "512"},
		{"an object padded past the limit is 413", req{method: "POST", path: "/v1/auth/register", body: validRegister + strings.Repeat(" ", maxBody)}, 413, "payload_too_large", "512"},
		{"a missing email is 422", req{method: "POST", path: "/v1/auth/register", body: `{"password":"password123","name":"Ada"}`}, 422, "unprocessable_entity", "email"},
		{"a blank email is 422", req{method: "POST", path: "/v1/auth/register", body: `{"email":"  ","password":"password123","name":"Ada"}`}, 422, "unprocessable_entity", "email"},
		{"a missing password is 422", req{method: "POST", path: "/v1/auth/register", body: `{"email":"ada@example.com","name":"Ada"}`}, 422, "unprocessable_entity", "password"},
		{"a missing name is 422", req{method: "POST", path: "/v1/auth/register", body: `{"email":"ada@example.com","password":"password123"}`}, 422, "unprocessable_entity", "name"},
		{"JSON null is 422 for the first required field", req{method: "POST", path: "/v1/auth/register", body: `null`}, 422, "unprocessable_entity", "email"},
		{"application/json with a charset is accepted", req{method: "POST", path: "/v1/auth/register", body: `{}`, header: map[string]string{"Content-Type": "application/json; charset=utf-8"}}, 422, "unprocessable_entity", "email"},
		{"the utf-8 charset is case-insensitive", req{method: "POST", path: "/v1/auth/register", body: `{}`, header: map[string]string{"Content-Type": "application/json; charset=UTF-8"}}, 422, "unprocessable_entity", "email"},
		{"a utf-16 charset is 415 naming it", req{method: "POST", path: "/v1/auth/register", body: validRegister, header: map[string]string{"Content-Type": "application/json; charset=utf-16"}}, 415, "unsupported_media_type", `"utf-16"`},
		{"a latin-1 charset is 415 naming it", req{method: "POST", path: "/v1/auth/register", body: validRegister, header: map[string]string{"Content-Type": "application/json; charset=ISO-8859-1"}}, 415, "unsupported_media_type", "ISO-8859-1"},
		{"an empty charset is 415", req{method: "POST", path: "/v1/auth/register", body: validRegister, header: map[string]string{"Content-Type": `application/json; charset=""`}}, 415, "unsupported_media_type", "charset"},
		{"a charset on another write is 415 too", req{method: "PATCH", path: "/v1/users/me", body: `{"name":"Ada"}`, bearer: tok, header: map[string]string{"Content-Type": "application/json; charset=utf-16le"}}, 415, "unsupported_media_type", "utf-16le"},

		// Login decodes the same way.
		{"login with an unknown field is 400", req{method: "POST", path: "/v1/auth/login", body: `{"email":"a@b.co","password":"x","otp":"1"}`}, 400, "bad_request", "otp"},
		{"login without a password is 422", req{method: "POST", path: "/v1/auth/login", body: `{"email":"a@b.co"}`}, 422, "unprocessable_entity", "password"},

		// PATCH /v1/users/me.
		{"an empty update is 422", req{method: "PATCH", path: "/v1/users/me", body: `{}`, bearer: tok}, 422, "unprocessable_entity", "name"},
		{"null fields are no update", req{method: "PATCH", path: "/v1/users/me", body: `{"name":null,"phone":null}`, bearer: tok}, 422, "unprocessable_entity", "phone"},
		{"a number for the name is 400 naming it", req{method: "PATCH", path: "/v1/users/me", body: `{"name":5}`, bearer: tok}, 400, "bad_request", `"name"`},
		{"a boolean for the phone is 400 naming it", req{method: "PATCH", path: "/v1/users/me", body: `{"phone":true}`, bearer: tok}, 400, "bad_request", `"phone"`},
		{"changing the email there is an unknown field", req{method: "PATCH", path: "/v1/users/me", body: `{"email":"x@y.z"}`, bearer: tok}, 400, "bad_request", "email"},
		{"an update without Content-Type is 415", req{method: "PATCH", path: "/v1/users/me", body: `{"name":"Ada"}`, bearer: tok, header: noCT}, 415, "unsupported_media_type", "Content-Type"},
		{"an oversize update is 413", req{method: "PATCH", path: "/v1/users/me", body: `{"name":"` + strings.Repeat("n", 2*maxBody) + `"}`, bearer: tok}, 413, "payload_too_large", "exceeds"},
		{"a truncated update is 400", req{method: "PATCH", path: "/v1/users/me", body: `{"name":"Ad`, bearer: tok}, 400, "bad_request", "malformed"},

		// Other bodies.
		{"a wishlist add without publication_id is 422", req{method: "POST", path: "/v1/users/me/wishlist", body: `{}`, bearer: tok}, 422, "unprocessable_entity", "publication_id"},
		{"a numeric publication_id is 400", req{method: "POST", path: "/v1/users/me/wishlist", body: `{"publication_id":12}`, bearer: tok}, 400, "bad_request", "publication_id"},
		{"preferences without push are 422", req{method: "PUT", path: "/v1/users/me/notification-preferences", body: `{"email":true}`, bearer: tok}, 422, "unprocessable_entity", "push"},
		{"a string for a boolean preference is 400", req{method: "PUT", path: "/v1/users/me/notification-preferences", body: `{"email":"yes","push":true}`, bearer: tok}, 400, "bad_request", "boolean"},
		{"a bank account with an extra field is 400", req{method: "POST", path: "/v1/users/me/bank-accounts", body: `{"holder":"A","bank":"B","account_number":"12345678","currency":"EUR","iban":"x"}`, bearer: tok}, 400, "bad_request", "iban"},
		{"a device as an array is 400", req{method: "POST", path: "/v1/users/me/devices", body: `[]`, bearer: tok}, 400, "bad_request", "JSON object"},
		{"a publication without quantity is 422", req{method: "POST", path: "/v1/publications", body: `{"product_id":"p1","title":"Lamp","price":{"amount":1999,"currency":"USD"},"condition":"new"}`, bearer: tok}, 422, "unprocessable_entity", "quantity is required"},
		{"a publication with a null quantity is 422", req{method: "POST", path: "/v1/publications", body: `{"product_id":"p1","title":"Lamp","price":{"amount":1999,"currency":"USD"},"quantity":null,"condition":"new"}`, bearer: tok}, 422, "unprocessable_entity", "quantity is required"},
		{"a publication with a string quantity is 400", req{method: "POST", path: "/v1/publications", body: `{"product_id":"p1","title":"Lamp","price":{"amount":1999,"currency":"USD"},"quantity":"1","condition":"new"}`, bearer: tok}, 400, "bad_request", `"quantity"`},

		// Paging parameters.
		{"page_size=0 is 400", req{method: "GET", path: "/v1/users/me/wishlist?page_size=0", bearer: tok}, 400, "bad_request", "page_size"},
		{"page_size=101 is 400", req{method: "GET", path: "/v1/users/me/wishlist?page_size=101", bearer: tok}, 400, "bad_request", "page_size"},
		{"page_size=abc is 400", req{method: "GET", path: "/v1/users/me/bank-accounts?page_size=abc", bearer: tok}, 400, "bad_request", "page_size"},
		{"page_size=-1 is 400", req{method: "GET", path: "/v1/users/me/devices?page_size=-1", bearer: tok}, 400, "bad_request", "page_size"},
		{"page_size=1.5 is 400", req{method: "GET", path: "/v1/users/me/devices?page_size=1.5", bearer: tok}, 400, "bad_request", "page_size"},
		{"a huge page_size is 400", req{method: "GET", path: "/v1/users/me/devices?page_size=99999999999999999999", bearer: tok}, 400, "bad_request", "page_size"},
		{"a malformed query string is 400", req{method: "GET", path: "/v1/users/me/wishlist?page_size=%zz", bearer: tok}, 400, "bad_request", "query"},
		{"an over-long page_token is 400", req{method: "GET", path: "/v1/users/me/wishlist?page_token=" + strings.Repeat("A", 513), bearer: tok}, 400, "bad_request", "page_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(ta.users.Calls())
			rec := ta.do(t, tt.r)
			msg := wantError(t, rec, tt.status, tt.code)
			if !strings.Contains(msg, tt.mention) {
				t.Errorf("message %q does not mention %q", msg, tt.mention)
			}
			if n := len(ta.users.Calls()) - before; n != 0 {
				t.Errorf("bad input reached the users service (%d calls)", n)
			}
		})
	}
}

// TestOddBodiesNeverGive500 throws awkward bodies at every route that reads one.
func TestOddBodiesNeverGive500(t *testing.T) {
	ta := newTestAPI(t, func(o *server.Options) { o.MaxBody = maxBody })
	tok := ta.token(t, "01HCALLER")
	routes := [][2]string{
		{"POST", "/v1/auth/register"}, {"POST", "/v1/auth/login"}, {"PATCH", "/v1/users/me"},
		{"POST", "/v1/users/me/wishlist"}, {"POST", "/v1/users/me/bank-accounts"},
		{"POST", "/v1/users/me/devices"}, {"PUT", "/v1/users/me/notification-preferences"},
		{"POST", "/v1/cart/items"}, {"POST", "/v1/cart/checkout"}, {"POST", "/v1/orders"},
	}
	bodies := []string{
		"{", "}", "[", "]", "{}", "[]", "null", "true", "0", "-1e999", `""`, `"\u0000"`,
		`{"":""}`, `{"email":null}`, `{"email":["a"]}`, `{"email":{"$ne":1}}`, `{"email":"a","email":"b"}`,
		`{"name":"\ud800"}`, "\xff\xfe{}", "\x00", `{"password":1e400}`, `{"push":"true"}`,
		strings.Repeat("[", 1000), strings.Repeat(`{"a":`, 200), `{"email":"` + strings.Repeat("x", 600) + `"}`,
	}
	for _, rt := range routes {
		for _, b := range bodies {
			rec := ta.do(t, req{method: rt[0], path: rt[1], body: b, bearer: tok})
			if rec.Code >= 500 {
				t.Errorf("%s %s with %.40q = %d: %s", rt[0], rt[1], b, rec.Code, rec.Body)
			}
			if rec.Code >= 400 {
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("%s %s with %.40q: error Content-Type %q", rt[0], rt[1], b, ct)
				}
			}
		}
	}
}

func TestRequestIDs(t *testing.T) {
	ta := newTestAPI(t)
	long64 := strings.Repeat("r", 64)
	tests := []struct {
		name, sent string
		echoed     bool
	}{
		// Echoed only when it matches ^[A-Za-z0-9._-]{1,64}$.
		{"a sane client ID is echoed", "req-123_ABC.xyz", true},
		{"an ID of one character is echoed", "r", true},
		{"an ID of 64 characters is echoed", long64, true},
		{"an ID of 65 characters is replaced", long64 + "r", false},
		{"an ID with a colon is replaced", "req-123:1", false},
		{"an ID with a slash is replaced", "req/123", false},
		{"an ID with quotes or markup is replaced", `"<b>"`, false},
		{"an ID with a space is replaced", "req 123", false},
		{"an ID with a tab is replaced", "req\t123", false},
		{"an ID with a control character is replaced", "req\x01123", false},
		{"a non-ASCII ID is replaced", "réq-123", false},
		{"a missing ID is generated", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []req{
				{method: "GET", path: "/v1/nope"}, // an error response
				{method: "GET", path: "/healthz"}, // a success response
			} {
				r.header = map[string]string{"X-Request-Id": tt.sent}
				rec := ta.do(t, r)
				got := rec.Header().Get("X-Request-Id")
				if tt.echoed && got != tt.sent {
					t.Errorf("%s: X-Request-Id = %q, want %q echoed", r.path, got, tt.sent)
				}
				if !tt.echoed && (got == tt.sent || len(got) != 26) {
					t.Errorf("%s: X-Request-Id = %q, want a fresh 26-character ULID", r.path, got)
				}
				if rec.Code == http.StatusNotFound {
					wantError(t, rec, 404, "not_found") // request_id in the body equals the header
				}
			}
		})
	}
	a := ta.do(t, req{method: "GET", path: "/healthz"}).Header().Get("X-Request-Id")
	b := ta.do(t, req{method: "GET", path: "/healthz"}).Header().Get("X-Request-Id")
	if a == b {
		t.Errorf("two requests got the same generated ID %q", a)
	}
}
