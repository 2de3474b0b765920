// Package session holds the rules of refresh tokens: a login starts a
// session, whose refresh token is exchanged (rotated) for a new one at every
// refresh, and the spent one never works again. Presenting a spent token is
// the sign that it was stolen (either the thief or the owner is replaying
// it): the whole session is revoked, so that neither the thief's nor the
// owner's tokens work, and the owner logs in again (the OAuth 2.0 Security
// BCP, RFC 9700 §4.14.2, "refresh token rotation").
//
// Tokens are 32 random bytes, base64url; only their SHA-256 is stored. It
// imports neither go-micro nor bbolt.
package session

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors: why a refresh token was refused. The handler maps each
// to 401 with its message.
var (
	// ErrUnknown: not a token this service issued (malformed, made up, or
	// forgotten since its session expired).
	ErrUnknown = errors.New("refresh token is not valid")
	// ErrExpired: the token was not used within its lifetime.
	ErrExpired = errors.New("refresh token has expired")
	// ErrReused: the token was already exchanged for another; its session
	// is now revoked.
	ErrReused = errors.New("refresh token was already used: its session has been revoked")
	// ErrRevoked: the token's session was ended (logout, reuse, account gone).
	ErrRevoked = errors.New("refresh token was revoked")
	// ErrAccountGone: the session's account was deleted; the session is
	// revoked (AccountGone).
	ErrAccountGone = errors.New("the account of this refresh token no longer exists")
)

// DefaultTTL is how long a refresh token lives unless used: a session
// nobody refreshes for this long ends.
const DefaultTTL = 30 * 24 * time.Hour

// tokenBytes is the entropy of a token.
const tokenBytes = 32

// tokenLen is the length of a token's text: tokenBytes in unpadded base64url.
var tokenLen = base64.RawURLEncoding.EncodedLen(tokenBytes)

// Hash is the SHA-256 of a token's bytes: what is stored, so a copy of the
// database yields no usable token.
type Hash [sha256.Size]byte

// NewToken returns a new random token and its hash.
func NewToken() (string, Hash, error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", Hash{}, fmt.Errorf("refresh token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), sha256.Sum256(b), nil
}

// Parse returns the hash of a token a client presented, or ErrUnknown when
// it cannot be one this package made.
func Parse(token string) (Hash, error) {
	if len(token) != tokenLen {
		return Hash{}, ErrUnknown
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || len(b) != tokenBytes {
		return Hash{}, ErrUnknown
	}
	return sha256.Sum256(b), nil
}

// Why a session was revoked.
const (
	RevokedLogout      = "logout"       // its owner logged out
	RevokedReuse       = "reuse"        // a spent token was presented again
	RevokedAccountGone = "account_gone" // its account was deleted
)

// Session is one login: the chain of refresh tokens rotated from its first.
type Session struct {
	ID        string
	UserID    string
	CreatedAt time.Time
	// ExpiresAt is when its newest token expires: unless refreshed by then,
	// the session is over (and its records may be purged).
	ExpiresAt time.Time
	RevokedAt time.Time // zero while the session lives
	Reason    string    // why it was revoked (Revoked*)
}

// Token is one refresh token of a session.
type Token struct {
	Hash      Hash
	SessionID string
	IssuedAt  time.Time
	ExpiresAt time.Time
	SpentAt   time.Time // zero until exchanged for the next token
}

// Start begins a session for userID at now, with the token whose hash is
// first, valid for ttl.
func Start(id, userID string, first Hash, now time.Time, ttl time.Duration) (Session, Token, error) {
	if id == "" || userID == "" {
		return Session{}, Token{}, errors.New("session: an ID and a user are required")
	}
	if ttl <= 0 {
		return Session{}, Token{}, fmt.Errorf("session: lifetime %v must be positive", ttl)
	}
	t := Token{Hash: first, SessionID: id, IssuedAt: now, ExpiresAt: now.Add(ttl)}
	return Session{ID: id, UserID: userID, CreatedAt: now, ExpiresAt: t.ExpiresAt}, t, nil
}

// Revoked reports whether the session was ended.
func (s *Session) Revoked() bool { return !s.RevokedAt.IsZero() }

// Revoke ends the session for reason at now; a session already revoked
// keeps its first reason.
func (s *Session) Revoke(reason string, now time.Time) {
	if s.Revoked() {
		return
	}
	s.RevokedAt, s.Reason = now, reason
}

// AccountGone revokes the session because its account no longer exists,
// and returns ErrAccountGone.
func (s *Session) AccountGone(now time.Time) error {
	s.Revoke(RevokedAccountGone, now)
	return ErrAccountGone
}

// Rotate exchanges t, a token of s, at now for the token whose hash is
// next, valid for ttl, and returns it; t is spent. A token already spent
// revokes the session (ErrReused), and the caller must store that although
// the refresh fails. A revoked session (ErrRevoked) or an expired token
// (ErrExpired) changes nothing.
func (s *Session) Rotate(t *Token, next Hash, now time.Time, ttl time.Duration) (Token, error) {
	if err := s.check(t, now); err != nil {
		return Token{}, err
	}
	t.SpentAt = now
	n := Token{Hash: next, SessionID: s.ID, IssuedAt: now, ExpiresAt: now.Add(ttl)}
	s.ExpiresAt = n.ExpiresAt
	return n, nil
}

// End revokes the session on its owner's logout with t. Ending a session
// already revoked succeeds (a retried logout); a spent token is reuse, as
// in Rotate, and an expired one is refused.
func (s *Session) End(t *Token, now time.Time) error {
	if s.Revoked() {
		return nil
	}
	if err := s.check(t, now); err != nil {
		return err
	}
	s.Revoke(RevokedLogout, now)
	return nil
}

// check decides whether t may be used at now, revoking the session on reuse.
func (s *Session) check(t *Token, now time.Time) error {
	switch {
	case t.SessionID != s.ID:
		return ErrUnknown
	case s.Revoked():
		return ErrRevoked
	case !t.SpentAt.IsZero():
		s.Revoke(RevokedReuse, now)
		return ErrReused
	case !now.Before(t.ExpiresAt):
		return ErrExpired
	}
	return nil
}
