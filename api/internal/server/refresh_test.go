package server_test

import (
	"crypto/ed25519"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/api/internal/server"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/auth"
)

// tokenPair is the answer of login and refresh, decoded strictly.
type tokenPair struct {
	Token                 string        `json:"token"`
	TokenType             string        `json:"token_type"`
	ExpiresAt             time.Time     `json:"expires_at"`
	ExpiresIn             int64         `json:"expires_in"`
	RefreshToken          string        `json:"refresh_token"`
	RefreshTokenExpiresAt time.Time     `json:"refresh_token_expires_at"`
	User                  usersrpc.User `json:"user"`
}

func decodePair(t *testing.T, body []byte) tokenPair {
	t.Helper()
	var p tokenPair
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	return p
}

var refreshExpiry = time.Date(2030, 2, 1, 0, 0, 0, 0, time.UTC)

// sessions makes the fake users service answer Login, Refresh and Logout:
// Refresh and Logout accept only the token "rt-good" and refuse others as
// the users service does.
func sessions(ta *testAPI, uid string) {
	ta.users.Answer = func(endpoint string, r any) (any, error) {
		switch endpoint {
		case "Users.Login":
			return &usersrpc.Session{User: usersrpc.User{ID: uid, Email: "ada@example.com"}, RefreshToken: "rt-first", RefreshExpiresAt: refreshExpiry}, nil
		case "Users.Refresh", "Users.Logout":
			if r.(*usersrpc.RefreshRequest).RefreshToken != "rt-good" {
				return nil, merrors.Unauthorized(usersrpc.Service, "refresh token was already used: its session has been revoked: log in again")
			}
			if endpoint == "Users.Logout" {
				return nil, nil
			}
			return &usersrpc.Session{User: usersrpc.User{ID: uid, Email: "ada@example.com"}, RefreshToken: "rt-next", RefreshExpiresAt: refreshExpiry}, nil
		}
		return nil, nil
	}
}

func TestLoginAnswersATokenPair(t *testing.T) {
	ta := newTestAPI(t)
	sessions(ta, "01HCALLER")
	rec := ta.do(t, req{method: "POST", path: "/v1/auth/login", body: `{"email":"ada@example.com","password":"correct horse"}`})
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	p := decodePair(t, rec.Body.Bytes())
	if p.TokenType != "Bearer" || p.RefreshToken != "rt-first" || !p.RefreshTokenExpiresAt.Equal(refreshExpiry) || p.User.ID != "01HCALLER" {
		t.Errorf("pair %+v", p)
	}
	if p.ExpiresIn != 900 {
		t.Errorf("expires_in = %d, want 900 (15 minutes)", p.ExpiresIn)
	}
	if d := time.Until(p.ExpiresAt); d < 14*time.Minute || d > 15*time.Minute {
		t.Errorf("expires_at %v is %v away, want about 15 minutes", p.ExpiresAt, d)
	}
	if sub, err := ta.signer.Verify(p.Token); err != nil || sub != "01HCALLER" {
		t.Errorf("token: %q, %v", sub, err)
	}
	var claims jwt.RegisteredClaims
	parsed, _, err := jwt.NewParser().ParseUnverified(p.Token, &claims)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Header["kid"] != ta.signer.KeyID() || len(claims.Audience) != 1 || claims.Audience[0] != auth.Audience {
		t.Errorf("kid %v, aud %v", parsed.Header["kid"], claims.Audience)
	}
	calls := ta.users.Calls()
	if len(calls) != 1 || calls[0].Endpoint != "Users.Login" {
		t.Fatalf("calls %+v, want one Users.Login", calls)
	}
	if r := calls[0].Req.(*usersrpc.AuthenticateRequest); r.Email != "ada@example.com" || r.Password != "correct horse" {
		t.Errorf("Login request %+v", r)
	}
}

func TestRefreshAnswersANewPair(t *testing.T) {
	ta := newTestAPI(t)
	sessions(ta, testAdmin)
	rec := ta.do(t, req{method: "POST", path: "/v1/auth/refresh", body: `{"refresh_token":"rt-good"}`})
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Error("a token answer must not be stored")
	}
	p := decodePair(t, rec.Body.Bytes())
	if p.RefreshToken != "rt-next" || p.TokenType != "Bearer" || p.User.ID != testAdmin {
		t.Errorf("pair %+v", p)
	}
	// Roles are granted at every refresh, as at login.
	c, err := ta.signer.VerifyClaims(p.Token)
	if err != nil || c.Subject != testAdmin || !c.Has(auth.RoleAdmin) {
		t.Errorf("claims %+v, %v; want the admin role", c, err)
	}
	calls := ta.users.Calls()
	if len(calls) != 1 || calls[0].Endpoint != "Users.Refresh" || calls[0].Req.(*usersrpc.RefreshRequest).RefreshToken != "rt-good" || calls[0].Caller != "" {
		t.Fatalf("calls %+v, want one anonymous Users.Refresh with the token", calls)
	}

	t.Run("a role taken away is gone from the next pair", func(t *testing.T) {
		other := newTestAPI(t, func(o *server.Options) { o.Admins = nil })
		sessions(other, testAdmin)
		rec := other.do(t, req{method: "POST", path: "/v1/auth/refresh", body: `{"refresh_token":"rt-good"}`})
		c, err := other.signer.VerifyClaims(decodePair(t, rec.Body.Bytes()).Token)
		if err != nil || c.Has(auth.RoleAdmin) {
			t.Errorf("claims %+v, %v; want no admin role", c, err)
		}
	})
}

func TestLogoutAnswers204(t *testing.T) {
	ta := newTestAPI(t)
	sessions(ta, "01HCALLER")
	rec := ta.do(t, req{method: "POST", path: "/v1/auth/logout", body: `{"refresh_token":"rt-good"}`})
	if rec.Code != 204 || rec.Body.Len() != 0 {
		t.Fatalf("status %d, body %q; want 204 and no body", rec.Code, rec.Body)
	}
	calls := ta.users.Calls()
	if len(calls) != 1 || calls[0].Endpoint != "Users.Logout" || calls[0].Req.(*usersrpc.RefreshRequest).RefreshToken != "rt-good" {
		t.Fatalf("calls %+v, want one Users.Logout with the token", calls)
	}
}

func TestRefreshAndLogoutRefusals(t *testing.T) {
	for _, path := range []string{"/v1/auth/refresh", "/v1/auth/logout"} {
		t.Run(path, func(t *testing.T) {
			ta := newTestAPI(t)
			sessions(ta, "01HCALLER")
			tests := []struct {
				name        string
				r           req
				status      int
				code, words string
				reachesUser bool
			}{
				{"a token the users service refuses is 401 with its reason", req{body: `{"refresh_token":"rt-spent"}`}, 401, "unauthenticated", "already used", true},
				{"malformed JSON is 400", req{body: `{"refresh_token":`}, 400, "bad_request", "malformed JSON", false},
				{"an unknown field is 400", req{body: `{"refresh_token":"rt-good","user_id":"u1"}`}, 400, "bad_request", "user_id", false},
				{"a token of the wrong type is 400", req{body: `{"refresh_token":42}`}, 400, "bad_request", "refresh_token", false},
				{"an empty body is 400", req{body: ` `}, 400, "bad_request", "", false},
				{"a missing token is 422", req{body: `{}`}, 422, "unprocessable_entity", "refresh_token is required", false},
				{"another content type is 415", req{body: `refresh_token=rt-good`, header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 415, "unsupported_media_type", "application/json", false},
				{"an oversize token is 401 without asking the users service", req{body: `{"refresh_token":"` + strings.Repeat("x", 257) + `"}`}, 401, "unauthenticated", "not valid", false},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					ta.users.Reset()
					tt.r.method, tt.r.path = "POST", path
					rec := ta.do(t, tt.r)
					msg := wantError(t, rec, tt.status, tt.code)
					if !strings.Contains(msg, tt.words) {
						t.Errorf("message %q does not say %q", msg, tt.words)
					}
					if rec.Header().Get("Cache-Control") != "no-store" {
						t.Error("an auth answer without Cache-Control: no-store")
					}
					if got := len(ta.users.Calls()) > 0; got != tt.reachesUser {
						t.Errorf("reached the users service: %v, want %v", got, tt.reachesUser)
					}
				})
			}
		})
	}
	t.Run("the users service down is 503", func(t *testing.T) {
		ta := newTestAPI(t)
		ta.users.Answer = func(string, any) (any, error) {
			return nil, merrors.New(usersrpc.Service, "marketmesh.users unavailable", 503)
		}
		for _, path := range []string{"/v1/auth/refresh", "/v1/auth/logout"} {
			wantError(t, ta.do(t, req{method: "POST", path: path, body: `{"refresh_token":"rt-good"}`}), 503, "unavailable")
		}
	})
}

func TestRefreshAndLogoutAreLimitedPerClientAddress(t *testing.T) {
	ta := newTestAPI(t, func(o *server.Options) { o.RefreshPerMinuteIP = 3 })
	sessions(ta, "01HCALLER")
	const ip = "198.51.100.7:4000"
	send := func(path, body, remote string) int {
		return ta.do(t, req{method: "POST", path: path, body: body, remote: remote}).Code
	}
	// Malformed bodies take nothing from the budget.
	for range 5 {
		if st := send("/v1/auth/refresh", `{`, ip); st != 400 {
			t.Fatalf("malformed: %d", st)
		}
	}
	// Refreshes and logouts share it, and refused tokens count too.
	if st := send("/v1/auth/refresh", `{"refresh_token":"rt-good"}`, ip); st != 200 {
		t.Fatalf("first refresh: %d", st)
	}
	if st := send("/v1/auth/refresh", `{"refresh_token":"rt-guess"}`, ip); st != 401 {
		t.Fatalf("a guess: %d", st)
	}
	if st := send("/v1/auth/logout", `{"refresh_token":"rt-good"}`, ip); st != 204 {
		t.Fatalf("logout: %d", st)
	}
	before := len(ta.users.Calls())
	for _, path := range []string{"/v1/auth/refresh", "/v1/auth/logout"} {
		rec := ta.do(t, req{method: "POST", path: path, body: `{"refresh_token":"rt-good"}`, remote: ip})
		wantError(t, rec, 429, "rate_limited")
		if secs, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || secs < 1 || secs > 20 {
			t.Errorf("%s: Retry-After = %q, want 1..20 s (3 a minute)", path, rec.Header().Get("Retry-After"))
		}
	}
	if n := len(ta.users.Calls()) - before; n != 0 {
		t.Errorf("%d limited requests reached the users service", n)
	}
	// Another address has its own budget.
	if st := send("/v1/auth/refresh", `{"refresh_token":"rt-good"}`, "203.0.113.9:5000"); st != 200 {
		t.Fatalf("another address: %d", st)
	}
}

func TestAccessTokensExpireAndRotatedKeysStillVerify(t *testing.T) {
	oldKey := newKey(t)
	ta := newTestAPI(t, func(o *server.Options) {
		o.Signer = auth.NewSigner(newKey(t), auth.OldKeys(oldKey.Public().(ed25519.PublicKey)))
	})
	issue := func(s *auth.Signer) string {
		t.Helper()
		tok, _, err := s.Issue("01HCALLER")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// me asks for the caller's profile with tok: the status, and the
	// message of an error.
	me := func(tok string) (int, string) {
		t.Helper()
		rec := ta.do(t, req{method: "GET", path: "/v1/users/me", bearer: tok})
		if rec.Code == 200 {
			return 200, ""
		}
		return rec.Code, wantError(t, rec, rec.Code, "unauthenticated")
	}

	t.Run("a token of the rotated-out key is accepted until it expires", func(t *testing.T) {
		if code, msg := me(issue(auth.NewSigner(oldKey))); code != 200 {
			t.Fatalf("status %d: %s", code, msg)
		}
	})
	t.Run("an expired token is 401 saying to refresh it", func(t *testing.T) {
		past := func() time.Time { return time.Now().Add(-16 * time.Minute) }
		code, msg := me(issue(auth.NewSigner(oldKey, auth.Clock(past))))
		if code != 401 || !strings.Contains(msg, "expired") || !strings.Contains(msg, "/v1/auth/refresh") {
			t.Fatalf("status %d, message %q", code, msg)
		}
	})
	t.Run("a token of a key the api does not know is 401", func(t *testing.T) {
		code, msg := me(issue(auth.NewSigner(newKey(t))))
		if code != 401 || strings.Contains(msg, "expired:") {
			t.Fatalf("status %d, message %q", code, msg)
		}
	})
	t.Run("a day-long token is 401: access tokens live 15 minutes", func(t *testing.T) {
		if code, _ := me(issue(auth.NewSigner(oldKey, auth.TTL(24*time.Hour)))); code != 401 {
			t.Fatalf("status %d", code)
		}
	})
}
