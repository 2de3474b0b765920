package validate

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestErrorsKeepTheirMessageAndMatchErrInvalid(t *testing.T) {
	err := Errorf("name must be at most %d characters", 100)
	if err.Error() != "name must be at most 100 characters" {
		t.Fatalf("message = %q", err)
	}
	if !errors.Is(err, ErrInvalid) || !errors.Is(fmt.Errorf("create: %w", err), ErrInvalid) {
		t.Fatal("a validation error does not match ErrInvalid")
	}
	if errors.Is(errors.New("name must be at most 100 characters"), ErrInvalid) {
		t.Fatal("an unrelated error matches ErrInvalid")
	}
}

func TestKindAndShorten(t *testing.T) {
	gone := errors.New("gone")
	err := Kind(gone, "order %s not found", "O1")
	if !errors.Is(err, gone) || errors.Is(err, ErrInvalid) || err.Error() != "order O1 not found" {
		t.Fatalf("Kind: %v", err)
	}
	if got := Shorten("ab\xffcd", 64); got != "ab?cd" {
		t.Fatalf("invalid UTF-8: %q", got)
	}
	if got := Shorten(strings.Repeat("é", 100), 67); len(got) > 67 || !utf8.ValidString(got) || !strings.HasSuffix(got, "...") {
		t.Fatalf("long: %q", got)
	}
}
