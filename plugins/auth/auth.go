// Package auth issues and verifies the api's bearer tokens: EdDSA (Ed25519)
// signed JWTs. Only the api holds the private key; services learn the caller
// from RPC metadata set after verification (see rpcmeta).
//
// A token may carry roles (the "roles" claim, a list of strings) that the
// api granted at login; RoleAdmin is the only one. Roles this version does
// not know are dropped on verification, so a token never gains a power by
// naming one.
//
// Every token names its audience (Audience) and, in its header, the key
// that signed it ("kid": KeyID, the RFC 7638 thumbprint of the public key).
// Keys rotate without logging anyone out: a Signer signs with the current
// key and also verifies with the public keys of the keys it replaced
// (OldKeys), until the tokens they signed have expired; a token naming any
// other kid, or none, is refused.
package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oklog/ulid/v2"

	"github.com/marketmesh/marketmesh/plugins/keyfile"
)

// Issuer is the "iss" claim of every token.
const Issuer = "marketmesh"

// Audience is the "aud" claim of every token: the api's routes are what it
// opens. A token for any other audience is refused.
const Audience = "marketmesh"

// ErrInvalidToken is returned for any token that must not be trusted.
var ErrInvalidToken = errors.New("invalid or expired token")

// ErrExpired is returned for a token that was ours but has expired: the
// client should get a new one (the api's /v1/auth/refresh). It matches
// ErrInvalidToken.
var ErrExpired error = &tokenError{"token expired"}

// ErrUnknownKey is returned for a token whose header names no key ("kid")
// this Signer knows: signed by a key retired since, or never ours. It
// matches ErrInvalidToken.
var ErrUnknownKey error = &tokenError{"token signed by an unknown key"}

// tokenError is a more precise ErrInvalidToken.
type tokenError struct{ msg string }

func (e *tokenError) Error() string        { return e.msg }
func (e *tokenError) Is(target error) bool { return target == ErrInvalidToken }

// RoleAdmin is the role of operators: it opens the api's /v1/admin routes.
const RoleAdmin = "admin"

// allRoles lists every role a token may carry.
var allRoles = []string{RoleAdmin}

// KnownRole reports whether role is one this package issues and accepts.
func KnownRole(role string) bool { return slices.Contains(allRoles, role) }

// KeyEnv names the env var that may hold the Ed25519 seed (32 bytes, base64).
const KeyEnv = "AUTH_JWT_KEY"

// DefaultTTL is a token's lifetime unless TTL says otherwise: short, since
// a token cannot be revoked before it expires; clients keep a session going
// with refresh tokens, which can.
const DefaultTTL = 15 * time.Minute

// DefaultLeeway is the clock skew accepted on verification unless Leeway
// says otherwise.
const DefaultLeeway = 30 * time.Second

// MaxLeeway bounds Leeway: more would keep expired tokens alive.
const MaxLeeway = 5 * time.Minute

// Options tune the token signer.
type Options struct {
	TTL    time.Duration // how long a token is valid; verification refuses tokens meant to live longer
	Leeway time.Duration // clock skew accepted on verification
	// OldKeys are the public keys of signing keys rotated out: tokens they
	// signed still verify (until they expire), and they sign nothing.
	OldKeys []ed25519.PublicKey
	Now     func() time.Time
	// CacheSize bounds how many verified tokens are remembered (0: none).
	CacheSize int
}

// Option changes Options.
type Option func(*Options)

// CacheSize sets how many verified tokens a Signer remembers (0 turns the
// cache off; see verified).
func CacheSize(n int) Option { return func(o *Options) { o.CacheSize = n } }

// TTL sets the token lifetime.
func TTL(d time.Duration) Option { return func(o *Options) { o.TTL = d } }

// Leeway sets the clock skew accepted on verification (0..MaxLeeway; a
// value outside is clamped).
func Leeway(d time.Duration) Option { return func(o *Options) { o.Leeway = min(max(d, 0), MaxLeeway) } }

// OldKeys adds public keys of retired signing keys that still verify the
// tokens they signed: keep one until TTL + Leeway after it stopped signing.
func OldKeys(keys ...ed25519.PublicKey) Option {
	return func(o *Options) { o.OldKeys = append(o.OldKeys, keys...) }
}

// Clock replaces time.Now (tests).
func Clock(now func() time.Time) Option { return func(o *Options) { o.Now = now } }

// Signer issues and verifies tokens.
type Signer struct {
	priv ed25519.PrivateKey
	kid  string                       // KeyID of priv's public key: the header of every token issued
	keys map[string]ed25519.PublicKey // kid → key, of every key that verifies: the current and the old ones
	opts Options
	seen *verified
}

// KeyID returns the key ID ("kid") of pub: its JWK thumbprint (RFC 7638,
// SHA-256, base64url), a name anyone holding the public key can recompute.
func KeyID(pub ed25519.PublicKey) string {
	// The thumbprint hashes the required members of the key's JWK, in
	// lexicographic order and without white space.
	jwk := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(jwk))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// EncodePublicKey returns pub in the form ParsePublicKey reads (base64).
func EncodePublicKey(pub ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(pub) }

// ParsePublicKey reads an Ed25519 public key, 32 bytes in base64 (standard,
// as EncodePublicKey writes it, or base64url, as a JWK's "x" holds it).
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b, err = base64.RawURLEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, errors.New("auth: a public key must be base64")
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("auth: a public key must be %d bytes (an Ed25519 public key, not the seed), got %d", ed25519.PublicKeySize, len(b))
	}
	return ed25519.PublicKey(b), nil
}

// ParsePublicKeys reads a configured list of public keys (ParsePublicKey);
// blank entries are skipped.
func ParsePublicKeys(entries []string) ([]ed25519.PublicKey, error) {
	var out []ed25519.PublicKey
	for i, e := range entries {
		if strings.TrimSpace(e) == "" {
			continue
		}
		k, err := ParsePublicKey(e)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		out = append(out, k)
	}
	return out, nil
}

// LoadKey returns the Ed25519 private key from $AUTH_JWT_KEY or the file at
// path, generating a random one there on first run (development).
func LoadKey(path string) (ed25519.PrivateKey, error) {
	seed, err := keyfile.Load(KeyEnv, path, func() ([]byte, error) {
		s := make([]byte, ed25519.SeedSize)
		_, err := rand.Read(s)
		return s, err
	})
	if err != nil {
		return nil, err
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("auth: key must be a %d-byte Ed25519 seed, got %d bytes", ed25519.SeedSize, len(seed))
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// NewSigner returns a Signer that signs with key and verifies with it and
// with OldKeys.
func NewSigner(key ed25519.PrivateKey, opts ...Option) *Signer {
	o := Options{TTL: DefaultTTL, Leeway: DefaultLeeway, Now: time.Now, CacheSize: DefaultCacheSize}
	for _, opt := range opts {
		opt(&o)
	}
	pub := key.Public().(ed25519.PublicKey)
	s := &Signer{priv: key, kid: KeyID(pub), keys: map[string]ed25519.PublicKey{}, opts: o}
	for _, k := range o.OldKeys {
		s.keys[KeyID(k)] = k
	}
	s.keys[s.kid] = pub
	s.seen = newVerified(o.CacheSize)
	return s
}

// KeyID is the ID of the key this Signer signs with (see KeyID).
func (s *Signer) KeyID() string { return s.kid }

// PublicKey is the public half of the key this Signer signs with: what
// OldKeys takes once it is rotated out.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.keys[s.kid] }

// TTL is how long the tokens this Signer issues live.
func (s *Signer) TTL() time.Duration { return s.opts.TTL }

// claims is the token's payload: the registered claims and the roles.
type claims struct {
	jwt.RegisteredClaims
	Roles []string `json:"roles,omitempty"`
}

// Claims is what a verified token says about its bearer.
type Claims struct {
	Subject string   // the user ID
	Roles   []string // the known roles granted at login, sorted; none for most users
}

// Has reports whether the token grants role.
func (c Claims) Has(role string) bool { return slices.Contains(c.Roles, role) }

// Issue returns a signed token for userID, granting roles, and its expiry.
// Every role must be known (KnownRole): a typo must not silently issue a
// token without the power it was meant to carry.
func (s *Signer) Issue(userID string, roles ...string) (string, time.Time, error) {
	granted, err := knownRoles(roles, true)
	if err != nil {
		return "", time.Time{}, err
	}
	now := s.opts.Now().UTC().Truncate(time.Second)
	exp := now.Add(s.opts.TTL)
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    Issuer,
			Subject:   userID,
			Audience:  jwt.ClaimStrings{Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        ulid.Make().String(),
		},
		Roles: granted,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	t.Header["kid"] = s.kid
	tok, err := t.SignedString(s.priv)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign: %w", err)
	}
	return tok, exp, nil
}

// knownRoles returns roles sorted and without duplicates. An unknown role is
// an error when strict, else dropped.
func knownRoles(roles []string, strict bool) ([]string, error) {
	var out []string
	for _, r := range roles {
		if !KnownRole(r) {
			if strict {
				return nil, fmt.Errorf("auth: unknown role %q", r)
			}
			continue
		}
		out = append(out, r)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Verify checks signature, key, algorithm, issuer, audience and time
// claims, and returns the subject. The header must name (kid) the current
// key or one of OldKeys, and that key must have signed it.
// Besides expiry and not-before, the token must say when it was issued
// (iat, not in the future beyond the leeway), and live no longer than this
// signer's TTL (exp - iat at most TTL + leeway): a token minted with a
// longer life (a stolen key used to forge long-lived tokens, or tokens
// issued before the TTL was shortened) is refused.
func (s *Signer) Verify(token string) (string, error) {
	c, err := s.VerifyClaims(token)
	return c.Subject, err
}

// VerifyClaims is Verify returning the roles too; roles this version does
// not know are left out.
// An expired token is ErrExpired, one naming a key this Signer does not know
// ErrUnknownKey; both match ErrInvalidToken, as every other refusal is.
func (s *Signer) VerifyClaims(token string) (Claims, error) {
	key := tokenKey(token)
	if hit, ok := s.seen.get(key); ok {
		// Verified before: only the time claims can have changed their verdict.
		now := s.opts.Now()
		switch {
		case !now.Before(hit.expires.Add(s.opts.Leeway)):
			s.seen.drop(key)
			return Claims{}, ErrExpired
		case now.Add(s.opts.Leeway).Before(hit.notBefore):
			return Claims{}, ErrInvalidToken
		}
		hit.claims.Roles = slices.Clone(hit.claims.Roles)
		return hit.claims, nil
	}
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, s.key,
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(Issuer),
		jwt.WithAudience(Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(), // an iat in the future (beyond the leeway) is refused
		jwt.WithLeeway(s.opts.Leeway),
		jwt.WithTimeFunc(s.opts.Now),
	)
	switch {
	case errors.Is(err, ErrUnknownKey):
		return Claims{}, ErrUnknownKey
	case errors.Is(err, jwt.ErrTokenExpired):
		// Claims are validated only once the signature is: the token was ours.
		return Claims{}, ErrExpired
	case err != nil || c.Subject == "" || !s.lifetimeOK(c.RegisteredClaims):
		return Claims{}, ErrInvalidToken
	}
	granted, _ := knownRoles(c.Roles, false)
	out := Claims{Subject: c.Subject, Roles: granted}
	entry := cachedToken{key: key, claims: Claims{Subject: out.Subject, Roles: slices.Clone(out.Roles)}, expires: c.ExpiresAt.Time}
	if c.NotBefore != nil {
		entry.notBefore = c.NotBefore.Time
	}
	s.seen.put(entry)
	return out, nil
}

// key returns the public key the token's header names (kid).
func (s *Signer) key(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	if k, ok := s.keys[kid]; ok {
		return k, nil
	}
	return nil, ErrUnknownKey
}

// lifetimeOK reports whether the token states when it was issued and lives
// no longer than the TTL (with the leeway).
func (s *Signer) lifetimeOK(c jwt.RegisteredClaims) bool {
	if c.IssuedAt == nil || c.ExpiresAt == nil {
		return false
	}
	return c.ExpiresAt.Sub(c.IssuedAt.Time) <= s.opts.TTL+s.opts.Leeway
}
