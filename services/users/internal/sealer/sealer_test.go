package sealer_test

import (
	"bytes"
	"testing"

	"github.com/marketmesh/marketmesh/services/users/internal/sealer"
)

func newSealer(t *testing.T) *sealer.Sealer {
	t.Helper()
	key, err := sealer.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := sealer.New(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealOpenRoundTrip(t *testing.T) {
	s := newSealer(t)
	tests := []struct {
		name      string
		plaintext []byte
		ad        []byte
	}{
		{"an IBAN bound to its record opens", []byte("DE89370400440532013000"), []byte("01HUSER/01HACCOUNT")},
		{"an empty plaintext opens", []byte{}, []byte("ad")},
		{"no additional data opens", []byte("123456"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sealed, err := s.Seal(tt.plaintext, tt.ad)
			if err != nil {
				t.Fatal(err)
			}
			if len(tt.plaintext) > 0 && bytes.Contains(sealed, tt.plaintext) {
				t.Fatalf("sealed value contains the plaintext")
			}
			got, err := s.Open(sealed, tt.ad)
			if err != nil {
				t.Fatalf("Open = %v", err)
			}
			if !bytes.Equal(got, tt.plaintext) {
				t.Errorf("Open = %q, want %q", got, tt.plaintext)
			}
		})
	}
}

func TestSealUsesAFreshNonce(t *testing.T) {
	s := newSealer(t)
	a, err := s.Seal([]byte("DE89370400440532013000"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Seal([]byte("DE89370400440532013000"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Fatal("sealing the same value twice gave the same bytes: the nonce is not random")
	}
}

func TestOpenRefusesChangedInput(t *testing.T) {
	s := newSealer(t)
	plaintext, ad := []byte("DE89370400440532013000"), []byte("user-a/acct-1")
	sealed, err := s.Seal(plaintext, ad)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		c := bytes.Clone(sealed)
		c[i] ^= 0x01
		return c
	}
	other := newSealer(t)
	tests := []struct {
		name   string
		s      *sealer.Sealer
		sealed []byte
		ad     []byte
	}{
		{"a flipped bit in the nonce fails", s, flip(0), ad},
		{"a flipped bit in the ciphertext fails", s, flip(12), ad},
		{"a flipped bit in the tag fails", s, flip(len(sealed) - 1), ad},
		{"a truncated value fails", s, sealed[:len(sealed)-1], ad},
		{"a value shorter than a nonce fails", s, sealed[:5], ad},
		{"an empty value fails", s, nil, ad},
		{"other additional data (another record) fails", s, sealed, []byte("user-b/acct-1")},
		{"missing additional data fails", s, sealed, nil},
		{"another key fails", other, sealed, ad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.s.Open(tt.sealed, tt.ad)
			if err == nil {
				t.Fatalf("Open succeeded with %q, want an error", got)
			}
		})
	}
	// The untouched value still opens, so the failures above are due to the changes.
	if _, err := s.Open(sealed, ad); err != nil {
		t.Fatalf("the original value no longer opens: %v", err)
	}
}

func TestNewRefusesWrongKeyLengths(t *testing.T) {
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		if s, err := sealer.New(make([]byte, n)); err == nil || s != nil {
			t.Errorf("New(%d-byte key) = %v, %v; want nil and an error", n, s, err)
		}
	}
	if _, err := sealer.New(make([]byte, sealer.KeySize)); err != nil {
		t.Errorf("New(32-byte key) = %v", err)
	}
}

func TestNewKeyIsRandom(t *testing.T) {
	a, err := sealer.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := sealer.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != sealer.KeySize || len(b) != sealer.KeySize {
		t.Fatalf("key lengths %d, %d; want %d", len(a), len(b), sealer.KeySize)
	}
	if bytes.Equal(a, b) || bytes.Equal(a, make([]byte, sealer.KeySize)) {
		t.Fatal("NewKey is not random")
	}
}
