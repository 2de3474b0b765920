package server_test

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"testing"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/api/internal/server"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
)

// ownerPassword is the one password the fake users service accepts.
const ownerPassword = "owner-password"

// rejectAll makes every Login a 401 from the users service, except with
// ownerPassword.
func rejectAll(ta *testAPI) {
	ta.users.Answer = func(endpoint string, r any) (any, error) {
		switch endpoint {
		case "Users.Login":
			if req, ok := r.(*usersrpc.AuthenticateRequest); ok && req.Password == ownerPassword {
				return &usersrpc.Session{User: usersrpc.User{ID: "01HOWNER", Email: req.Email}, RefreshToken: "rt-owner"}, nil
			}
			return nil, merrors.Unauthorized(usersrpc.Service, "wrong email or password")
		case "Users.Register":
			return &usersrpc.User{ID: "01HNEW"}, nil
		}
		return nil, nil
	}
}

func login(t *testing.T, ta *testAPI, email, remote string) *http.Response {
	t.Helper()
	return loginWith(t, ta, email, "wrong-password", remote, "")
}

// loginWith logs in with password from remote, behind a proxy that says it
// forwarded for xff (none when "").
func loginWith(t *testing.T, ta *testAPI, email, password, remote, xff string) *http.Response {
	t.Helper()
	r := req{method: "POST", path: "/v1/auth/login", remote: remote,
		body: fmt.Sprintf(`{"email":%q,"password":%q}`, email, password)}
	if xff != "" {
		r.header = map[string]string{"X-Forwarded-For": xff}
	}
	return ta.do(t, r).Result()
}

func authCalls(ta *testAPI) int {
	n := 0
	for _, c := range ta.users.Calls() {
		if c.Endpoint == "Users.Login" {
			n++
		}
	}
	return n
}

func TestFailedLoginsAreLimitedPerAccountAndAddress(t *testing.T) {
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
	if err != nil || secs < 1 || secs > 20 {
		t.Errorf("Retry-After = %q, want whole seconds in 1..20 (one failure allowed per 20 s)", rec.Header().Get("Retry-After"))
	}
	if msg == "" {
		t.Error("empty message")
	}
	if n := authCalls(ta); n != 3 {
		t.Errorf("users.Login called %d times, want 3 (the limited attempt must not reach it)", n)
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
	})
	t.Run("the owner, at another address, logs in with the right password", func(t *testing.T) {
		if res := loginWith(t, ta, "ada@example.com", ownerPassword, "203.0.113.9:5000", ""); res.StatusCode != 200 {
			t.Errorf("status = %d, want 200: the guesser must not lock the owner out", res.StatusCode)
		}
	})
	t.Run("a wrong password from another address is judged, not refused", func(t *testing.T) {
		if res := login(t, ta, "ada@example.com", "203.0.113.10:5000"); res.StatusCode != 401 {
			t.Errorf("status = %d, want 401", res.StatusCode)
		}
	})
}

func TestACorrectPasswordIsNotAFailure(t *testing.T) {
	ta := newTestAPI(t, func(o *server.Options) { o.LoginPerMinuteIP, o.LoginPerMinuteEmail = 100, 2 })
	rejectAll(ta)
	const ip = "203.0.113.9:5000"
	for i := range 5 {
		if res := loginWith(t, ta, "ada@example.com", ownerPassword, ip, ""); res.StatusCode != 200 {
			t.Fatalf("login %d = %d, want 200", i+1, res.StatusCode)
		}
	}
	// A typo after those: still the full allowance of failures.
	for i := range 2 {
		if res := login(t, ta, "ada@example.com", ip); res.StatusCode != 401 {
			t.Fatalf("typo %d = %d, want 401", i+1, res.StatusCode)
		}
	}
}

func TestAnUnavailableUsersServiceIsNotAFailedLogin(t *testing.T) {
	ta := newTestAPI(t, func(o *server.Options) { o.LoginPerMinuteIP, o.LoginPerMinuteEmail = 100, 2 })
	ta.users.Answer = func(string, any) (any, error) {
		return nil, merrors.New(usersrpc.Service, "users is unavailable", 503)
	}
	for i := range 5 {
		if res := login(t, ta, "ada@example.com", "203.0.113.9:5000"); res.StatusCode != 503 {
			t.Fatalf("attempt %d = %d, want 503 (not 429: no password was judged)", i+1, res.StatusCode)
		}
	}
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

// The attack from the issue: behind docker-proxy or a load balancer every
// client has the proxy's address. With the proxy trusted, one client's
// random-email spray limits that client only.
func TestClientsBehindATrustedProxyAreToldApart(t *testing.T) {
	const proxy = "172.18.0.1:40000"
	ta := newTestAPI(t, func(o *server.Options) {
		o.LoginPerMinuteIP, o.LoginPerMinuteEmail = 5, 3
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("172.18.0.0/16")}
	})
	rejectAll(ta)
	for i := range 5 {
		if res := loginWith(t, ta, fmt.Sprintf("random-%d@example.com", i), "x", proxy, "198.51.100.7"); res.StatusCode != 401 {
			t.Fatalf("spray %d = %d, want 401", i+1, res.StatusCode)
		}
	}
	if res := loginWith(t, ta, "random-9@example.com", "x", proxy, "198.51.100.7"); res.StatusCode != 429 {
		t.Fatalf("the sprayer's 6th attempt = %d, want 429", res.StatusCode)
	}
	if res := loginWith(t, ta, "ada@example.com", ownerPassword, proxy, "203.0.113.9"); res.StatusCode != 200 {
		t.Errorf("another client behind the same proxy = %d, want 200", res.StatusCode)
	}
	t.Run("a client cannot pick its address by prepending X-Forwarded-For", func(t *testing.T) {
		// The proxy appends the real peer: only the right-most entry counts.
		if res := loginWith(t, ta, "random-10@example.com", "x", proxy, "192.0.2.55, 198.51.100.7"); res.StatusCode != 429 {
			t.Errorf("status = %d, want 429", res.StatusCode)
		}
	})
	t.Run("X-Forwarded-For from an untrusted peer is ignored", func(t *testing.T) {
		direct := newTestAPI(t, func(o *server.Options) { o.LoginPerMinuteIP, o.LoginPerMinuteEmail = 2, 100 })
		rejectAll(direct)
		for i := range 2 {
			loginWith(t, direct, fmt.Sprintf("u%d@example.com", i), "x", "198.51.100.7:1", fmt.Sprintf("192.0.2.%d", i))
		}
		if res := loginWith(t, direct, "u9@example.com", "x", "198.51.100.7:1", "192.0.2.99"); res.StatusCode != 429 {
			t.Errorf("a made-up X-Forwarded-For escaped the limit: %d, want 429", res.StatusCode)
		}
	})
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

func TestZeroLimitsFallBackToDefaults(t *testing.T) {
	ta := newTestAPI(t, func(o *server.Options) {
		o.LoginPerMinuteIP, o.LoginPerMinuteEmail, o.LoginFailuresPerHourAccount, o.RegisterPerHourIP = 0, 0, 0, 0
	})
	rejectAll(ta)
	res := login(t, ta, "ada@example.com", "")
	if res.StatusCode != 401 {
		t.Fatalf("first login with zero limits = %d (Retry-After %q), want 401: unset limits must not refuse every login",
			res.StatusCode, res.Header.Get("Retry-After"))
	}
	rec := ta.do(t, req{method: "POST", path: "/v1/auth/register", body: `{"email":"ada@example.com","password":"password123","name":"Ada"}`})
	if rec.Code != 201 {
		t.Fatalf("first sign-up with zero limits = %d: %s", rec.Code, rec.Body)
	}
}

func TestRegistrationIsLimitedPerAddress(t *testing.T) {
	ta := newTestAPI(t, func(o *server.Options) { o.RegisterPerHourIP = 3 })
	rejectAll(ta)
	register := func(i int, remote string) *http.Response {
		return ta.do(t, req{method: "POST", path: "/v1/auth/register", remote: remote,
			body: fmt.Sprintf(`{"email":"farm-%d@example.com","password":"password123","name":"Farm"}`, i)}).Result()
	}
	for i := range 3 {
		if res := register(i, "198.51.100.7:1000"); res.StatusCode != 201 {
			t.Fatalf("sign-up %d = %d, want 201", i+1, res.StatusCode)
		}
	}
	rec := ta.do(t, req{method: "POST", path: "/v1/auth/register", remote: "198.51.100.7:2000",
		body: `{"email":"farm-9@example.com","password":"password123","name":"Farm"}`})
	wantError(t, rec, 429, "rate_limited")
	secs, err := strconv.Atoi(rec.Header().Get("Retry-After"))
	if err != nil || secs < 1 || secs > 20*60 {
		t.Errorf("Retry-After = %q, want whole seconds up to 20 min (3 an hour)", rec.Header().Get("Retry-After"))
	}
	registers := 0
	for _, c := range ta.users.Calls() {
		if c.Endpoint == "Users.Register" {
			registers++
		}
	}
	if registers != 3 {
		t.Errorf("users.Register called %d times, want 3", registers)
	}
	if res := register(10, "203.0.113.9:1000"); res.StatusCode != 201 {
		t.Errorf("another address = %d, want 201", res.StatusCode)
	}
	t.Run("malformed sign-ups take no token", func(t *testing.T) {
		ta := newTestAPI(t, func(o *server.Options) { o.RegisterPerHourIP = 1 })
		rejectAll(ta)
		for range 3 {
			wantError(t, ta.do(t, req{method: "POST", path: "/v1/auth/register", body: `{"email":"a@b.co"}`}), 422, "unprocessable_entity")
		}
		if res := register(0, ""); res.StatusCode != 201 {
			t.Errorf("first complete sign-up = %d, want 201", res.StatusCode)
		}
	})
}
