package auth_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/marketmesh/marketmesh/plugins/auth"
)

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fixedClock returns a clock frozen at now.
func fixedClock(now time.Time) auth.Option { return auth.Clock(func() time.Time { return now }) }

// signAs signs claims with key, the header naming key as Issue does, the
// way a forger holding key (or a test building odd claims) would.
func signAs(t *testing.T, key ed25519.PrivateKey, c jwt.Claims) string {
	t.Helper()
	return signWithKID(t, key, auth.KeyID(key.Public().(ed25519.PublicKey)), c)
}

// signWithKID signs claims with key, the header naming kid ("": no kid).
func signWithKID(t *testing.T, key ed25519.PrivateKey, kid string, c jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLoadKeyGeneratesOnceAndReuses(t *testing.T) {
	t.Setenv(auth.KeyEnv, "")
	path := filepath.Join(t.TempDir(), "jwt.key")
	first, err := auth.LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	second, err := auth.LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Equal(second) {
		t.Fatal("the second LoadKey returned a different key")
	}
	// A token from a signer built on the first load verifies with the second.
	tok, _, err := auth.NewSigner(first).Issue("user-1")
	if err != nil {
		t.Fatal(err)
	}
	if sub, err := auth.NewSigner(second).Verify(tok); err != nil || sub != "user-1" {
		t.Fatalf("Verify = %q, %v", sub, err)
	}
}

func TestConcurrentLoadKeyCallsGetTheSameKey(t *testing.T) {
	t.Setenv(auth.KeyEnv, "")
	path := filepath.Join(t.TempDir(), "jwt.key")
	const n = 8
	keys := make([]ed25519.PrivateKey, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			keys[i], errs[i] = auth.LoadKey(path)
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("LoadKey %d: %v", i, errs[i])
		}
		if !keys[i].Equal(keys[0]) {
			t.Fatalf("LoadKey %d returned a different key", i)
		}
	}
}

func TestLoadKeyFromTheEnvironment(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	t.Setenv(auth.KeyEnv, base64.StdEncoding.EncodeToString(seed))
	k, err := auth.LoadKey(filepath.Join(t.TempDir(), "unused.key"))
	if err != nil {
		t.Fatal(err)
	}
	if !k.Equal(ed25519.NewKeyFromSeed(seed)) {
		t.Fatal("LoadKey did not use the env seed")
	}

	t.Setenv(auth.KeyEnv, base64.StdEncoding.EncodeToString([]byte("short")))
	if _, err := auth.LoadKey(""); err == nil || !strings.Contains(err.Error(), "32-byte") {
		t.Fatalf("a short seed gave %v, want a size error", err)
	}
}

func TestIssuedTokensVerify(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s := auth.NewSigner(newKey(t), auth.TTL(time.Hour), fixedClock(now))
	tok, exp, err := s.Issue("user-42")
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(now.Add(time.Hour)) {
		t.Fatalf("expiry %v, want %v", exp, now.Add(time.Hour))
	}
	sub, err := s.Verify(tok)
	if err != nil || sub != "user-42" {
		t.Fatalf("Verify = %q, %v; want user-42", sub, err)
	}
	tok2, _, _ := s.Issue("user-42")
	if tok2 == tok {
		t.Fatal("two tokens for the same user are identical: the jti should differ")
	}
}

func TestUntrustworthyTokensAreRejected(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	verifier := auth.NewSigner(key, fixedClock(now))

	claims := func(mod func(*jwt.RegisteredClaims)) jwt.RegisteredClaims {
		c := jwt.RegisteredClaims{
			Issuer:    auth.Issuer,
			Subject:   "user-1",
			Audience:  jwt.ClaimStrings{auth.Audience},
			IssuedAt:  jwt.NewNumericDate(now.Add(-time.Minute)),
			NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
			ExpiresAt: jwt.NewNumericDate(now.Add(10 * time.Minute)),
		}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	signEd := func(t *testing.T, k ed25519.PrivateKey, c jwt.RegisteredClaims) string {
		t.Helper()
		return signAs(t, k, c)
	}

	tests := []struct {
		name  string
		token func(t *testing.T) string
	}{
		{"an expired token is rejected", func(t *testing.T) string {
			old := auth.NewSigner(key, auth.TTL(time.Hour), fixedClock(now.Add(-2*time.Hour)))
			tok, _, err := old.Issue("user-1")
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}},
		{"a token signed by another key is rejected", func(t *testing.T) string {
			tok, _, err := auth.NewSigner(newKey(t), fixedClock(now)).Issue("user-1")
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}},
		{"an unsigned token with alg none is rejected", func(t *testing.T) string {
			tok, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}},
		{"an HS256 token keyed with the public key is rejected", func(t *testing.T) string {
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
			tok.Header["kid"] = auth.KeyID(pub)
			s, err := tok.SignedString([]byte(pub))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"a token for another audience is rejected", func(t *testing.T) string {
			return signEd(t, key, claims(func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"someone-else"} }))
		}},
		{"a token without an audience is rejected", func(t *testing.T) string {
			return signEd(t, key, claims(func(c *jwt.RegisteredClaims) { c.Audience = nil }))
		}},
		{"a token without a kid is rejected", func(t *testing.T) string {
			return signWithKID(t, key, "", claims(nil))
		}},
		{"a token naming an unknown kid is rejected", func(t *testing.T) string {
			return signWithKID(t, key, "not-a-key-of-ours", claims(nil))
		}},
		{"a token naming our kid but signed by another key is rejected", func(t *testing.T) string {
			return signWithKID(t, newKey(t), auth.KeyID(pub), claims(nil))
		}},
		{"a token from another issuer is rejected", func(t *testing.T) string {
			return signEd(t, key, claims(func(c *jwt.RegisteredClaims) { c.Issuer = "someone-else" }))
		}},
		{"a token without expiry is rejected", func(t *testing.T) string {
			return signEd(t, key, claims(func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil }))
		}},
		{"a token without subject is rejected", func(t *testing.T) string {
			return signEd(t, key, claims(func(c *jwt.RegisteredClaims) { c.Subject = "" }))
		}},
		{"a token not valid yet is rejected", func(t *testing.T) string {
			return signEd(t, key, claims(func(c *jwt.RegisteredClaims) { c.NotBefore = jwt.NewNumericDate(now.Add(10 * time.Minute)) }))
		}},
		{"a token without an issue time is rejected", func(t *testing.T) string {
			return signEd(t, key, claims(func(c *jwt.RegisteredClaims) { c.IssuedAt = nil }))
		}},
		{"a token issued in the future beyond the leeway is rejected", func(t *testing.T) string {
			return signEd(t, key, claims(func(c *jwt.RegisteredClaims) { c.IssuedAt = jwt.NewNumericDate(now.Add(2 * time.Minute)) }))
		}},
		{"a token living longer than the TTL is rejected", func(t *testing.T) string {
			return signEd(t, key, claims(func(c *jwt.RegisteredClaims) {
				c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Minute + auth.DefaultTTL + time.Minute))
			}))
		}},
		{"a token with a tampered payload is rejected", func(t *testing.T) string {
			parts := strings.Split(signEd(t, key, claims(nil)), ".")
			other := strings.Split(signEd(t, key, claims(func(c *jwt.RegisteredClaims) { c.Subject = "admin" })), ".")
			return parts[0] + "." + other[1] + "." + parts[2]
		}},
		{"garbage is rejected", func(*testing.T) string { return "not.a.token" }},
		{"an empty string is rejected", func(*testing.T) string { return "" }},
	}
	// The control: the same claims, correctly signed, pass.
	if sub, err := verifier.Verify(signEd(t, key, claims(nil))); err != nil || sub != "user-1" {
		t.Fatalf("control token: Verify = %q, %v", sub, err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, err := verifier.Verify(tt.token(t))
			if !errors.Is(err, auth.ErrInvalidToken) || sub != "" {
				t.Fatalf("Verify = %q, %v; want \"\", ErrInvalidToken", sub, err)
			}
		})
	}
}

func TestLeewayAcceptsSmallClockSkew(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	key := newKey(t)
	tok, _, err := auth.NewSigner(key, auth.TTL(time.Minute), fixedClock(now)).Issue("user-1")
	if err != nil {
		t.Fatal(err)
	}
	// 10 s after expiry is within the default 30 s leeway; 2 min is not.
	if _, err := auth.NewSigner(key, fixedClock(now.Add(70*time.Second))).Verify(tok); err != nil {
		t.Fatalf("10 s past expiry: %v", err)
	}
	if _, err := auth.NewSigner(key, fixedClock(now.Add(3*time.Minute))).Verify(tok); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("2 min past expiry: %v, want ErrInvalidToken", err)
	}
}

func TestATokenLivesAtMostTheTTL(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	key := newKey(t)
	sign := func(t *testing.T, iat time.Time, life time.Duration) string {
		t.Helper()
		return signAs(t, key, jwt.RegisteredClaims{
			Issuer: auth.Issuer, Subject: "user-1", Audience: jwt.ClaimStrings{auth.Audience},
			IssuedAt: jwt.NewNumericDate(iat), ExpiresAt: jwt.NewNumericDate(iat.Add(life)),
		})
	}
	verifier := auth.NewSigner(key, auth.TTL(time.Hour), fixedClock(now))
	tests := []struct {
		name  string
		token string
		ok    bool
	}{
		{"a token living exactly the TTL is accepted", sign(t, now, time.Hour), true},
		{"a token living the TTL plus the leeway is accepted", sign(t, now, time.Hour+30*time.Second), true},
		{"a token living a second beyond the TTL plus the leeway is rejected", sign(t, now, time.Hour+31*time.Second), false},
		{"a day-long token is rejected by a one-hour signer", sign(t, now.Add(-time.Minute), 24*time.Hour), false},
		{"an issue time within the leeway in the future is accepted", sign(t, now.Add(20*time.Second), time.Hour), true},
		{"an issue time beyond the leeway in the future is rejected", sign(t, now.Add(time.Minute), time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, err := verifier.Verify(tt.token)
			if tt.ok && (err != nil || sub != "user-1") {
				t.Fatalf("Verify = %q, %v; want user-1", sub, err)
			}
			if !tt.ok && !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("Verify = %q, %v; want ErrInvalidToken", sub, err)
			}
		})
	}
	t.Run("tokens issued before the TTL was shortened are refused", func(t *testing.T) {
		long, _, err := auth.NewSigner(key, auth.TTL(24*time.Hour), fixedClock(now)).Issue("user-1")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := verifier.Verify(long); !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("a 24 h token under a 1 h TTL: %v, want ErrInvalidToken", err)
		}
		if _, err := auth.NewSigner(key, auth.TTL(24*time.Hour), fixedClock(now)).Verify(long); err != nil {
			t.Fatalf("the same token under its own TTL: %v", err)
		}
	})
}

func TestRolesTravelInTheToken(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s := auth.NewSigner(newKey(t), fixedClock(now))
	tests := []struct {
		name  string
		roles []string
		admin bool
	}{
		{"a token issued without roles grants none", nil, false},
		{"a token issued with the admin role grants it", []string{auth.RoleAdmin}, true},
		{"a role given twice is granted once", []string{auth.RoleAdmin, auth.RoleAdmin}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, _, err := s.Issue("user-7", tt.roles...)
			if err != nil {
				t.Fatal(err)
			}
			c, err := s.VerifyClaims(tok)
			if err != nil || c.Subject != "user-7" {
				t.Fatalf("VerifyClaims = %+v, %v", c, err)
			}
			if c.Has(auth.RoleAdmin) != tt.admin {
				t.Fatalf("roles %v: admin = %v, want %v", c.Roles, !tt.admin, tt.admin)
			}
			if tt.admin && len(c.Roles) != 1 {
				t.Fatalf("roles %v, want [admin]", c.Roles)
			}
			if sub, err := s.Verify(tok); err != nil || sub != "user-7" {
				t.Fatalf("Verify = %q, %v", sub, err)
			}
		})
	}
}

func TestATokenWithoutRolesHasNoRolesClaim(t *testing.T) {
	tok, _, err := auth.NewSigner(newKey(t)).Issue("user-1")
	if err != nil {
		t.Fatal(err)
	}
	var c jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
		t.Fatal(err)
	}
	if _, ok := c["roles"]; ok {
		t.Fatalf("claims %v carry roles", c)
	}
}

func TestIssuingAnUnknownRoleFails(t *testing.T) {
	s := auth.NewSigner(newKey(t))
	for _, role := range []string{"Admin", "root", ""} {
		if tok, _, err := s.Issue("user-1", role); err == nil || tok != "" {
			t.Errorf("Issue with role %q = %q, %v; want an error", role, tok, err)
		}
	}
}

func TestUnknownRolesInATokenAreIgnored(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	key := newKey(t)
	verifier := auth.NewSigner(key, fixedClock(now))
	sign := func(t *testing.T, roles any) string {
		t.Helper()
		return signAs(t, key, jwt.MapClaims{
			"iss": auth.Issuer, "aud": auth.Audience, "sub": "user-1", "iat": now.Unix(), "nbf": now.Unix(),
			"exp": now.Add(10 * time.Minute).Unix(), "roles": roles,
		})
	}
	c, err := verifier.VerifyClaims(sign(t, []string{"superuser", "ADMIN", auth.RoleAdmin, "auditor"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "user-1" || len(c.Roles) != 1 || !c.Has(auth.RoleAdmin) {
		t.Fatalf("claims %+v, want user-1 with only the admin role", c)
	}
	c, err = verifier.VerifyClaims(sign(t, []string{"superuser"}))
	if err != nil || c.Has(auth.RoleAdmin) || len(c.Roles) != 0 {
		t.Fatalf("a token with only unknown roles: %+v, %v; want valid, without roles", c, err)
	}
	// A roles claim that is not a list of strings is not ours: refused.
	if _, err := verifier.VerifyClaims(sign(t, "admin")); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("roles as a string: %v, want ErrInvalidToken", err)
	}
}

func TestRolesCannotBeAddedToAToken(t *testing.T) {
	key := newKey(t)
	s := auth.NewSigner(key)
	tok, _, err := s.Issue("user-1")
	if err != nil {
		t.Fatal(err)
	}
	// Re-encode the payload with an admin role, keeping the signature.
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	forged := strings.Replace(string(payload), `"sub":"user-1"`, `"sub":"user-1","roles":["admin"]`, 1)
	if forged == string(payload) {
		t.Fatalf("payload %s has no subject to extend", payload)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(forged))
	if c, err := s.VerifyClaims(strings.Join(parts, ".")); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("a token with an added role: %+v, %v; want ErrInvalidToken", c, err)
	}
}
