package user_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/services/users/internal/user"
)

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func TestNewUser(t *testing.T) {
	valid := user.Draft{Email: " Ada@Example.com ", Name: " Ada Lovelace ", Password: "password123"}
	u, err := user.New("01HUSER", valid, t0)
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	if u.ID != "01HUSER" || u.Email != "ada@example.com" || u.Name != "Ada Lovelace" || u.Phone != "" ||
		!u.CreatedAt.Equal(t0) || !u.UpdatedAt.Equal(t0) {
		t.Errorf("New = %+v", u)
	}
	if !user.VerifyPassword(u.PasswordHash, "password123") {
		t.Errorf("PasswordHash %q does not verify the password", u.PasswordHash)
	}

	tests := []struct {
		name  string
		draft user.Draft
		field string
	}{
		{"a bad email is refused before anything else", user.Draft{Email: "ada@", Name: "", Password: ""}, "email"},
		{"a missing name is refused before the password", user.Draft{Email: "ada@example.com", Password: ""}, "name"},
		{"a short password is refused", user.Draft{Email: "ada@example.com", Name: "Ada", Password: "short"}, "password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := user.New("01HUSER", tt.draft, t0)
			wantInvalid(t, err, tt.field)
			if u != (user.User{}) {
				t.Errorf("New returned %+v with an error, want the zero User", u)
			}
		})
	}
}

func TestUserApply(t *testing.T) {
	later := t0.Add(time.Hour)
	base := user.User{ID: "01HUSER", Email: "ada@example.com", Name: "Ada", Phone: "+14155550123", CreatedAt: t0, UpdatedAt: t0}
	ptr := func(s string) *string { return &s }
	tests := []struct {
		name      string
		patch     user.Patch
		wantName  string
		wantPhone string
		field     string // "" when valid
	}{
		{name: "an empty patch changes only the update time", wantName: "Ada", wantPhone: "+14155550123"},
		{name: "a name is trimmed and set", patch: user.Patch{Name: ptr(" Ada Lovelace ")}, wantName: "Ada Lovelace", wantPhone: "+14155550123"},
		{name: "a phone is normalized and set", patch: user.Patch{Phone: ptr("+44 20 7946-0958")}, wantName: "Ada", wantPhone: "+442079460958"},
		{name: "an empty phone clears it", patch: user.Patch{Phone: ptr("")}, wantName: "Ada", wantPhone: ""},
		{name: "an empty name is refused", patch: user.Patch{Name: ptr(" ")}, field: "name"},
		{name: "a valid name with a bad phone changes nothing", patch: user.Patch{Name: ptr("Mallory"), Phone: ptr("call me")}, field: "phone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := base
			err := u.Apply(tt.patch, later)
			if tt.field != "" {
				wantInvalid(t, err, tt.field)
				if u != base {
					t.Errorf("after a refused patch u = %+v, want unchanged", u)
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply = %v", err)
			}
			if u.Name != tt.wantName || u.Phone != tt.wantPhone || !u.UpdatedAt.Equal(later) || !u.CreatedAt.Equal(t0) || u.Email != base.Email {
				t.Errorf("after Apply u = %+v", u)
			}
		})
	}
}

func TestLogin(t *testing.T) {
	u, err := user.New("01HUSER", user.Draft{Email: "ada@example.com", Name: "Ada", Password: "password123"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Authenticate("password123"); err != nil {
		t.Errorf("Authenticate(right password) = %v", err)
	}
	if err := u.Authenticate("password124"); !errors.Is(err, user.ErrBadCredentials) {
		t.Errorf("Authenticate(wrong password) = %v, want ErrBadCredentials", err)
	}
	if err := user.NoAccount("password123"); !errors.Is(err, user.ErrBadCredentials) {
		t.Errorf("NoAccount = %v, want ErrBadCredentials", err)
	}

	if email, err := user.LoginEmail(" ADA@example.com", "password123"); err != nil || email != "ada@example.com" {
		t.Errorf("LoginEmail = %q, %v; want the normalized email", email, err)
	}
	refused := []struct{ name, email, password string }{
		{"a malformed email", "not an email", "password123"},
		{"an empty password", "ada@example.com", ""},
		{"an oversize password", "ada@example.com", strings.Repeat("p", user.MaxPassword+1)},
	}
	for _, tt := range refused {
		t.Run(tt.name+" is refused as bad credentials", func(t *testing.T) {
			if _, err := user.LoginEmail(tt.email, tt.password); !errors.Is(err, user.ErrBadCredentials) {
				t.Errorf("LoginEmail = %v, want ErrBadCredentials", err)
			}
		})
	}
}

// recordingSealer records what it was asked to seal and returns "sealed".
type recordingSealer struct {
	plain, ad string
	err       error
}

func (s *recordingSealer) Seal(plaintext, ad []byte) ([]byte, error) {
	s.plain, s.ad = string(plaintext), string(ad)
	return []byte("sealed"), s.err
}

func TestNewBankAccount(t *testing.T) {
	draft := user.BankAccountDraft{Holder: " Ada Lovelace ", Bank: "Deutsche Bank", AccountNumber: "de89 3704 0044 0532 0130 00", Currency: "EUR"}
	seal := &recordingSealer{}
	a, err := user.NewBankAccount("01HACCT", "01HUSER", draft, t0, seal)
	if err != nil {
		t.Fatalf("NewBankAccount = %v", err)
	}
	if seal.plain != "DE89370400440532013000" || seal.ad != "01HUSER/01HACCT" {
		t.Errorf("sealed %q bound to %q; want the normalized number bound to owner/id", seal.plain, seal.ad)
	}
	if a.ID != "01HACCT" || a.Holder != "Ada Lovelace" || a.Bank != "Deutsche Bank" || a.Currency != "EUR" ||
		a.Last4 != "3000" || !a.CreatedAt.Equal(t0) || string(a.SealedNumber) != "sealed" {
		t.Errorf("NewBankAccount = %+v", a)
	}
	if got := a.MaskedNumber(); got != "****3000" {
		t.Errorf("MaskedNumber = %q, want ****3000", got)
	}

	t.Run("an invalid draft is refused before sealing", func(t *testing.T) {
		seal := &recordingSealer{}
		bad := draft
		bad.Currency = "usd"
		_, err := user.NewBankAccount("01HACCT", "01HUSER", bad, t0, seal)
		wantInvalid(t, err, "currency")
		if seal.plain != "" {
			t.Error("the number was sealed for a refused account")
		}
	})
	t.Run("a sealing failure is returned", func(t *testing.T) {
		boom := errors.New("no key")
		if _, err := user.NewBankAccount("01HACCT", "01HUSER", draft, t0, &recordingSealer{err: boom}); !errors.Is(err, boom) {
			t.Errorf("err = %v, want %v", err, boom)
		}
	})
}

func TestNewDevice(t *testing.T) {
	d, err := user.NewDevice("tok-1", "android", t0)
	if err != nil || d != (user.Device{Token: "tok-1", Platform: "android", CreatedAt: t0}) {
		t.Errorf("NewDevice = %+v, %v", d, err)
	}
	_, err = user.NewDevice("tok-1", "blackberry", t0)
	wantInvalid(t, err, "platform")
}
