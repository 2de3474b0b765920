package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/plugins/auth"
)

// accessTTL is the access token lifetime the mesh of TestRefreshTokens runs
// with (API_TOKEN_TTL), with no leeway: long enough for a few calls, short
// enough to wait out.
const accessTTL = 5 * time.Second

// TestRefreshTokens drives the token pair through the api and the users
// service: login, refresh (the spent token refused and its reuse revoking
// the session), logout, a users restart, and an access token outliving its
// TTL.
func TestRefreshTokens(t *testing.T) {
	m := startMesh(t, "API_TOKEN_TTL="+accessTTL.String(), "API_TOKEN_LEEWAY=0s")
	creds := map[string]string{"email": "ada@example.com", "password": "correct horse"}
	m.must(201, "POST", "/v1/auth/register", "", map[string]string{"email": "ada@example.com", "password": "correct horse", "name": "Ada"})

	login := func(t *testing.T) map[string]any {
		t.Helper()
		return m.must(200, "POST", "/v1/auth/login", "", creds)
	}
	str := func(t *testing.T, pair map[string]any, field string) string {
		t.Helper()
		s, _ := pair[field].(string)
		if s == "" {
			t.Fatalf("no %s in %v", field, pair)
		}
		return s
	}
	refresh := func(token string) (int, map[string]any) {
		st, body, _ := m.call("POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": token})
		return st, body
	}
	// refused checks a 401 in the error shape whose message says what.
	refused := func(t *testing.T, what string, st int, body map[string]any) {
		t.Helper()
		if st != 401 || errorCode(t, body, nil) != "unauthenticated" {
			t.Fatalf("status %d %v, want 401 unauthenticated", st, body)
		}
		if msg, _ := body["error"].(map[string]any)["message"].(string); !strings.Contains(msg, what) {
			t.Fatalf("message %q does not say %q", msg, what)
		}
	}

	t.Run("login answers a token pair", func(t *testing.T) {
		pair := login(t)
		if pair["token_type"] != "Bearer" || pair["expires_in"] != float64(accessTTL/time.Second) || pair["user"] == nil {
			t.Fatalf("pair %v", pair)
		}
		exp, err := time.Parse(time.RFC3339, str(t, pair, "refresh_token_expires_at"))
		if err != nil || time.Until(exp) < 29*24*time.Hour {
			t.Fatalf("refresh_token_expires_at %v (%v), want about 30 days away", exp, err)
		}
		m.must(200, "GET", "/v1/users/me", str(t, pair, "token"), nil)
	})

	t.Run("a refresh rotates the token and the old one is refused; its reuse revokes the session", func(t *testing.T) {
		first := login(t)
		rt1 := str(t, first, "refresh_token")
		st, second := refresh(rt1)
		if st != 200 {
			t.Fatalf("refresh: %d %v", st, second)
		}
		rt2 := str(t, second, "refresh_token")
		if rt2 == rt1 || second["token_type"] != "Bearer" {
			t.Fatalf("second pair %v", second)
		}
		me := m.must(200, "GET", "/v1/users/me", str(t, second, "token"), nil)
		if me["email"] != "ada@example.com" {
			t.Fatalf("me = %v", me)
		}
		// The spent token again: refused, and the session is revoked, so
		// the token it was exchanged for is refused too.
		st, body := refresh(rt1)
		refused(t, "already used", st, body)
		st, body = refresh(rt2)
		refused(t, "revoked", st, body)
	})

	t.Run("logout revokes the session, and only it", func(t *testing.T) {
		mine, other := login(t), login(t)
		rt := str(t, mine, "refresh_token")
		if st, body, _ := m.call("POST", "/v1/auth/logout", "", map[string]string{"refresh_token": rt}); st != 204 || body != nil {
			t.Fatalf("logout: %d %v", st, body)
		}
		st, body := refresh(rt)
		refused(t, "revoked", st, body)
		// A retried logout succeeds again.
		m.must(204, "POST", "/v1/auth/logout", "", map[string]string{"refresh_token": rt})
		if st, body := refresh(str(t, other, "refresh_token")); st != 200 {
			t.Fatalf("the other login after logout: %d %v", st, body)
		}
	})

	t.Run("bad refresh requests are 4xx in the error shape", func(t *testing.T) {
		for _, c := range []struct {
			name, path string
			body       any
			status     int
			words      string
		}{
			{"a token never issued", "/v1/auth/refresh", map[string]string{"refresh_token": strings.Repeat("A", 43)}, 401, "not valid"},
			{"an access token instead", "/v1/auth/refresh", map[string]string{"refresh_token": "eyJhbGciOiJFZERTQSJ9.e30.c2ln"}, 401, "not valid"},
			{"malformed JSON", "/v1/auth/refresh", `{"refresh_token":`, 400, "malformed JSON"},
			{"an unknown field", "/v1/auth/logout", map[string]string{"refresh_token": "x", "user_id": "u1"}, 400, "user_id"},
			{"no token", "/v1/auth/logout", map[string]string{}, 422, "refresh_token is required"},
		} {
			t.Run(c.name, func(t *testing.T) {
				st, body, hdr := m.call("POST", c.path, "", c.body)
				if st != c.status {
					t.Fatalf("status %d %v, want %d", st, body, c.status)
				}
				errorCode(t, body, hdr)
				if msg, _ := body["error"].(map[string]any)["message"].(string); !strings.Contains(msg, c.words) {
					t.Fatalf("message %q does not say %q", msg, c.words)
				}
			})
		}
	})

	t.Run("sessions survive a restart of the users service", func(t *testing.T) {
		rt := str(t, login(t), "refresh_token")
		m.users.stop()
		m.users.start()
		m.consul.WaitPassing(t, "marketmesh.users", 1, 30*time.Second)
		var st int
		var body map[string]any
		// The api may still hold the stopped instance for a moment.
		deadline := time.Now().Add(15 * time.Second)
		for {
			if st, body = refresh(rt); st != 503 || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if st != 200 {
			t.Fatalf("refresh after the restart: %d %v", st, body)
		}
	})

	t.Run("an access token older than its TTL is refused; a refresh gets a new one", func(t *testing.T) {
		pair := login(t)
		token := str(t, pair, "token")
		m.must(200, "GET", "/v1/users/me", token, nil)
		exp, err := time.Parse(time.RFC3339, str(t, pair, "expires_at"))
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Until(exp); d > accessTTL {
			t.Fatalf("expires_at %v is %v away, more than the TTL %v", exp, d, accessTTL)
		}
		time.Sleep(time.Until(exp) + time.Second)
		st, body, hdr := m.call("GET", "/v1/users/me", token, nil)
		if st != 401 || errorCode(t, body, hdr) != "unauthenticated" || hdr.Get("WWW-Authenticate") == "" {
			t.Fatalf("an expired token: %d %v", st, body)
		}
		if msg, _ := body["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "expired") || !strings.Contains(msg, "/v1/auth/refresh") {
			t.Fatalf("message %q: want it to say the token expired and how to refresh", msg)
		}
		st, next := refresh(str(t, pair, "refresh_token"))
		if st != 200 {
			t.Fatalf("refresh after expiry: %d %v", st, next)
		}
		m.must(200, "GET", "/v1/users/me", str(t, next, "token"), nil)
	})
}

// kidOf returns the key ID in a JWT's header.
func kidOf(t *testing.T, token string) string {
	t.Helper()
	head, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		t.Fatalf("token header: %v", err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &h); err != nil || h.Kid == "" {
		t.Fatalf("token header %s: no kid (%v)", raw, err)
	}
	return h.Kid
}

// TestSigningKeyRotationLogsNobodyOut rotates the api's signing key as the
// README says: a new seed in the key file, the old key's public half in
// API_JWT_OLD_PUBLIC_KEYS. Tokens of the old key keep working while it is
// listed, and refresh tokens do not depend on the key at all.
func TestSigningKeyRotationLogsNobodyOut(t *testing.T) {
	m := startMesh(t)
	creds := map[string]string{"email": "ada@example.com", "password": "correct horse"}
	m.must(201, "POST", "/v1/auth/register", "", map[string]string{"email": "ada@example.com", "password": "correct horse", "name": "Ada"})
	before := m.must(200, "POST", "/v1/auth/login", "", creds)
	oldToken, refresh := before["token"].(string), before["refresh_token"].(string)

	keyFile := filepath.Join(m.data, "keys", "jwt-ed25519.key")
	raw, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatalf("the api's key file: %v", err)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(seed) != ed25519.SeedSize {
		t.Fatalf("key file %s: %d bytes, %v", keyFile, len(seed), err)
	}
	oldPub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	if kidOf(t, oldToken) != auth.KeyID(oldPub) {
		t.Fatalf("the token's kid %s is not the key file's %s", kidOf(t, oldToken), auth.KeyID(oldPub))
	}
	newSeed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(newSeed); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(newSeed)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m.restartAPI(t, "API_JWT_OLD_PUBLIC_KEYS="+auth.EncodePublicKey(oldPub))

	m.must(200, "GET", "/v1/users/me", oldToken, nil)
	after := m.must(200, "POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": refresh})
	newToken := after["token"].(string)
	if kidOf(t, newToken) != auth.KeyID(ed25519.NewKeyFromSeed(newSeed).Public().(ed25519.PublicKey)) {
		t.Fatalf("a token issued after the rotation names kid %s, not the new key's", kidOf(t, newToken))
	}
	m.must(200, "GET", "/v1/users/me", newToken, nil)

	// The old key retired for good: its tokens are refused, the new ones not.
	m.restartAPI(t, "API_JWT_OLD_PUBLIC_KEYS=")
	if st, body, hdr := m.call("GET", "/v1/users/me", oldToken, nil); st != 401 || errorCode(t, body, hdr) != "unauthenticated" {
		t.Fatalf("a token of the retired key: %d %v", st, body)
	}
	m.must(200, "GET", "/v1/users/me", newToken, nil)
}
