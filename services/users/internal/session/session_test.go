package session_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/services/users/internal/session"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const ttl = 24 * time.Hour

func hashOf(t *testing.T) (string, session.Hash) {
	t.Helper()
	tok, h, err := session.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	return tok, h
}

func TestTokensAreRandomAndOnlyTheirHashIsKept(t *testing.T) {
	a, ha := hashOf(t)
	b, hb := hashOf(t)
	if a == b || ha == hb {
		t.Fatal("two tokens are the same")
	}
	if len(a) != 43 || strings.ContainsAny(a, "+/=") {
		t.Errorf("token %q: want 43 characters of unpadded base64url (32 bytes)", a)
	}
	if strings.Contains(string(ha[:]), a) {
		t.Error("the hash holds the token")
	}
	got, err := session.Parse(a)
	if err != nil || got != ha {
		t.Fatalf("Parse(token) = %x, %v; want its hash", got, err)
	}
}

func TestParseRefusesWhatIsNotAToken(t *testing.T) {
	tok, _ := hashOf(t)
	for name, in := range map[string]string{
		"empty":                      "",
		"one character short":        tok[:42],
		"one character long":         tok + "A",
		"padded":                     tok + "=",
		"standard base64 characters": "+" + tok[1:],
		"a JWT":                      "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1MSJ9.c2ln",
		"white space":                " " + tok[1:],
		// The last character carries 4 bits that must be zero: a different
		// text for the same bytes is not the token.
		"a non-canonical encoding": tok[:42] + string(nonCanonical(tok[42])),
	} {
		t.Run(name, func(t *testing.T) {
			if h, err := session.Parse(in); !errors.Is(err, session.ErrUnknown) {
				t.Fatalf("Parse(%q) = %x, %v; want ErrUnknown", in, h, err)
			}
		})
	}
}

// nonCanonical returns, for the last character c of a token, one that
// decodes to the same bits with a nonzero unused low bit: 32 bytes are 256
// bits, and the 43rd character carries 4 of them and 2 that must be zero.
func nonCanonical(c byte) byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	return alphabet[strings.IndexByte(alphabet, c)|1]
}

func TestStartValidates(t *testing.T) {
	_, h := hashOf(t)
	s, tok, err := session.Start("s1", "u1", h, t0, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "s1" || s.UserID != "u1" || !s.CreatedAt.Equal(t0) || !s.ExpiresAt.Equal(t0.Add(ttl)) || s.Revoked() {
		t.Errorf("session %+v", s)
	}
	if tok.Hash != h || tok.SessionID != "s1" || !tok.IssuedAt.Equal(t0) || !tok.ExpiresAt.Equal(t0.Add(ttl)) || !tok.SpentAt.IsZero() {
		t.Errorf("token %+v", tok)
	}
	for name, start := range map[string]func() error{
		"no ID":         func() error { _, _, err := session.Start("", "u1", h, t0, ttl); return err },
		"no user":       func() error { _, _, err := session.Start("s1", "", h, t0, ttl); return err },
		"zero lifetime": func() error { _, _, err := session.Start("s1", "u1", h, t0, 0); return err },
	} {
		if start() == nil {
			t.Errorf("Start with %s succeeded", name)
		}
	}
}

func TestRotation(t *testing.T) {
	type state struct {
		spent, revoked bool
		reason         string
	}
	tests := []struct {
		name    string
		setup   func(*session.Session, *session.Token)
		at      time.Time
		want    error
		after   state
		rotated bool
	}{
		{"a live token is exchanged for the next, and is spent", nil, t0.Add(time.Hour), nil, state{spent: true}, true},
		{"a token a moment before its expiry is exchanged", nil, t0.Add(ttl - time.Second), nil, state{spent: true}, true},
		{"a token at its expiry is refused", nil, t0.Add(ttl), session.ErrExpired, state{}, false},
		{"a spent token revokes the session", func(_ *session.Session, tok *session.Token) { tok.SpentAt = t0.Add(time.Minute) },
			t0.Add(time.Hour), session.ErrReused, state{spent: true, revoked: true, reason: session.RevokedReuse}, false},
		{"a spent token revokes the session even after it expired", func(_ *session.Session, tok *session.Token) { tok.SpentAt = t0.Add(time.Minute) },
			t0.Add(2 * ttl), session.ErrReused, state{spent: true, revoked: true, reason: session.RevokedReuse}, false},
		{"a token of a session logged out is refused", func(s *session.Session, _ *session.Token) { s.Revoke(session.RevokedLogout, t0) },
			t0.Add(time.Hour), session.ErrRevoked, state{revoked: true, reason: session.RevokedLogout}, false},
		{"a token of another session is unknown", func(_ *session.Session, tok *session.Token) { tok.SessionID = "other" },
			t0.Add(time.Hour), session.ErrUnknown, state{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, first := hashOf(t)
			_, next := hashOf(t)
			s, tok, err := session.Start("s1", "u1", first, t0, ttl)
			if err != nil {
				t.Fatal(err)
			}
			if tt.setup != nil {
				tt.setup(&s, &tok)
			}
			n, err := s.Rotate(&tok, next, tt.at, ttl)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Rotate = %v, want %v", err, tt.want)
			}
			got := state{spent: !tok.SpentAt.IsZero(), revoked: s.Revoked(), reason: s.Reason}
			if got != tt.after {
				t.Errorf("after: %+v, want %+v", got, tt.after)
			}
			if !tt.rotated {
				if n != (session.Token{}) {
					t.Errorf("a refused rotation returned a token %+v", n)
				}
				return
			}
			if n.Hash != next || n.SessionID != "s1" || !n.IssuedAt.Equal(tt.at) || !n.ExpiresAt.Equal(tt.at.Add(ttl)) {
				t.Errorf("next token %+v", n)
			}
			if !tok.SpentAt.Equal(tt.at) || !s.ExpiresAt.Equal(n.ExpiresAt) {
				t.Errorf("spent at %v, session expires %v; want %v and the new token's expiry", tok.SpentAt, s.ExpiresAt, tt.at)
			}
		})
	}
}

func TestAChainOfRotationsAndAReplay(t *testing.T) {
	_, h := hashOf(t)
	s, first, err := session.Start("s1", "u1", h, t0, ttl)
	if err != nil {
		t.Fatal(err)
	}
	// The owner refreshes every 15 minutes for a day: the session slides.
	cur, at := first, t0
	var spent []session.Token
	for range 96 {
		at = at.Add(15 * time.Minute)
		_, nh := hashOf(t)
		n, err := s.Rotate(&cur, nh, at, ttl)
		if err != nil {
			t.Fatalf("rotation at %v: %v", at, err)
		}
		spent = append(spent, cur)
		cur = n
	}
	if !s.ExpiresAt.Equal(at.Add(ttl)) {
		t.Fatalf("session expires %v, want %v", s.ExpiresAt, at.Add(ttl))
	}
	// A thief replays the first token: the session is revoked, and the
	// owner's current token no longer works either.
	old := spent[0]
	if _, err := s.Rotate(&old, session.Hash{}, at.Add(time.Minute), ttl); !errors.Is(err, session.ErrReused) {
		t.Fatalf("replay: %v, want ErrReused", err)
	}
	if _, err := s.Rotate(&cur, session.Hash{}, at.Add(2*time.Minute), ttl); !errors.Is(err, session.ErrRevoked) {
		t.Fatalf("the owner's token after the replay: %v, want ErrRevoked", err)
	}
	if s.Reason != session.RevokedReuse || !s.RevokedAt.Equal(at.Add(time.Minute)) {
		t.Errorf("revoked %v for %q", s.RevokedAt, s.Reason)
	}
}

func TestLogout(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(*session.Session, *session.Token)
		at     time.Time
		want   error
		reason string
	}{
		{"a live token ends its session", nil, t0.Add(time.Hour), nil, session.RevokedLogout},
		{"a session already ended ends again (a retried logout)", func(s *session.Session, _ *session.Token) { s.Revoke(session.RevokedLogout, t0) },
			t0.Add(time.Hour), nil, session.RevokedLogout},
		{"a session revoked for reuse stays revoked for reuse", func(s *session.Session, _ *session.Token) { s.Revoke(session.RevokedReuse, t0) },
			t0.Add(time.Hour), nil, session.RevokedReuse},
		{"a spent token is reuse: the session is revoked and the logout refused", func(_ *session.Session, tok *session.Token) { tok.SpentAt = t0 },
			t0.Add(time.Hour), session.ErrReused, session.RevokedReuse},
		{"an expired token is refused", nil, t0.Add(ttl + time.Hour), session.ErrExpired, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, h := hashOf(t)
			s, tok, err := session.Start("s1", "u1", h, t0, ttl)
			if err != nil {
				t.Fatal(err)
			}
			if tt.setup != nil {
				tt.setup(&s, &tok)
			}
			if err := s.End(&tok, tt.at); !errors.Is(err, tt.want) {
				t.Fatalf("End = %v, want %v", err, tt.want)
			}
			if s.Reason != tt.reason || s.Revoked() != (tt.reason != "") {
				t.Errorf("revoked %v for %q, want %q", s.RevokedAt, s.Reason, tt.reason)
			}
		})
	}
}
