// Package validate is the shape of input validation errors across the
// services' domains: the message is the whole, client-facing sentence and
// names the field ("price.currency \"usd\" is not an ISO 4217 code"), and
// every such error matches ErrInvalid, which handlers map to 422.
package validate

import (
	"errors"
	"fmt"
)

// ErrInvalid matches (errors.Is) every error made by Errorf.
var ErrInvalid = errors.New("invalid")

type fieldError struct{ msg string }

func (e fieldError) Error() string        { return e.msg }
func (e fieldError) Is(target error) bool { return target == ErrInvalid }

// Errorf returns a validation error with exactly the formatted message.
func Errorf(format string, a ...any) error {
	return fieldError{msg: fmt.Sprintf(format, a...)}
}
