package paging

import (
	"errors"
	"testing"
)

func TestTokenRoundTripAndRefusals(t *testing.T) {
	scope := [][]byte{[]byte("bucket"), []byte("alice")}
	tok := EncodeToken([]byte("k\x00ey"), scope...)
	tampered := tok[:len(tok)-1] + "A"
	if tampered == tok {
		tampered = tok[:len(tok)-1] + "B"
	}
	pos, err := DecodeToken(tok, scope...)
	if err != nil || string(pos) != "k\x00ey" {
		t.Fatalf("round trip: %q %v", pos, err)
	}
	for name, c := range map[string]struct {
		tok   string
		scope [][]byte
	}{
		"other owner":   {tok, [][]byte{[]byte("bucket"), []byte("bob")}},
		"other list":    {tok, [][]byte{[]byte("other"), []byte("alice")}},
		"garbage":       {"%%%", scope},
		"empty":         {"", scope},
		"tampered":      {tampered, scope},
		"wrong version": {EncodeToken([]byte("x"), scope...)[1:], scope},
	} {
		if _, err := DecodeToken(c.tok, c.scope...); !errors.Is(err, ErrBadToken) {
			t.Errorf("%s: %v, want ErrBadToken", name, err)
		}
	}
}
