package validate

import (
	"errors"
	"fmt"
	"testing"
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
