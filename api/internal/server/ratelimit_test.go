package server_test

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/api/internal/server"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
)

// rejectAll makes every Authenticate a 401 from the users service.
func rejectAll(ta *testAPI) {
	ta.users.Answer = func(endpoint string, _ any) (any, error) {
		if endpoint == "Users.Authenticate" {
			return nil, merrors.Unauthorized(usersrpc.Service, "wrong email or password")
		}
		return nil, nil
	}
}

func login(t *testing.T, ta *testAPI, email, remote string) *http.Response {
	t.Helper()
	rec := ta.do(t, req{method: "POST", path: "/v1/auth/login", remote: remote,
		body: fmt.Sprintf(`{"email":%q,"password":"wrong-password"}`, email)})
	return rec.Result()
}

func authCalls(ta *testAPI) int {
	n := 0
	for _, c := range ta.users.Calls() {
		if c.Endpoint == "Users.Authenticate" {
			n++
		}
	}
	return n
}

func TestLoginIsLimitedPerEmail(t *testing.T) {
	ta := newTestAPI(t, func(o *server.Options) { o.LoginPerMinuteIP, o.LoginPerMinuteEmail = 100, 3 })
	rejectAll(ta)
	const ip = "198.51.100.7:4000"

	for i := range 3 {
		if res := login(t, ta, "ada@example.com", ip); res.StatusCode != 401 {
			t.Fatalf("attempt %d = %d, want 401 from the users service", i+1, res.StatusCode)
		}
	}
	rec := ta.do(t, req{method: "POST", path: "/v1/auth/login", remote: ip, body: `{"email":"ada@example.com","password":"x"}`})
	msg := wantError(t, rec, 429, "rate_limited")
	secs, err := strconv.Atoi(rec.Header().Get("Retry-After"))
	if err != nil || secs < 1 || secs > 60 {
		t.Errorf("Retry-After = %q, want whole seconds in 1..60 (one token per 20 s)", rec.Header().Get("Retry-After"))
	}
	if msg == "" {
		t.Error("empty message")
	}
	if n := authCalls(ta); n != 3 {
		t.Errorf("users.Authenticate called %d times, want 3 (the limited attempt must not reach it)", n)
	}

	t.Run("the email is matched case- and space-insensitively", func(t *testing.T) {
		if res := login(t, ta, "  ADA@Example.com ", ip); res.StatusCode != 429 {
			t.Errorf("status = %d, want 429", res.StatusCode)
		}
	})
	t.Run("another email from the same client still passes", func(t *testing.T) {
		if res := login(t, ta, "bob@example.com", ip); res.StatusCode != 401 {
			t.Errorf("status = %d, want 401 from the users service", res.StatusCode)
		}
		if n := authCalls(ta); n != 4 {
			t.Errorf("users.Authenticate called %d times, want 4", n)
		}
	})
	t.Run("the same email from another client is still limited", func(t *testing.T) {
		if res := login(t, ta, "ada@example.com", "203.0.113.9:5000"); res.StatusCode != 429 {
			t.Errorf("status = %d, want 429", res.StatusCode)
		}
	})
}

func TestLoginIsLimitedPerIP(t *testing.T) {
	ta := newTestAPI(t, func(o *server.Options) { o.LoginPerMinuteIP, o.LoginPerMinuteEmail = 3, 100 })
	rejectAll(ta)
	for i := range 3 {
		if res := login(t, ta, fmt.Sprintf("user%d@example.com", i), "198.51.100.7:1000"); res.StatusCode != 401 {
			t.Fatalf("attempt %d = %d", i+1, res.StatusCode)
		}
	}
	// Another port of the same address is the same client.
	res := login(t, ta, "user9@example.com", "198.51.100.7:2000")
	if res.StatusCode != 429 || res.Header.Get("Retry-After") == "" {
		t.Errorf("4th attempt from one IP = %d (Retry-After %q), want 429 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
	if res := login(t, ta, "user9@example.com", "203.0.113.9:1000"); res.StatusCode != 401 {
		t.Errorf("another IP = %d, want 401", res.StatusCode)
	}
}

func TestARefusedLoginTakesNoTokenFromTheOtherBucket(t *testing.T) {
	ta := newTestAPI(t, func(o *server.Options) { o.LoginPerMinuteIP, o.LoginPerMinuteEmail = 5, 3 })
	rejectAll(ta)
	const ip = "198.51.100.7:4000"
	for range 3 {
		login(t, ta, "ada@example.com", ip) // 3 of 5 IP tokens used
	}
	for range 3 {
		if res := login(t, ta, "ada@example.com", ip); res.StatusCode != 429 {
			t.Fatalf("attempt on the exhausted email = %d, want 429", res.StatusCode)
		}
	}
	// Had the refused attempts consumed IP tokens, these would be refused.
	for i, email := range []string{"bob@example.com", "cy@example.com"} {
		if res := login(t, ta, email, ip); res.StatusCode != 401 {
			t.Errorf("attempt %d for %s = %d, want 401", i+1, email, res.StatusCode)
		}
	}
	if res := login(t, ta, "dee@example.com", ip); res.StatusCode != 429 {
		t.Errorf("6th passing attempt from the IP = %d, want 429", res.StatusCode)
	}
}

func TestBadLoginBodiesTakeNoToken(t *testing.T) {
	ta := newTestAPI(t, func(o *server.Options) { o.LoginPerMinuteIP, o.LoginPerMinuteEmail = 100, 1 })
	rejectAll(ta)
	for range 5 {
		rec := ta.do(t, req{method: "POST", path: "/v1/auth/login", body: `{"email":"ada@example.com"}`})
		wantError(t, rec, 422, "unprocessable_entity")
	}
	if res := login(t, ta, "ada@example.com", ""); res.StatusCode != 401 {
		t.Errorf("first complete attempt = %d, want 401", res.StatusCode)
	}
}

func TestZeroLoginLimitsFallBackToDefaults(t *testing.T) {
	ta := newTestAPI(t, func(o *server.Options) { o.LoginPerMinuteIP, o.LoginPerMinuteEmail = 0, 0 })
	rejectAll(ta)
	res := login(t, ta, "ada@example.com", "")
	if res.StatusCode != 401 {
		t.Fatalf("first login with zero limits = %d (Retry-After %q), want 401: unset limits must not refuse every login",
			res.StatusCode, res.Header.Get("Retry-After"))
	}
}
