// Package auth issues and verifies the api's bearer tokens: EdDSA (Ed25519)
// signed JWTs. Only the api holds the private key; services learn the caller
// from RPC metadata set after verification (see rpcmeta).
//
// A token may carry roles (the "roles" claim, a list of strings) that the
// api granted at login; RoleAdmin is the only one. Roles this version does
// not know are dropped on verification, so a token never gains a power by
// naming one.
package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oklog/ulid/v2"

	"github.com/marketmesh/marketmesh/plugins/keyfile"
)

// Issuer is the "iss" claim of every token.
const Issuer = "marketmesh"

// ErrInvalidToken is returned for any token that must not be trusted.
var ErrInvalidToken = errors.New("invalid or expired token")

// RoleAdmin is the role of operators: it opens the api's /v1/admin routes.
const RoleAdmin = "admin"

// allRoles lists every role a token may carry.
var allRoles = []string{RoleAdmin}

// KnownRole reports whether role is one this package issues and accepts.
func KnownRole(role string) bool { return slices.Contains(allRoles, role) }

// KeyEnv names the env var that may hold the Ed25519 seed (32 bytes, base64).
const KeyEnv = "AUTH_JWT_KEY"

// Options tune the token signer.
type Options struct {
	TTL    time.Duration // how long a token is valid; verification refuses tokens meant to live longer
	Leeway time.Duration // clock skew accepted on verification
	Now    func() time.Time
}

// Option changes Options.
type Option func(*Options)

// TTL sets the token lifetime.
func TTL(d time.Duration) Option { return func(o *Options) { o.TTL = d } }

// Clock replaces time.Now (tests).
func Clock(now func() time.Time) Option { return func(o *Options) { o.Now = now } }

// Signer issues and verifies tokens.
type Signer struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	opts Options
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

// NewSigner returns a Signer for key.
func NewSigner(key ed25519.PrivateKey, opts ...Option) *Signer {
	o := Options{TTL: 24 * time.Hour, Leeway: 30 * time.Second, Now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	return &Signer{priv: key, pub: key.Public().(ed25519.PublicKey), opts: o}
}

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
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        ulid.Make().String(),
		},
		Roles: granted,
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(s.priv)
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

// Verify checks signature, algorithm, issuer and time claims, and returns the subject.
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
func (s *Signer) VerifyClaims(token string) (Claims, error) {
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return s.pub, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(), // an iat in the future (beyond the leeway) is refused
		jwt.WithLeeway(s.opts.Leeway),
		jwt.WithTimeFunc(s.opts.Now),
	)
	if err != nil || c.Subject == "" || !s.lifetimeOK(c.RegisteredClaims) {
		return Claims{}, ErrInvalidToken
	}
	granted, _ := knownRoles(c.Roles, false)
	return Claims{Subject: c.Subject, Roles: granted}, nil
}

// lifetimeOK reports whether the token states when it was issued and lives
// no longer than the TTL (with the leeway).
func (s *Signer) lifetimeOK(c jwt.RegisteredClaims) bool {
	if c.IssuedAt == nil || c.ExpiresAt == nil {
		return false
	}
	return c.ExpiresAt.Sub(c.IssuedAt.Time) <= s.opts.TTL+s.opts.Leeway
}
