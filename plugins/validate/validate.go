// Package validate is the shape of input validation errors across the
// services' domains: the message is the whole, client-facing sentence and
// names the field ("price.currency \"usd\" is not an ISO 4217 code"), and
// every such error matches ErrInvalid, which handlers map to 422.
package validate

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
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

type kindError struct {
	kind error
	msg  string
}

func (e kindError) Error() string        { return e.msg }
func (e kindError) Is(target error) bool { return target == e.kind }

// Kind returns an error with exactly the formatted message that matches
// kind (errors.Is): a domain's not-found or conflict, a handler's
// "dependency unavailable", each mapped to a status in one place.
func Kind(kind error, format string, a ...any) error {
	return kindError{kind: kind, msg: fmt.Sprintf(format, a...)}
}

// Shorten makes s valid UTF-8 and at most max bytes, cut at a rune
// boundary and marked with "...": for quoting client input in a message.
func Shorten(s string, max int) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= max {
		return s
	}
	cut := max - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
