package server_test

import (
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/plugins/auth"
)

func TestProtectedRoutesRequireAValidBearerToken(t *testing.T) {
	ta := newTestAPI(t)
	valid := ta.token(t, "01HCALLER")

	issue := func(s *auth.Signer) string {
		t.Helper()
		tok, _, err := s.Issue("01HCALLER")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	past := func() time.Time { return time.Now().Add(-25 * time.Hour) }
	future := func() time.Time { return time.Now().Add(time.Hour) }
	expired := issue(auth.NewSigner(ta.key, auth.Clock(past)))
	notYetValid := issue(auth.NewSigner(ta.key, auth.Clock(future)))
	otherKey := issue(auth.NewSigner(newKey(t)))
	tooLong := issue(auth.NewSigner(ta.key, auth.TTL(30*24*time.Hour)))

	tests := []struct {
		name, authorization string
	}{
		{"a missing header is 401", ""},
		{"the Basic scheme is 401", "Basic dXNlcjpwYXNzd29yZA=="},
		{"another scheme with a valid token is 401", "Token " + valid},
		{"a token without a scheme is 401", valid},
		{"Bearer without a token is 401", "Bearer"},
		{"Bearer with only spaces is 401", "Bearer    "},
		{"a garbage token is 401", "Bearer not.a.jwt"},
		{"a truncated token is 401", "Bearer " + valid[:len(valid)-5]},
		{"an expired token is 401", "Bearer " + expired},
		{"a token from the future is 401", "Bearer " + notYetValid},
		{"a token signed by another key is 401", "Bearer " + otherKey},
		{"a token meant to live longer than the TTL is 401", "Bearer " + tooLong},
	}
	protected := [][2]string{
		{"GET", "/v1/users/me"},
		{"PATCH", "/v1/users/me"},
		{"GET", "/v1/users/me/wishlist"},
		{"DELETE", "/v1/users/me/devices/tok-1"},
		{"PUT", "/v1/users/me/notification-preferences"},
		{"GET", "/v1/cart"},
		{"POST", "/v1/cart/items"},
		{"DELETE", "/v1/cart/items/pub-1"},
		{"POST", "/v1/cart/checkout"},
		{"POST", "/v1/orders"},
		{"GET", "/v1/orders"},
		{"GET", "/v1/orders/o1"},
		{"POST", "/v1/orders/o1/cancel"},
		{"POST", "/v1/orders/o1/ship"},
		{"POST", "/v1/orders/o1/deliver"},
		{"GET", "/v1/notifications"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range protected {
				rec := ta.do(t, req{method: p[0], path: p[1], body: `{}`, header: map[string]string{"Authorization": tt.authorization}})
				wantError(t, rec, 401, "unauthenticated")
				if got := rec.Header().Get("WWW-Authenticate"); got != `Bearer realm="marketmesh"` {
					t.Errorf("%s %s: WWW-Authenticate = %q", p[0], p[1], got)
				}
			}
		})
	}
	if n := len(ta.users.Calls()); n != 0 {
		t.Fatalf("%d unauthenticated calls reached the users service", n)
	}

	// The same requests with a valid token get through, so the 401s above
	// are about the tokens.
	accepted := []struct{ name, authorization string }{
		{"a valid token is accepted", "Bearer " + valid},
		{"the scheme is case-insensitive", "bearer " + valid},
		{"extra spaces around the token are ignored", "Bearer   " + valid + " "},
	}
	for _, tt := range accepted {
		t.Run(tt.name, func(t *testing.T) {
			before := len(ta.users.Calls())
			rec := ta.do(t, req{method: "GET", path: "/v1/users/me", header: map[string]string{"Authorization": tt.authorization}})
			if rec.Code != 200 {
				t.Fatalf("status = %d: %s", rec.Code, rec.Body)
			}
			calls := ta.users.Calls()[before:]
			if len(calls) != 1 || calls[0].Caller != "01HCALLER" {
				t.Errorf("calls = %+v, want one as 01HCALLER", calls)
			}
		})
	}
}

func TestPublicRoutesNeedNoToken(t *testing.T) {
	ta := newTestAPI(t)
	for _, r := range []req{
		{method: "GET", path: "/v1/users/01HSOMEONE"},
		{method: "GET", path: "/healthz"},
		{method: "GET", path: "/openapi.json"},
		{method: "GET", path: "/docs"},
	} {
		// A bad token on a public route is ignored, not refused.
		r.header = map[string]string{"Authorization": "Bearer garbage"}
		if rec := ta.do(t, r); rec.Code != 200 {
			t.Errorf("%s %s = %d: %s", r.method, r.path, rec.Code, rec.Body)
		}
	}
	// The public profile composes the users profile and the publication count.
	calls := ta.users.Calls()
	seen := map[string]bool{}
	for _, c := range calls {
		seen[c.Endpoint] = true
		if c.Caller != "" {
			t.Errorf("call %s carries caller %q on a public route", c.Endpoint, c.Caller)
		}
	}
	if len(calls) != 2 || !seen["Users.Profile"] || !seen["Publications.Count"] {
		t.Errorf("calls = %+v, want anonymous Users.Profile and Publications.Count", calls)
	}
}
