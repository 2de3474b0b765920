package auth_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/marketmesh/marketmesh/plugins/auth"
)

// unverified returns the header and claims of tok without checking it.
func unverified(t *testing.T, tok string) (map[string]any, jwt.MapClaims) {
	t.Helper()
	var c jwt.MapClaims
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, &c)
	if err != nil {
		t.Fatal(err)
	}
	return parsed.Header, c
}

func TestKeyIDIsTheRFC7638Thumbprint(t *testing.T) {
	// RFC 8037, appendix A.3: the thumbprint of the appendix A.2 key.
	x, err := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := auth.KeyID(ed25519.PublicKey(x)), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Fatalf("KeyID = %q, want %q", got, want)
	}
}

func TestIssuedTokensNameTheirAudienceAndKey(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	key := newKey(t)
	s := auth.NewSigner(key, fixedClock(now))
	tok, exp, err := s.Issue("user-1")
	if err != nil {
		t.Fatal(err)
	}
	header, c := unverified(t, tok)
	if header["kid"] != auth.KeyID(key.Public().(ed25519.PublicKey)) || header["kid"] != s.KeyID() {
		t.Errorf("kid = %v, want %s", header["kid"], s.KeyID())
	}
	if header["alg"] != "EdDSA" {
		t.Errorf("alg = %v", header["alg"])
	}
	aud, err := c.GetAudience()
	if err != nil || !slices.Equal(aud, []string{auth.Audience}) {
		t.Errorf("aud = %v (%v), want [%s]", aud, err, auth.Audience)
	}
	// Access tokens are short by default: 15 minutes.
	if !exp.Equal(now.Add(15*time.Minute)) || s.TTL() != auth.DefaultTTL || auth.DefaultTTL != 15*time.Minute {
		t.Errorf("expiry %v, TTL %v; want 15 min", exp, s.TTL())
	}
	if !s.PublicKey().Equal(key.Public()) {
		t.Error("PublicKey is not the signing key's")
	}
}

func TestRotatedKeysVerifyUntilTheirTokensExpire(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	oldKey, nextKey := newKey(t), newKey(t)
	oldPub := oldKey.Public().(ed25519.PublicKey)
	before := auth.NewSigner(oldKey, fixedClock(now))
	oldTok, _, err := before.Issue("user-1", auth.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}

	// Five minutes later the key was rotated: the api signs with the new
	// key and names the old one's public half among its old keys.
	later := now.Add(5 * time.Minute)
	after := auth.NewSigner(nextKey, fixedClock(later), auth.OldKeys(oldPub))
	c, err := after.VerifyClaims(oldTok)
	if err != nil || c.Subject != "user-1" || !c.Has(auth.RoleAdmin) {
		t.Fatalf("a token of the old key after rotation: %+v, %v; want user-1 with admin", c, err)
	}
	newTok, _, err := after.Issue("user-2")
	if err != nil {
		t.Fatal(err)
	}
	if header, _ := unverified(t, newTok); header["kid"] != auth.KeyID(nextKey.Public().(ed25519.PublicKey)) {
		t.Fatalf("a token issued after rotation names kid %v: the old key must sign nothing", header["kid"])
	}
	if sub, err := after.Verify(newTok); err != nil || sub != "user-2" {
		t.Fatalf("a token of the new key: %q, %v", sub, err)
	}

	t.Run("without the old key configured its tokens are refused as signed by an unknown key", func(t *testing.T) {
		bare := auth.NewSigner(nextKey, fixedClock(later))
		if _, err := bare.Verify(oldTok); !errors.Is(err, auth.ErrUnknownKey) || !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("Verify = %v, want ErrUnknownKey (an ErrInvalidToken)", err)
		}
	})
	t.Run("an api still on the old key refuses the new key's tokens", func(t *testing.T) {
		if _, err := auth.NewSigner(oldKey, fixedClock(later)).Verify(newTok); !errors.Is(err, auth.ErrUnknownKey) {
			t.Fatalf("Verify = %v, want ErrUnknownKey", err)
		}
	})
	t.Run("the old key's tokens still expire", func(t *testing.T) {
		expired := auth.NewSigner(nextKey, fixedClock(now.Add(auth.DefaultTTL+auth.DefaultLeeway+time.Second)), auth.OldKeys(oldPub))
		if _, err := expired.Verify(oldTok); !errors.Is(err, auth.ErrExpired) {
			t.Fatalf("Verify = %v, want ErrExpired", err)
		}
	})
	t.Run("an old key's kid does not let a forger pick the key", func(t *testing.T) {
		// A token naming the old key's kid but signed with another key
		// (the forger's): the named key must be the one that signed.
		forged := signWithKID(t, newKey(t), auth.KeyID(oldPub), jwt.RegisteredClaims{
			Issuer: auth.Issuer, Subject: "user-1", Audience: jwt.ClaimStrings{auth.Audience},
			IssuedAt: jwt.NewNumericDate(later), ExpiresAt: jwt.NewNumericDate(later.Add(time.Minute)),
		})
		if _, err := after.Verify(forged); !errors.Is(err, auth.ErrInvalidToken) || errors.Is(err, auth.ErrExpired) {
			t.Fatalf("Verify = %v, want ErrInvalidToken", err)
		}
	})
	t.Run("the current key listed among the old ones changes nothing", func(t *testing.T) {
		s := auth.NewSigner(nextKey, fixedClock(later), auth.OldKeys(oldPub, nextKey.Public().(ed25519.PublicKey)))
		if _, err := s.Verify(newTok); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Verify(oldTok); err != nil {
			t.Fatal(err)
		}
	})
}

func TestExpiryIsReportedAsSuch(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	key := newKey(t)
	tok, exp, err := auth.NewSigner(key, auth.TTL(time.Minute), fixedClock(now)).Issue("user-1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		at   time.Time
		opts []auth.Option
		want error // nil: accepted
	}{
		{"a token within its life is accepted", exp.Add(-time.Second), nil, nil},
		{"a token just past expiry, within the leeway, is accepted", exp.Add(29 * time.Second), nil, nil},
		{"a token past expiry and the leeway is ErrExpired", exp.Add(31 * time.Second), nil, auth.ErrExpired},
		{"with no leeway a token a second past expiry is ErrExpired", exp.Add(time.Second), []auth.Option{auth.Leeway(0)}, auth.ErrExpired},
		{"a leeway beyond the maximum is clamped to it", exp.Add(auth.MaxLeeway + time.Second), []auth.Option{auth.Leeway(time.Hour)}, auth.ErrExpired},
		{"a leeway of the maximum is allowed", exp.Add(auth.MaxLeeway - time.Second), []auth.Option{auth.Leeway(auth.MaxLeeway), auth.TTL(time.Minute)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := auth.NewSigner(key, append([]auth.Option{fixedClock(tt.at)}, tt.opts...)...)
			_, err := v.Verify(tok)
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("Verify = %v, want accepted", err)
			case tt.want != nil && (!errors.Is(err, tt.want) || !errors.Is(err, auth.ErrInvalidToken)):
				t.Fatalf("Verify = %v, want %v (an ErrInvalidToken)", err, tt.want)
			}
		})
	}
	t.Run("a forged token past its expiry is not reported as expired", func(t *testing.T) {
		// Claims are judged only once the signature is: an expired token
		// signed by someone else is simply invalid.
		forged := signWithKID(t, newKey(t), auth.KeyID(key.Public().(ed25519.PublicKey)), jwt.RegisteredClaims{
			Issuer: auth.Issuer, Subject: "user-1", Audience: jwt.ClaimStrings{auth.Audience},
			IssuedAt: jwt.NewNumericDate(now.Add(-time.Hour)), ExpiresAt: jwt.NewNumericDate(now.Add(-59 * time.Minute)),
		})
		_, err := auth.NewSigner(key, fixedClock(now)).Verify(forged)
		if !errors.Is(err, auth.ErrInvalidToken) || errors.Is(err, auth.ErrExpired) {
			t.Fatalf("Verify = %v, want ErrInvalidToken and not ErrExpired", err)
		}
	})
}

func TestPublicKeysAreParsedFromConfiguration(t *testing.T) {
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	t.Run("the standard base64 form EncodePublicKey writes", func(t *testing.T) {
		got, err := auth.ParsePublicKey(" " + auth.EncodePublicKey(pub) + "\n")
		if err != nil || !got.Equal(pub) {
			t.Fatalf("ParsePublicKey = %x, %v", got, err)
		}
	})
	t.Run("the base64url form of a JWK's x", func(t *testing.T) {
		got, err := auth.ParsePublicKey(base64.RawURLEncoding.EncodeToString(pub))
		if err != nil || !got.Equal(pub) {
			t.Fatalf("ParsePublicKey = %x, %v", got, err)
		}
	})
	for name, in := range map[string]string{
		"not base64":    "not base64!",
		"a private key": base64.StdEncoding.EncodeToString(key),
		"too short":     base64.StdEncoding.EncodeToString(pub[:16]),
		"empty":         "",
	} {
		t.Run(name+" is refused", func(t *testing.T) {
			if k, err := auth.ParsePublicKey(in); err == nil {
				t.Fatalf("ParsePublicKey(%q) = %x, want an error", in, k)
			}
		})
	}
	t.Run("a list skips blank entries and names the bad one", func(t *testing.T) {
		other := newKey(t).Public().(ed25519.PublicKey)
		keys, err := auth.ParsePublicKeys([]string{auth.EncodePublicKey(pub), " ", "", auth.EncodePublicKey(other)})
		if err != nil || len(keys) != 2 || !keys[0].Equal(pub) || !keys[1].Equal(other) {
			t.Fatalf("ParsePublicKeys = %d keys, %v", len(keys), err)
		}
		_, err = auth.ParsePublicKeys([]string{auth.EncodePublicKey(pub), "AAAA"})
		if err == nil || !strings.Contains(err.Error(), "key 2") || !strings.Contains(err.Error(), "32 bytes") {
			t.Fatalf("ParsePublicKeys with a short second key: %v, want an error naming key 2 and the size", err)
		}
		if keys, err := auth.ParsePublicKeys(nil); err != nil || len(keys) != 0 {
			t.Fatalf("no entries: %v, %v", keys, err)
		}
	})
}
