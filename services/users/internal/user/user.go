// Package user holds the users domain: validation rules and errors. It
// imports neither go-micro nor bbolt.
package user

import (
	"errors"
	"net/mail"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/marketmesh/marketmesh/plugins/validate"
)

// Sentinel errors; the handler maps them to RPC status codes.
var (
	ErrNotFound       = errors.New("not found")
	ErrEmailTaken     = errors.New("email is already registered")
	ErrInvalid        = validate.ErrInvalid
	ErrBadCredentials = errors.New("wrong email or password")
)

// invalid returns a validation error whose message names the field; it
// matches ErrInvalid.
func invalid(format string, a ...any) error { return validate.Errorf(format, a...) }

// Limits on user input.
const (
	MinPassword = 8
	MaxPassword = 256 // bytes; hashing cost must not depend on attacker input size
	MaxName     = 100
	MaxEmail    = 254
	MaxToken    = 4096
)

// NormalizeEmail returns the canonical (trimmed, lower-case) form of an
// address, or an error naming the field.
func NormalizeEmail(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return "", invalid("email is required")
	}
	if len(s) > MaxEmail {
		return "", invalid("email must be at most %d characters", MaxEmail)
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || !strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".") {
		return "", invalid("email %q is not a valid address", s)
	}
	return s, nil
}

// CheckPassword enforces the password policy.
func CheckPassword(p string) error {
	switch {
	case p == "":
		return invalid("password is required")
	case utf8.RuneCountInString(p) < MinPassword:
		return invalid("password must be at least %d characters", MinPassword)
	case len(p) > MaxPassword:
		return invalid("password must be at most %d bytes", MaxPassword)
	}
	return nil
}

// CleanText trims s and checks it as the named field: required, at most max
// characters, printable.
func CleanText(field, s string, max int) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", invalid("%s is required", field)
	}
	if !utf8.ValidString(s) {
		return "", invalid("%s must be valid UTF-8", field)
	}
	if utf8.RuneCountInString(s) > max {
		return "", invalid("%s must be at most %d characters", field, max)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "", invalid("%s must not contain control characters", field)
		}
	}
	return s, nil
}

var phoneRE = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// NormalizePhone accepts E.164 (+ and 7..15 digits; spaces, dashes and
// parentheses are removed first). An empty string clears the phone.
func NormalizePhone(s string) (string, error) {
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' || r == '(' || r == ')' {
			return -1
		}
		return r
	}, s)
	if s == "" {
		return "", nil
	}
	if !phoneRE.MatchString(s) {
		return "", invalid("phone must be in E.164 form, like +14155550123")
	}
	return s, nil
}

// Platforms a push device may have.
var Platforms = []string{"ios", "android", "web"}

// CheckDevice validates a push device registration.
func CheckDevice(token, platform string) error {
	if strings.TrimSpace(token) == "" {
		return invalid("token is required")
	}
	if len(token) > MaxToken {
		return invalid("token must be at most %d bytes", MaxToken)
	}
	if strings.ContainsAny(token, "/ \t\r\n") {
		return invalid("token must not contain '/' or whitespace")
	}
	for _, p := range Platforms {
		if platform == p {
			return nil
		}
	}
	return invalid("platform must be one of ios, android, web")
}

// CheckPublicationID validates a reference to a publication.
func CheckPublicationID(id string) error {
	if strings.TrimSpace(id) == "" {
		return invalid("publication_id is required")
	}
	if len(id) > 64 || strings.ContainsAny(id, "/ \t\r\n") {
		return invalid("publication_id %q is not a valid ID", id)
	}
	return nil
}
