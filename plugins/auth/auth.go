// Package auth issues and verifies the api's bearer tokens: EdDSA (Ed25519)
// signed JWTs. Only the api holds the private key; services learn the caller
// from RPC metadata set after verification (see rpcmeta).
package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oklog/ulid/v2"

	"github.com/marketmesh/marketmesh/plugins/keyfile"
)

// Issuer is the "iss" claim of every token.
const Issuer = "marketmesh"

// ErrInvalidToken is returned for any token that must not be trusted.
var ErrInvalidToken = errors.New("invalid or expired token")

// KeyEnv names the env var that may hold the Ed25519 seed (32 bytes, base64).
const KeyEnv = "AUTH_JWT_KEY"

// Options tune the token signer.
type Options struct {
	TTL    time.Duration // how long a token is valid
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

// Issue returns a signed token for userID and its expiry.
func (s *Signer) Issue(userID string) (string, time.Time, error) {
	now := s.opts.Now().UTC().Truncate(time.Second)
	exp := now.Add(s.opts.TTL)
	claims := jwt.RegisteredClaims{
		Issuer:    Issuer,
		Subject:   userID,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
		ID:        ulid.Make().String(),
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims).SignedString(s.priv)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign: %w", err)
	}
	return tok, exp, nil
}

// Verify checks signature, algorithm, issuer and time claims, and returns the subject.
func (s *Signer) Verify(token string) (string, error) {
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return s.pub, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(s.opts.Leeway),
		jwt.WithTimeFunc(s.opts.Now),
	)
	if err != nil || claims.Subject == "" {
		return "", ErrInvalidToken
	}
	return claims.Subject, nil
}
