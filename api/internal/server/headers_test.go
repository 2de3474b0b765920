package server_test

import (
	"net/http"
	"strings"
	"testing"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/api/internal/server"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
)

func TestEveryAnswerIsNosniffAndPrivateOnesAreNotStored(t *testing.T) {
	ta := newTestAPI(t)
	ta.users.Answer = func(endpoint string, _ any) (any, error) {
		switch endpoint {
		case "Users.Register", "Users.Me":
			return &usersrpc.User{ID: "01HCALLER", Email: "ada@example.com"}, nil
		case "Users.Login", "Users.Refresh":
			return &usersrpc.Session{User: usersrpc.User{ID: "01HCALLER", Email: "ada@example.com"}, RefreshToken: "rt-1"}, nil
		}
		return nil, nil
	}
	tok := ta.token(t, "01HCALLER")
	tests := []struct {
		name    string
		r       req
		status  int
		noStore bool
	}{
		{"an authenticated read", req{method: "GET", path: "/v1/users/me", bearer: tok}, 200, true},
		{"an authenticated list", req{method: "GET", path: "/v1/users/me/wishlist", bearer: tok}, 200, true},
		{"registration, which returns the account", req{method: "POST", path: "/v1/auth/register", body: `{"email":"ada@example.com","password":"password123","name":"Ada"}`}, 201, true},
		{"login, which returns a token", req{method: "POST", path: "/v1/auth/login", body: `{"email":"ada@example.com","password":"password123"}`}, 200, true},
		{"refresh, which returns a token", req{method: "POST", path: "/v1/auth/refresh", body: `{"refresh_token":"rt-1"}`}, 200, true},
		{"logout, which answers nothing", req{method: "POST", path: "/v1/auth/logout", body: `{"refresh_token":"rt-1"}`}, 204, true},
		{"an error", req{method: "GET", path: "/v1/users/me"}, 401, true},
		{"an unknown route", req{method: "GET", path: "/v1/nothing"}, 404, true},
		{"an unknown docs asset", req{method: "GET", path: "/docs/nothing.js"}, 404, true},
		{"the liveness probe", req{method: "GET", path: "/healthz"}, 200, true},
		{"a public read", req{method: "GET", path: "/v1/categories"}, 200, false},
		{"the OpenAPI document", req{method: "GET", path: "/openapi.json"}, 200, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := ta.do(t, tt.r)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
			}
			if got := rec.Header().Get("Cache-Control"); tt.noStore && got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
		})
	}
}

func TestSwaggerUIPagesAreLockedDown(t *testing.T) {
	ta := newTestAPI(t, func(o *server.Options) { o.CORSOrigins = []string{"https://shop.example"} })
	for _, p := range []string{"/docs", "/docs/", "/docs/swagger-initializer.js", "/docs/swagger-ui.css"} {
		t.Run(p, func(t *testing.T) {
			rec := ta.do(t, req{method: "GET", path: p})
			if rec.Code != 200 {
				t.Fatalf("status = %d", rec.Code)
			}
			csp := rec.Header().Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'none'", "script-src 'self';", "style-src 'self';",
				"connect-src 'self' https://shop.example;", "frame-ancestors 'none'", "object-src 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
				}
			}
			if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
				t.Errorf("Content-Security-Policy %q allows inline or eval'd code", csp)
			}
			if got := rec.Header().Get("X-Frame-Options"); got != "DENY" {
				t.Errorf("X-Frame-Options = %q", got)
			}
			if got := rec.Header().Get("Referrer-Policy"); got != "no-referrer" {
				t.Errorf("Referrer-Policy = %q", got)
			}
		})
	}
	t.Run("the index page has no inline script or style for the policy to block", func(t *testing.T) {
		body := ta.do(t, req{method: "GET", path: "/docs"}).Body.String()
		for _, inline := range []string{"<script>", "<style", " style=", " onload=", "javascript:"} {
			if strings.Contains(body, inline) {
				t.Errorf("/docs contains %q", inline)
			}
		}
		if !strings.Contains(body, `<script src="/docs/swagger-initializer.js"`) {
			t.Error("/docs does not load its initializer from a file")
		}
	})
}

func TestCORS(t *testing.T) {
	ta := newTestAPI(t) // the default origins: the api's own
	preflight := func(origin string) *http.Response {
		return ta.do(t, req{method: "OPTIONS", path: "/v1/users/me", header: map[string]string{
			"Origin": origin, "Access-Control-Request-Method": "PATCH", "Access-Control-Request-Headers": "authorization, content-type",
		}}).Result()
	}
	for _, origin := range []string{"http://localhost:8080", "http://127.0.0.1:8080"} {
		t.Run("a preflight from "+origin+" is allowed", func(t *testing.T) {
			res := preflight(origin)
			if res.StatusCode != 204 {
				t.Fatalf("status = %d, want 204", res.StatusCode)
			}
			if got := res.Header.Get("Access-Control-Allow-Origin"); got != origin {
				t.Errorf("Access-Control-Allow-Origin = %q", got)
			}
			if m := res.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "PATCH") {
				t.Errorf("Access-Control-Allow-Methods = %q", m)
			}
			if h := res.Header.Get("Access-Control-Allow-Headers"); !strings.Contains(h, "Authorization") || !strings.Contains(h, "Idempotency-Key") {
				t.Errorf("Access-Control-Allow-Headers = %q", h)
			}
			if res.Header.Get("Access-Control-Allow-Credentials") != "" {
				t.Error("credentials allowed: the api uses bearer tokens, never cookies")
			}
		})
	}
	t.Run("a preflight from another origin gets no CORS header", func(t *testing.T) {
		res := preflight("https://evil.example")
		if res.StatusCode != 204 {
			t.Fatalf("status = %d, want 204", res.StatusCode)
		}
		for k := range res.Header {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Errorf("header %s = %q", k, res.Header.Get(k))
			}
		}
	})
	t.Run("an answer to an allowed origin is readable with its request ID", func(t *testing.T) {
		rec := ta.do(t, req{method: "GET", path: "/healthz", header: map[string]string{"Origin": "http://127.0.0.1:8080"}})
		if rec.Header().Get("Access-Control-Allow-Origin") != "http://127.0.0.1:8080" ||
			!strings.Contains(rec.Header().Get("Access-Control-Expose-Headers"), "X-Request-Id") ||
			!strings.Contains(rec.Header().Get("Vary"), "Origin") {
			t.Errorf("headers %v", rec.Header())
		}
	})
	t.Run("an answer to another origin is not", func(t *testing.T) {
		rec := ta.do(t, req{method: "GET", path: "/healthz", header: map[string]string{"Origin": "https://evil.example"}})
		if rec.Code != 200 || rec.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%d, Access-Control-Allow-Origin %q", rec.Code, rec.Header().Get("Access-Control-Allow-Origin"))
		}
	})
	t.Run("an OPTIONS that is not a preflight is routed as usual", func(t *testing.T) {
		wantError(t, ta.do(t, req{method: "OPTIONS", path: "/v1/users/me"}), 405, "method_not_allowed")
	})
	t.Run("configured origins replace the defaults", func(t *testing.T) {
		ta := newTestAPI(t, func(o *server.Options) { o.CORSOrigins = []string{"https://shop.example/"} })
		res := ta.do(t, req{method: "OPTIONS", path: "/v1/cart", header: map[string]string{
			"Origin": "https://shop.example", "Access-Control-Request-Method": "GET"}}).Result()
		if res.Header.Get("Access-Control-Allow-Origin") != "https://shop.example" {
			t.Errorf("configured origin refused: %v", res.Header)
		}
		res = ta.do(t, req{method: "OPTIONS", path: "/v1/cart", header: map[string]string{
			"Origin": "http://localhost:8080", "Access-Control-Request-Method": "GET"}}).Result()
		if res.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("a default origin still allowed: %v", res.Header)
		}
	})
}

func TestATokenOfADeletedUserIs401(t *testing.T) {
	ta := newTestAPI(t)
	ta.users.Answer = func(endpoint string, _ any) (any, error) {
		return nil, merrors.NotFound(usersrpc.Service, "user 01HGONE not found")
	}
	tok := ta.token(t, "01HGONE")
	for _, r := range []req{
		{method: "GET", path: "/v1/users/me", bearer: tok},
		{method: "PATCH", path: "/v1/users/me", bearer: tok, body: `{"name":"Ghost"}`},
	} {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			rec := ta.do(t, r)
			if msg := wantError(t, rec, 401, "unauthenticated"); !strings.Contains(msg, "log in again") {
				t.Errorf("message %q does not tell the client to log in again", msg)
			}
			if !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q", rec.Header().Get("WWW-Authenticate"))
			}
		})
	}
	t.Run("another user's missing profile is still 404", func(t *testing.T) {
		wantError(t, ta.do(t, req{method: "GET", path: "/v1/users/01HGONE"}), 404, "not_found")
	})
}
