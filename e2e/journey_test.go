package e2e

import (
	"net/http"
	"strings"
	"testing"
)

func TestUserJourneyThroughTheAPI(t *testing.T) {
	m := startMesh(t)

	ada, adaToken := m.signup("Ada@Example.com")
	_, bobToken := m.signup("bob@example.com")

	t.Run("a duplicate email is a conflict, whatever its case", func(t *testing.T) {
		st, body, hdr := m.call("POST", "/v1/auth/register", "", map[string]string{"email": "ADA@example.com", "password": "another pass", "name": "Ada 2"})
		if st != http.StatusConflict || errorCode(t, body, hdr) != "conflict" {
			t.Fatalf("got %d %v", st, body)
		}
	})
	t.Run("a wrong password and an unknown email get the same 401", func(t *testing.T) {
		st1, b1, h1 := m.call("POST", "/v1/auth/login", "", map[string]string{"email": "ada@example.com", "password": "wrong password"})
		st2, b2, h2 := m.call("POST", "/v1/auth/login", "", map[string]string{"email": "nobody@example.com", "password": "wrong password"})
		if st1 != 401 || st2 != 401 || errorCode(t, b1, h1) != "unauthenticated" || errorCode(t, b2, h2) != "unauthenticated" {
			t.Fatalf("got %d %v and %d %v", st1, b1, st2, b2)
		}
		if b1["error"].(map[string]any)["message"] != b2["error"].(map[string]any)["message"] {
			t.Fatalf("messages differ, so they reveal which emails exist: %v vs %v", b1, b2)
		}
	})
	t.Run("no token and a bad token are 401", func(t *testing.T) {
		for _, tok := range []string{"", "not-a-jwt"} {
			st, body, hdr := m.call("GET", "/v1/users/me", tok, nil)
			if st != 401 || errorCode(t, body, hdr) != "unauthenticated" || hdr.Get("WWW-Authenticate") == "" {
				t.Fatalf("token %q: got %d %v", tok, st, body)
			}
		}
	})
	t.Run("me returns the caller and PATCH changes name and phone", func(t *testing.T) {
		me := m.must(200, "GET", "/v1/users/me", adaToken, nil)
		if me["id"] != ada || me["email"] != "ada@example.com" {
			t.Fatalf("me = %v", me)
		}
		me = m.must(200, "PATCH", "/v1/users/me", adaToken, map[string]string{"name": "Ada Lovelace", "phone": "+44 20 7946 0018"})
		if me["name"] != "Ada Lovelace" || me["phone"] != "+442079460018" {
			t.Fatalf("patched = %v", me)
		}
		st, body, hdr := m.call("PATCH", "/v1/users/me", adaToken, map[string]string{"phone": "12"})
		if st != 422 || errorCode(t, body, hdr) != "unprocessable_entity" || !strings.Contains(body["error"].(map[string]any)["message"].(string), "phone") {
			t.Fatalf("bad phone: %d %v", st, body)
		}
	})
	t.Run("the public profile shows name and member since, not the email", func(t *testing.T) {
		p := m.must(200, "GET", "/v1/users/"+ada, "", nil)
		if p["name"] != "Ada Lovelace" || p["member_since"] == nil || p["email"] != nil {
			t.Fatalf("profile = %v", p)
		}
		m.must(404, "GET", "/v1/users/01UNKNOWN", "", nil)
	})
	t.Run("the wishlist keeps publication IDs per user", func(t *testing.T) {
		pubA := m.seedPublication(bobToken, "Wished lamp", 1200, "USD", 1)
		pubB := m.seedPublication(bobToken, "Wished chair", 5400, "USD", 1)
		m.must(404, "POST", "/v1/users/me/wishlist", adaToken, map[string]string{"publication_id": "01UNKNOWNPUB"})
		m.must(201, "POST", "/v1/users/me/wishlist", adaToken, map[string]string{"publication_id": pubA})
		m.must(200, "POST", "/v1/users/me/wishlist", adaToken, map[string]string{"publication_id": pubA})
		m.must(201, "POST", "/v1/users/me/wishlist", adaToken, map[string]string{"publication_id": pubB})
		list := m.must(200, "GET", "/v1/users/me/wishlist", adaToken, nil)
		if n := len(list["items"].([]any)); n != 2 {
			t.Fatalf("ada's wishlist has %d items: %v", n, list)
		}
		if n := len(m.must(200, "GET", "/v1/users/me/wishlist", bobToken, nil)["items"].([]any)); n != 0 {
			t.Fatalf("bob sees %d of ada's wishlist items", n)
		}
		m.must(204, "DELETE", "/v1/users/me/wishlist/"+pubA, adaToken, nil)
		m.must(404, "DELETE", "/v1/users/me/wishlist/"+pubA, adaToken, nil)
		page := m.must(200, "GET", "/v1/users/me/wishlist?page_size=1", adaToken, nil)
		if len(page["items"].([]any)) != 1 || page["next_page_token"] != "" {
			t.Fatalf("page = %v", page)
		}
	})
	t.Run("a bank account number is only ever shown masked", func(t *testing.T) {
		acct := m.must(201, "POST", "/v1/users/me/bank-accounts", adaToken, map[string]string{
			"holder": "Ada Lovelace", "bank": "Coutts", "account_number": "GB29 NWBK 6016 1331 9268 19", "currency": "GBP"})
		if acct["account_number"] != "****6819" {
			t.Fatalf("account = %v", acct)
		}
		list := m.must(200, "GET", "/v1/users/me/bank-accounts", adaToken, nil)
		items := list["items"].([]any)
		if len(items) != 1 || items[0].(map[string]any)["account_number"] != "****6819" {
			t.Fatalf("list = %v", list)
		}
		id := acct["id"].(string)
		// Another user can neither see nor delete it, and cannot tell it exists.
		if n := len(m.must(200, "GET", "/v1/users/me/bank-accounts", bobToken, nil)["items"].([]any)); n != 0 {
			t.Fatalf("bob sees %d of ada's accounts", n)
		}
		m.must(404, "DELETE", "/v1/users/me/bank-accounts/"+id, bobToken, nil)
		m.must(204, "DELETE", "/v1/users/me/bank-accounts/"+id, adaToken, nil)
		st, body, hdr := m.call("POST", "/v1/users/me/bank-accounts", adaToken, map[string]string{
			"holder": "Ada", "bank": "Coutts", "account_number": "12345678", "currency": "usd"})
		if st != 422 || errorCode(t, body, hdr) != "unprocessable_entity" || !strings.Contains(body["error"].(map[string]any)["message"].(string), "currency") {
			t.Fatalf("lower-case currency: %d %v", st, body)
		}
	})
	t.Run("devices are registered and removed by token", func(t *testing.T) {
		m.must(201, "POST", "/v1/users/me/devices", adaToken, map[string]string{"token": "fcm-token-1", "platform": "android"})
		m.must(200, "POST", "/v1/users/me/devices", adaToken, map[string]string{"token": "fcm-token-1", "platform": "android"})
		if n := len(m.must(200, "GET", "/v1/users/me/devices", adaToken, nil)["items"].([]any)); n != 1 {
			t.Fatalf("devices = %d", n)
		}
		m.must(404, "DELETE", "/v1/users/me/devices/fcm-token-1", bobToken, nil)
		m.must(204, "DELETE", "/v1/users/me/devices/fcm-token-1", adaToken, nil)
		m.must(422, "POST", "/v1/users/me/devices", adaToken, map[string]string{"token": "x", "platform": "blackberry"})
	})
	t.Run("notification preferences default to on and can be changed", func(t *testing.T) {
		p := m.must(200, "GET", "/v1/users/me/notification-preferences", bobToken, nil)
		if p["email"] != true || p["push"] != true {
			t.Fatalf("defaults = %v", p)
		}
		m.must(200, "PUT", "/v1/users/me/notification-preferences", bobToken, map[string]bool{"email": false, "push": true})
		p = m.must(200, "GET", "/v1/users/me/notification-preferences", bobToken, nil)
		if p["email"] != false || p["push"] != true {
			t.Fatalf("after PUT = %v", p)
		}
		m.must(422, "PUT", "/v1/users/me/notification-preferences", bobToken, map[string]bool{"email": false})
	})
}

func TestBadInputIsA4xxNeverA500(t *testing.T) {
	m := startMesh(t, "API_LOGIN_PER_MINUTE_EMAIL=5")
	_, token := m.signup("carol@example.com")
	huge := `{"email":"x@example.com","password":"12345678","name":"` + strings.Repeat("a", 2<<20) + `"}`
	cases := []struct {
		name, method, path, token string
		body                      any
		status                    int
		mention                   string
	}{
		{"malformed JSON", "POST", "/v1/auth/register", "", `{"email":`, 400, "malformed"},
		{"an unknown field", "POST", "/v1/auth/register", "", `{"email":"a@b.co","password":"12345678","name":"A","role":"admin"}`, 400, "role"},
		{"a wrong type", "POST", "/v1/auth/register", "", `{"email":42,"password":"12345678","name":"A"}`, 400, "email"},
		{"an empty required field", "POST", "/v1/auth/register", "", `{"email":"a@b.co","password":"12345678","name":""}`, 422, "name"},
		{"an invalid email", "POST", "/v1/auth/register", "", `{"email":"not-an-email","password":"12345678","name":"A"}`, 422, "email"},
		{"a short password", "POST", "/v1/auth/register", "", `{"email":"a@b.co","password":"short","name":"A"}`, 422, "password"},
		{"a huge body", "POST", "/v1/auth/register", "", huge, 413, "exceeds"},
		{"trailing data", "POST", "/v1/auth/login", "", `{"email":"a@b.co","password":"x"} {}`, 400, "single JSON object"},
		{"an array body", "PATCH", "/v1/users/me", token, `[1,2]`, 400, "object"},
		{"an empty patch", "PATCH", "/v1/users/me", token, `{}`, 422, "name"},
		{"a control character in a name", "PATCH", "/v1/users/me", token, `{"name":"a\u0007b"}`, 422, "name"},
		{"a bad page size", "GET", "/v1/users/me/wishlist?page_size=500", token, nil, 400, "page_size"},
		{"a malformed query string", "GET", "/v1/users/me/wishlist?page_token=%%%", token, nil, 400, "query"},
		{"a forged page token", "GET", "/v1/users/me/wishlist?page_token=%21%21", token, nil, 400, "page_token"},
		{"an unknown route", "GET", "/v1/nothing-here", "", nil, 404, "no route"},
		{"a wrong method", "PUT", "/v1/auth/login", "", nil, 405, "not allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, body, hdr := m.call(c.method, c.path, c.token, c.body)
			if st != c.status {
				t.Fatalf("status %d, want %d: %v", st, c.status, body)
			}
			errorCode(t, body, hdr)
			if msg := body["error"].(map[string]any)["message"].(string); !strings.Contains(msg, c.mention) {
				t.Fatalf("message %q does not mention %q", msg, c.mention)
			}
		})
	}
	t.Run("guessing one account's password is rate limited", func(t *testing.T) {
		var st int
		var body map[string]any
		var hdr http.Header
		for i := 0; i < 6 && st != http.StatusTooManyRequests; i++ {
			st, body, hdr = m.call("POST", "/v1/auth/login", "", map[string]string{"email": "carol@example.com", "password": "guess-" + strings.Repeat("x", i)})
		}
		if st != http.StatusTooManyRequests || errorCode(t, body, hdr) != "rate_limited" || hdr.Get("Retry-After") == "" {
			t.Fatalf("after 6 quick attempts: %d %v (Retry-After %q)", st, body, hdr.Get("Retry-After"))
		}
	})
	// The service stayed healthy through all of it and the data is intact.
	if me := m.must(200, "GET", "/v1/users/me", token, nil); me["email"] != "carol@example.com" {
		t.Fatalf("me = %v", me)
	}
}
