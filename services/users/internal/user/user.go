// Package user holds the users domain: what a valid account is, how it
// changes, how a login is checked, and the rules for a user's collections
// (wishlist, bank accounts, devices, preferences). It imports neither
// go-micro nor bbolt.
package user

import (
	"errors"
	"net/mail"
	"regexp"
	"strings"
	"time"
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

// User is an account. Email is normalized (see NormalizeEmail) and unique;
// PasswordHash is a PHC argon2id string, never the password.
type User struct {
	ID           string
	Email        string
	Name         string
	Phone        string // E.164, or "" when none
	PasswordHash string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Draft is what a person registering provides.
type Draft struct {
	Email    string
	Name     string
	Password string
}

// New validates d and returns the account it describes, with the password
// hashed. Fields are checked in the order email, name, password, so the
// error names the first bad one.
func New(id string, d Draft, now time.Time) (User, error) {
	email, err := NormalizeEmail(d.Email)
	if err != nil {
		return User{}, err
	}
	name, err := CleanText("name", d.Name, MaxName)
	if err != nil {
		return User{}, err
	}
	if err := CheckPassword(d.Password); err != nil {
		return User{}, err
	}
	hash, err := HashPassword(d.Password)
	if err != nil {
		return User{}, err
	}
	return User{ID: id, Email: email, Name: name, PasswordHash: hash, CreatedAt: now, UpdatedAt: now}, nil
}

// Patch changes some fields of an account; nil fields stay as they are. An
// empty Phone clears it.
type Patch struct {
	Name  *string
	Phone *string
}

// Normalize validates every field of p and returns it in canonical form.
// Apply does this itself; callers use it to refuse a bad patch before
// loading the account.
func (p Patch) Normalize() (Patch, error) {
	var out Patch
	if p.Name != nil {
		name, err := CleanText("name", *p.Name, MaxName)
		if err != nil {
			return Patch{}, err
		}
		out.Name = &name
	}
	if p.Phone != nil {
		phone, err := NormalizePhone(*p.Phone)
		if err != nil {
			return Patch{}, err
		}
		out.Phone = &phone
	}
	return out, nil
}

// Apply validates every field of p and then applies them all, or none.
func (u *User) Apply(p Patch, now time.Time) error {
	p, err := p.Normalize()
	if err != nil {
		return err
	}
	if p.Name != nil {
		u.Name = *p.Name
	}
	if p.Phone != nil {
		u.Phone = *p.Phone
	}
	u.UpdatedAt = now
	return nil
}

// LoginEmail returns the normalized email of a login attempt. An attempt
// that cannot match any account (a malformed email, an empty or oversize
// password) is refused as NoAccount refuses it.
func LoginEmail(email, password string) (string, error) {
	e, err := NormalizeEmail(email)
	if err != nil || password == "" || len(password) > MaxPassword {
		return "", NoAccount(password)
	}
	return e, nil
}

// NoAccount refuses a login for which there is no account: ErrBadCredentials,
// after the work of a password check, so that timing does not tell an
// unknown email from a wrong password.
func NoAccount(password string) error {
	if err := VerifyNobody(password); err != nil {
		return err
	}
	return ErrBadCredentials
}

// Authenticate checks password against the account's hash (constant time);
// a mismatch is ErrBadCredentials, no free hash slot in time ErrBusy.
func (u User) Authenticate(password string) error {
	ok, err := checkPassword(u.PasswordHash, password)
	if err != nil {
		return err
	}
	if !ok {
		return ErrBadCredentials
	}
	return nil
}

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
