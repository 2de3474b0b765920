package handler_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/oklog/ulid/v2"
	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/rpcfake"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/services/users/internal/handler"
	"github.com/marketmesh/marketmesh/services/users/internal/sealer"
	"github.com/marketmesh/marketmesh/services/users/internal/store"
	"github.com/marketmesh/marketmesh/services/users/internal/user"
)

// countingNotifier records how often the relay was told about new events.
type countingNotifier struct{ n atomic.Int32 }

func (c *countingNotifier) Notify() { c.n.Add(1) }

type fixture struct {
	h      *handler.Users
	store  *store.Store
	sealer *sealer.Sealer
	relay  *countingNotifier
	path   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.db")
	s, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	key, err := sealer.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	seal, err := sealer.New(key)
	if err != nil {
		t.Fatal(err)
	}
	relay := &countingNotifier{}
	return &fixture{h: handler.New(s, seal, relay), store: s, sealer: seal, relay: relay, path: path}
}

// register creates a user through the handler and returns it.
func (f *fixture) register(t *testing.T, email, password, name string) usersrpc.User {
	t.Helper()
	var u usersrpc.User
	if err := f.h.Register(context.Background(), &usersrpc.RegisterRequest{Email: email, Password: password, Name: name}, &u); err != nil {
		t.Fatalf("Register(%s) = %v", email, err)
	}
	return u
}

func as(uid string) context.Context { return rpcmeta.WithCaller(context.Background(), uid) }

// microErr fails unless err is a go-micro error of usersrpc.Service with code, and returns it.
func microErr(t testing.TB, err error, code int32) *merrors.Error {
	t.Helper()
	return rpcfake.RequireCode(t, err, usersrpc.Service, code)
}

func TestCallerEndpointsRequireACaller(t *testing.T) {
	f := newFixture(t)
	u := f.register(t, "ada@example.com", "password123", "Ada")
	name := "Mallory"
	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Me", func(ctx context.Context) error { return f.h.Me(ctx, &usersrpc.Empty{}, &usersrpc.User{}) }},
		{"Update", func(ctx context.Context) error {
			return f.h.Update(ctx, &usersrpc.UpdateRequest{Name: &name}, &usersrpc.User{})
		}},
		{"ListWishlist", func(ctx context.Context) error {
			return f.h.ListWishlist(ctx, &usersrpc.PageRequest{}, &usersrpc.WishlistPage{})
		}},
		{"AddWishlist", func(ctx context.Context) error {
			return f.h.AddWishlist(ctx, &usersrpc.WishlistRequest{PublicationID: "pub-1"}, &usersrpc.WishlistAdded{})
		}},
		{"RemoveWishlist", func(ctx context.Context) error {
			return f.h.RemoveWishlist(ctx, &usersrpc.WishlistRequest{PublicationID: "pub-1"}, &usersrpc.Empty{})
		}},
		{"ListBankAccounts", func(ctx context.Context) error {
			return f.h.ListBankAccounts(ctx, &usersrpc.PageRequest{}, &usersrpc.BankAccountPage{})
		}},
		{"AddBankAccount", func(ctx context.Context) error {
			return f.h.AddBankAccount(ctx, &usersrpc.AddBankAccountRequest{Holder: "A", Bank: "B", AccountNumber: "12345678", Currency: "USD"}, &usersrpc.BankAccount{})
		}},
		{"RemoveBankAccount", func(ctx context.Context) error {
			return f.h.RemoveBankAccount(ctx, &usersrpc.IDRequest{ID: "x"}, &usersrpc.Empty{})
		}},
		{"ListDevices", func(ctx context.Context) error {
			return f.h.ListDevices(ctx, &usersrpc.PageRequest{}, &usersrpc.DevicePage{})
		}},
		{"AddDevice", func(ctx context.Context) error {
			return f.h.AddDevice(ctx, &usersrpc.AddDeviceRequest{Token: "tok", Platform: "ios"}, &usersrpc.DeviceAdded{})
		}},
		{"RemoveDevice", func(ctx context.Context) error {
			return f.h.RemoveDevice(ctx, &usersrpc.DeviceRequest{Token: "tok"}, &usersrpc.Empty{})
		}},
		{"GetPreferences", func(ctx context.Context) error {
			return f.h.GetPreferences(ctx, &usersrpc.Empty{}, &usersrpc.Preferences{})
		}},
		{"SetPreferences", func(ctx context.Context) error {
			return f.h.SetPreferences(ctx, &usersrpc.Preferences{}, &usersrpc.Preferences{})
		}},
	}
	for _, c := range calls {
		t.Run(c.name+" without a caller is 401", func(t *testing.T) {
			microErr(t, c.call(context.Background()), 401)
		})
		t.Run(c.name+" with an empty caller is 401", func(t *testing.T) {
			microErr(t, c.call(as("")), 401)
		})
	}
	// Nothing was written on the anonymous calls.
	if got, _ := f.store.UserByID(u.ID); got.Name != "Ada" {
		t.Errorf("name = %q after anonymous updates", got.Name)
	}
	if p, _ := f.store.GetPreferences(""); p != user.DefaultPreferences {
		t.Errorf("anonymous SetPreferences stored %+v", p)
	}
}

func TestRegister(t *testing.T) {
	f := newFixture(t)
	var u usersrpc.User
	err := f.h.Register(context.Background(), &usersrpc.RegisterRequest{Email: "  Ada@Example.com ", Password: "password123", Name: " Ada Lovelace "}, &u)
	if err != nil {
		t.Fatal(err)
	}
	if u.ID == "" || u.Email != "ada@example.com" || u.Name != "Ada Lovelace" || u.CreatedAt.IsZero() {
		t.Errorf("registered user = %+v", u)
	}
	if n := f.relay.n.Load(); n != 1 {
		t.Errorf("Notify called %d times, want 1", n)
	}
	rec, err := f.store.UserByEmail("ada@example.com")
	if err != nil || rec.ID != u.ID {
		t.Fatalf("stored = %+v, %v", rec, err)
	}
	if rec.PasswordHash == "" || strings.Contains(rec.PasswordHash, "password123") {
		t.Errorf("password hash %q", rec.PasswordHash)
	}

	// The outbox holds exactly one user.registered event for this user.
	evs, err := events.Outbox(f.store.Bolt())
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Topic != usersrpc.TopicUserRegistered {
		t.Fatalf("outbox = %+v, want one %s event", evs, usersrpc.TopicUserRegistered)
	}
	var payload usersrpc.UserRegistered
	if err := evs[0].Decode(&payload); err != nil || payload.UserID != u.ID || payload.Email != u.Email {
		t.Errorf("event payload = %+v, %v", payload, err)
	}
	// Its ID and time were decided by the command: a ULID of its own, and
	// the account's creation time.
	if _, err := ulid.ParseStrict(evs[0].ID); err != nil || evs[0].ID == u.ID {
		t.Errorf("event ID %q (user %s): %v", evs[0].ID, u.ID, err)
	}
	if !evs[0].Time.Equal(u.CreatedAt) {
		t.Errorf("event time %v, want the creation time %v", evs[0].Time, u.CreatedAt)
	}

	t.Run("the same email in another case is a conflict", func(t *testing.T) {
		err := f.h.Register(context.Background(), &usersrpc.RegisterRequest{Email: "ADA@EXAMPLE.COM", Password: "password456", Name: "Other"}, &usersrpc.User{})
		me := microErr(t, err, 409)
		if !strings.Contains(me.Detail, "email") {
			t.Errorf("detail %q does not mention the email", me.Detail)
		}
		if n := f.relay.n.Load(); n != 1 {
			t.Errorf("Notify called %d times after a refused registration, want still 1", n)
		}
	})
}

func TestRegisterValidation(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name  string
		req   usersrpc.RegisterRequest
		field string
	}{
		{"a missing email is 422", usersrpc.RegisterRequest{Password: "password123", Name: "Ada"}, "email"},
		{"a malformed email is 422", usersrpc.RegisterRequest{Email: "ada@", Password: "password123", Name: "Ada"}, "email"},
		{"a missing name is 422", usersrpc.RegisterRequest{Email: "ada@example.com", Password: "password123"}, "name"},
		{"a name with control characters is 422", usersrpc.RegisterRequest{Email: "ada@example.com", Password: "password123", Name: "A\x07da"}, "name"},
		{"a name over 100 characters is 422", usersrpc.RegisterRequest{Email: "ada@example.com", Password: "password123", Name: strings.Repeat("n", 101)}, "name"},
		{"a missing password is 422", usersrpc.RegisterRequest{Email: "ada@example.com", Name: "Ada"}, "password"},
		{"a 7-character password is 422", usersrpc.RegisterRequest{Email: "ada@example.com", Password: "1234567", Name: "Ada"}, "password"},
		{"a 257-byte password is 422", usersrpc.RegisterRequest{Email: "ada@example.com", Password: strings.Repeat("p", 257), Name: "Ada"}, "password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := f.h.Register(context.Background(), &tt.req, &usersrpc.User{})
			me := microErr(t, err, 422)
			if !strings.Contains(me.Detail, tt.field) {
				t.Errorf("detail %q does not name %q", me.Detail, tt.field)
			}
		})
	}
	if n := f.relay.n.Load(); n != 0 {
		t.Errorf("Notify called %d times for refused registrations", n)
	}
	if _, err := f.store.UserByEmail("ada@example.com"); err == nil {
		t.Error("an invalid registration was stored")
	}
}

func TestAuthenticate(t *testing.T) {
	f := newFixture(t)
	u := f.register(t, "ada@example.com", "password123", "Ada")

	var got usersrpc.User
	if err := f.h.Authenticate(context.Background(), &usersrpc.AuthenticateRequest{Email: " ADA@example.com", Password: "password123"}, &got); err != nil {
		t.Fatalf("right credentials: %v", err)
	}
	if got.ID != u.ID {
		t.Errorf("authenticated %s, want %s", got.ID, u.ID)
	}

	tests := []struct {
		name string
		req  usersrpc.AuthenticateRequest
	}{
		{"a wrong password", usersrpc.AuthenticateRequest{Email: "ada@example.com", Password: "password124"}},
		{"an unknown email", usersrpc.AuthenticateRequest{Email: "bob@example.com", Password: "password123"}},
		{"a malformed email", usersrpc.AuthenticateRequest{Email: "not an email", Password: "password123"}},
		{"an empty password", usersrpc.AuthenticateRequest{Email: "ada@example.com", Password: ""}},
		{"an oversize password", usersrpc.AuthenticateRequest{Email: "ada@example.com", Password: strings.Repeat("p", 300)}},
	}
	var details []string
	for _, tt := range tests {
		t.Run(tt.name+" is 401", func(t *testing.T) {
			var rsp usersrpc.User
			me := microErr(t, f.h.Authenticate(context.Background(), &tt.req, &rsp), 401)
			details = append(details, me.Detail)
			if rsp.ID != "" {
				t.Errorf("response carries user %s", rsp.ID)
			}
		})
	}
	for i := 1; i < len(details); i++ {
		if details[i] != details[0] {
			t.Errorf("401 details differ, revealing which emails exist: %q vs %q", details[0], details[i])
		}
	}
}

func TestMeUpdateAndProfile(t *testing.T) {
	f := newFixture(t)
	u := f.register(t, "ada@example.com", "password123", "Ada")
	ctx := as(u.ID)

	var me usersrpc.User
	if err := f.h.Me(ctx, &usersrpc.Empty{}, &me); err != nil || me.ID != u.ID || me.Email != u.Email {
		t.Fatalf("Me = %+v, %v", me, err)
	}

	phone, name := "+1 (415) 555-0123", "Ada Lovelace"
	var upd usersrpc.User
	if err := f.h.Update(ctx, &usersrpc.UpdateRequest{Phone: &phone}, &upd); err != nil {
		t.Fatal(err)
	}
	if upd.Phone != "+14155550123" || upd.Name != "Ada" {
		t.Errorf("after phone update = %+v (name must be unchanged)", upd)
	}
	if err := f.h.Update(ctx, &usersrpc.UpdateRequest{Name: &name}, &upd); err != nil {
		t.Fatal(err)
	}
	if upd.Name != name || upd.Phone != "+14155550123" {
		t.Errorf("after name update = %+v (phone must be unchanged)", upd)
	}

	bad := []struct {
		name  string
		req   usersrpc.UpdateRequest
		field string
	}{
		{"a malformed phone is 422", usersrpc.UpdateRequest{Phone: ptr("555-0123")}, "phone"},
		{"an empty name is 422", usersrpc.UpdateRequest{Name: ptr("  ")}, "name"},
		{"a valid name with a bad phone changes nothing", usersrpc.UpdateRequest{Name: ptr("Mallory"), Phone: ptr("call me")}, "phone"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			me := microErr(t, f.h.Update(ctx, &tt.req, &usersrpc.User{}), 422)
			if !strings.Contains(me.Detail, tt.field) {
				t.Errorf("detail %q does not name %q", me.Detail, tt.field)
			}
		})
	}
	if rec, _ := f.store.UserByID(u.ID); rec.Name != name || rec.Phone != "+14155550123" {
		t.Errorf("stored after refused updates = %+v", rec)
	}

	t.Run("an empty phone clears it", func(t *testing.T) {
		var upd usersrpc.User
		if err := f.h.Update(ctx, &usersrpc.UpdateRequest{Phone: ptr("")}, &upd); err != nil || upd.Phone != "" {
			t.Errorf("got %+v, %v", upd, err)
		}
	})
	t.Run("Me of a caller that does not exist is 404", func(t *testing.T) {
		microErr(t, f.h.Me(as("01HNOBODY"), &usersrpc.Empty{}, &usersrpc.User{}), 404)
	})
	t.Run("Update of a caller that does not exist is 404", func(t *testing.T) {
		microErr(t, f.h.Update(as("01HNOBODY"), &usersrpc.UpdateRequest{Name: &name}, &usersrpc.User{}), 404)
	})
	t.Run("Profile shows the public fields", func(t *testing.T) {
		var p usersrpc.PublicProfile
		if err := f.h.Profile(context.Background(), &usersrpc.ProfileRequest{ID: u.ID}, &p); err != nil {
			t.Fatal(err)
		}
		if p.ID != u.ID || p.Name != name || !p.MemberSince.Equal(u.CreatedAt) {
			t.Errorf("profile = %+v", p)
		}
	})
	t.Run("Profile of an unknown ID is 404 naming it", func(t *testing.T) {
		me := microErr(t, f.h.Profile(context.Background(), &usersrpc.ProfileRequest{ID: "01HNOBODY"}, &usersrpc.PublicProfile{}), 404)
		if !strings.Contains(me.Detail, "01HNOBODY") {
			t.Errorf("detail %q does not name the ID", me.Detail)
		}
	})
}

func ptr[T any](v T) *T { return &v }

func TestAddBankAccountStoresOnlyASealedNumber(t *testing.T) {
	f := newFixture(t)
	u := f.register(t, "ada@example.com", "password123", "Ada")
	ctx := as(u.ID)
	const number = "DE89370400440532013000"

	var acct usersrpc.BankAccount
	err := f.h.AddBankAccount(ctx, &usersrpc.AddBankAccountRequest{Holder: "Ada Lovelace", Bank: "Deutsche Bank", AccountNumber: "de89 3704 0044 0532 0130 00", Currency: "EUR"}, &acct)
	if err != nil {
		t.Fatal(err)
	}
	if acct.AccountNumber != "****3000" || acct.ID == "" || acct.Currency != "EUR" || acct.Holder != "Ada Lovelace" {
		t.Errorf("response = %+v, want the number masked as ****3000", acct)
	}

	var page usersrpc.BankAccountPage
	if err := f.h.ListBankAccounts(ctx, &usersrpc.PageRequest{}, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 || page.Items[0].AccountNumber != "****3000" || page.Items[0].ID != acct.ID {
		t.Errorf("list = %+v", page.Items)
	}

	recs, _, err := f.store.ListBankAccounts(u.ID, 20, "")
	if err != nil || len(recs) != 1 {
		t.Fatalf("stored records = %+v, %v", recs, err)
	}
	rec := recs[0]
	if rec.Last4 != "3000" || bytes.Contains(rec.SealedNumber, []byte(number)) {
		t.Errorf("stored record = %+v", rec)
	}
	// The sealed number is the real one, bound to owner and account.
	plain, err := f.sealer.Open(rec.SealedNumber, []byte(u.ID+"/"+rec.ID))
	if err != nil || string(plain) != number {
		t.Errorf("sealed number opens to %q, %v; want %q", plain, err, number)
	}
	if _, err := f.sealer.Open(rec.SealedNumber, []byte("someone-else/"+rec.ID)); err == nil {
		t.Error("the sealed number opens for another owner")
	}

	raw, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(acct.ID)) {
		t.Fatal("the account ID is not in the database file: the check below would prove nothing")
	}
	for _, s := range []string{number, "DE89 3704", "370400440532013000", "7040044053201", base64.StdEncoding.EncodeToString([]byte(number))} {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("the database file contains %q in the clear", s)
		}
	}

	t.Run("an invalid account is 422 naming the field", func(t *testing.T) {
		tests := []struct {
			req   usersrpc.AddBankAccountRequest
			field string
		}{
			{usersrpc.AddBankAccountRequest{Holder: "A", Bank: "B", AccountNumber: "123", Currency: "USD"}, "account_number"},
			{usersrpc.AddBankAccountRequest{Holder: "A", Bank: "B", AccountNumber: "12345678", Currency: "usd"}, "currency"},
			{usersrpc.AddBankAccountRequest{Holder: "", Bank: "B", AccountNumber: "12345678", Currency: "USD"}, "holder"},
		}
		for _, tt := range tests {
			me := microErr(t, f.h.AddBankAccount(ctx, &tt.req, &usersrpc.BankAccount{}), 422)
			if !strings.Contains(me.Detail, tt.field) {
				t.Errorf("detail %q does not name %q", me.Detail, tt.field)
			}
		}
	})
	t.Run("another user cannot remove it", func(t *testing.T) {
		microErr(t, f.h.RemoveBankAccount(as("01HOTHER"), &usersrpc.IDRequest{ID: acct.ID}, &usersrpc.Empty{}), 404)
	})
	t.Run("the owner removes it once", func(t *testing.T) {
		if err := f.h.RemoveBankAccount(ctx, &usersrpc.IDRequest{ID: acct.ID}, &usersrpc.Empty{}); err != nil {
			t.Fatal(err)
		}
		microErr(t, f.h.RemoveBankAccount(ctx, &usersrpc.IDRequest{ID: acct.ID}, &usersrpc.Empty{}), 404)
	})
}

func TestWishlistDevicesAndPreferences(t *testing.T) {
	f := newFixture(t)
	ctx := as("01HUSERA")

	var added usersrpc.WishlistAdded
	if err := f.h.AddWishlist(ctx, &usersrpc.WishlistRequest{PublicationID: "pub-1"}, &added); err != nil || !added.Created {
		t.Fatalf("first add = %+v, %v", added, err)
	}
	if err := f.h.AddWishlist(ctx, &usersrpc.WishlistRequest{PublicationID: "pub-1"}, &added); err != nil || added.Created {
		t.Fatalf("second add = %+v, %v; want created false", added, err)
	}
	microErr(t, f.h.AddWishlist(ctx, &usersrpc.WishlistRequest{PublicationID: "a/b"}, &added), 422)
	microErr(t, f.h.AddWishlist(ctx, &usersrpc.WishlistRequest{PublicationID: "pub\x00-1"}, &added), 422)
	me := microErr(t, f.h.RemoveWishlist(ctx, &usersrpc.WishlistRequest{PublicationID: "pub-2"}, &usersrpc.Empty{}), 404)
	if !strings.Contains(me.Detail, "pub-2") {
		t.Errorf("404 detail %q does not name the publication", me.Detail)
	}
	for _, tok := range []string{"!!!", "abc", "garbage"} { // "abc" and "garbage" are valid base64
		microErr(t, f.h.ListWishlist(ctx, &usersrpc.PageRequest{PageToken: tok}, &usersrpc.WishlistPage{}), 400)
		microErr(t, f.h.ListBankAccounts(ctx, &usersrpc.PageRequest{PageToken: tok}, &usersrpc.BankAccountPage{}), 400)
		microErr(t, f.h.ListDevices(ctx, &usersrpc.PageRequest{PageToken: tok}, &usersrpc.DevicePage{}), 400)
	}

	var dev usersrpc.DeviceAdded
	if err := f.h.AddDevice(ctx, &usersrpc.AddDeviceRequest{Token: "tok-1", Platform: "android"}, &dev); err != nil || !dev.Created || dev.Device.Platform != "android" {
		t.Fatalf("add device = %+v, %v", dev, err)
	}
	microErr(t, f.h.AddDevice(ctx, &usersrpc.AddDeviceRequest{Token: "tok-2", Platform: "blackberry"}, &dev), 422)
	var devs usersrpc.DevicePage
	if err := f.h.ListDevices(ctx, &usersrpc.PageRequest{}, &devs); err != nil || len(devs.Items) != 1 {
		t.Fatalf("devices = %+v, %v", devs, err)
	}
	microErr(t, f.h.RemoveDevice(as("01HUSERB"), &usersrpc.DeviceRequest{Token: "tok-1"}, &usersrpc.Empty{}), 404)

	var p usersrpc.Preferences
	if err := f.h.GetPreferences(ctx, &usersrpc.Empty{}, &p); err != nil || p != (usersrpc.Preferences{Email: true, Push: true}) {
		t.Fatalf("default preferences = %+v, %v", p, err)
	}
	if err := f.h.SetPreferences(ctx, &usersrpc.Preferences{Email: true, Push: false}, &p); err != nil {
		t.Fatal(err)
	}
	if err := f.h.GetPreferences(ctx, &usersrpc.Empty{}, &p); err != nil || p != (usersrpc.Preferences{Email: true, Push: false}) {
		t.Errorf("preferences after set = %+v, %v", p, err)
	}
}

func TestListPageSizeIsClamped(t *testing.T) {
	f := newFixture(t)
	ctx := as("01HUSERA")
	for i := range 105 {
		id := fmt.Sprintf("pub-%03d", i)
		if err := f.h.AddWishlist(ctx, &usersrpc.WishlistRequest{PublicationID: id}, &usersrpc.WishlistAdded{}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name      string
		size, got int
	}{
		{"zero asks for the default of 20", 0, 20},
		{"a negative size asks for the default of 20", -5, 20},
		{"7 gives 7", 7, 7},
		{"over 100 is capped at 100", 1000, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var page usersrpc.WishlistPage
			if err := f.h.ListWishlist(ctx, &usersrpc.PageRequest{PageSize: tt.size}, &page); err != nil {
				t.Fatal(err)
			}
			if len(page.Items) != tt.got || page.NextPageToken == "" {
				t.Errorf("got %d items (next %q), want %d and a next token", len(page.Items), page.NextPageToken, tt.got)
			}
		})
	}
}
