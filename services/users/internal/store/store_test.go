package store_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/services/users/internal/store"
	"github.com/marketmesh/marketmesh/services/users/internal/user"
)

// outboxBucket is where plugins/events keeps events waiting for delivery.
var outboxBucket = []byte("events.outbox")

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func openStore(t *testing.T, path string) *store.Store {
	t.Helper()
	s, err := store.Open(path)
	if err != nil {
		t.Fatalf("Open(%s) = %v", path, err)
	}
	return s
}

func newStore(t *testing.T) (*store.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users", "users.db")
	s := openStore(t, path)
	t.Cleanup(func() { s.Close() })
	return s, path
}

func newUser(email string) user.User {
	return user.User{
		ID: ulid.Make().String(), Email: email, Name: "Ada", PasswordHash: "$argon2id$fake",
		CreatedAt: t0, UpdatedAt: t0,
	}
}

// registered is the user.registered event Register prepares for
// CreateUser: its ID and time decided before the transaction.
func registered(t *testing.T, rec user.User) events.Event {
	t.Helper()
	ev, err := events.NewEvent(ulid.Make().String(), rec.CreatedAt, "marketmesh.users", "user.registered", map[string]string{"user_id": rec.ID})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func outboxCount(t *testing.T, s *store.Store) int {
	t.Helper()
	n := 0
	err := s.Bolt().View(func(tx *bolt.Tx) error {
		b := tx.Bucket(outboxBucket)
		if b == nil {
			return errors.New("bucket events.outbox missing")
		}
		n = b.Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustCreate(t *testing.T, s *store.Store, email string) user.User {
	t.Helper()
	rec := newUser(email)
	if err := s.CreateUser(rec, registered(t, rec)); err != nil {
		t.Fatalf("CreateUser(%s) = %v", email, err)
	}
	return rec
}

func TestCreateUserAndLookUp(t *testing.T) {
	s, _ := newStore(t)
	rec := newUser("ada@example.com")
	rec.Phone = "+14155550123"
	if err := s.CreateUser(rec, registered(t, rec)); err != nil {
		t.Fatal(err)
	}
	byID, err := s.UserByID(rec.ID)
	if err != nil {
		t.Fatalf("UserByID = %v", err)
	}
	byEmail, err := s.UserByEmail("ada@example.com")
	if err != nil {
		t.Fatalf("UserByEmail = %v", err)
	}
	for _, got := range []user.User{byID, byEmail} {
		if got.ID != rec.ID || got.Email != rec.Email || got.Name != rec.Name || got.Phone != rec.Phone ||
			got.PasswordHash != rec.PasswordHash || !got.CreatedAt.Equal(rec.CreatedAt) {
			t.Errorf("stored user = %+v, want %+v", got, rec)
		}
	}
	if n := outboxCount(t, s); n != 1 {
		t.Errorf("outbox holds %d events, want 1", n)
	}
	if err := s.Check(context.Background()); err != nil {
		t.Errorf("Check = %v", err)
	}

	missing := []struct {
		name string
		get  func() (user.User, error)
	}{
		{"an unknown ID is not found", func() (user.User, error) { return s.UserByID(ulid.Make().String()) }},
		{"an unknown email is not found", func() (user.User, error) { return s.UserByEmail("bob@example.com") }},
		{"emails are looked up as stored (callers normalize)", func() (user.User, error) { return s.UserByEmail("ADA@example.com") }},
	}
	for _, tt := range missing {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.get(); !errors.Is(err, user.ErrNotFound) {
				t.Errorf("err = %v, want ErrNotFound", err)
			}
		})
	}
}

// CreateUser appends the event its caller prepared, as it is: the ID and
// time are the caller's, nothing is generated in the transaction, so
// applying the same prepared write again (as a batch that runs its function
// again does) writes the same bytes, once.
func TestCreateUserAppendsTheCallersEvent(t *testing.T) {
	s, _ := newStore(t)
	rec := newUser("ada@example.com")
	id := ulid.Make().String()
	ev, err := events.NewEvent(id, t0, "marketmesh.users", "user.registered", map[string]string{"user_id": rec.ID})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := s.CreateUser(rec, ev); err != nil {
			t.Fatalf("CreateUser #%d = %v", i+1, err)
		}
	}
	var raws [][]byte
	err = s.Bolt().View(func(tx *bolt.Tx) error {
		return tx.Bucket(outboxBucket).ForEach(func(_, v []byte) error {
			raws = append(raws, append([]byte(nil), v...))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	want, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(raws) != 1 || string(raws[0]) != string(want) {
		t.Fatalf("outbox = %q, want exactly %q", raws, want)
	}
	var got events.Event
	if err := json.Unmarshal(raws[0], &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != id || !got.Time.Equal(t0) {
		t.Fatalf("outbox event %s at %v, want the caller's %s at %v", got.ID, got.Time, id, t0)
	}
}

func TestCreateUserRefusesATakenEmail(t *testing.T) {
	s, _ := newStore(t)
	first := newUser("ada@example.com")
	if err := s.CreateUser(first, registered(t, first)); err != nil {
		t.Fatal(err)
	}
	second := newUser("ada@example.com")
	err := s.CreateUser(second, registered(t, second))
	if !errors.Is(err, user.ErrEmailTaken) {
		t.Fatalf("second CreateUser = %v, want ErrEmailTaken", err)
	}
	if _, err := s.UserByID(second.ID); !errors.Is(err, user.ErrNotFound) {
		t.Errorf("the refused user was stored: UserByID = %v", err)
	}
	if got, _ := s.UserByEmail("ada@example.com"); got.ID != first.ID {
		t.Errorf("the email now points at %s, want the first user %s", got.ID, first.ID)
	}
	if n := outboxCount(t, s); n != 1 {
		t.Errorf("outbox holds %d events, want 1", n)
	}
}

func TestCreateUserRollsBackWhenTheOutboxFails(t *testing.T) {
	s, _ := newStore(t)
	rec := newUser("ada@example.com")
	bad := registered(t, rec)
	bad.ID = "" // the outbox refuses an event without an ID
	if err := s.CreateUser(rec, bad); err == nil {
		t.Fatal("CreateUser with an event the outbox refuses succeeded")
	}
	if n := outboxCount(t, s); n != 0 {
		t.Errorf("outbox holds %d events, want 0", n)
	}
	if _, err := s.UserByEmail("ada@example.com"); !errors.Is(err, user.ErrNotFound) {
		t.Errorf("user committed without its event: UserByEmail = %v", err)
	}
	// The email is free again.
	mustCreate(t, s, "ada@example.com")
}

func TestConcurrentRegistrationsOfOneEmailHaveOneWinner(t *testing.T) {
	s, _ := newStore(t)
	const n = 20
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, n)
		recs  = make([]user.User, n)
	)
	for i := range n {
		recs[i] = newUser("race@example.com")
		ev := registered(t, recs[i])
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = s.CreateUser(recs[i], ev)
		}()
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Errorf("registrations %d and %d both succeeded", winner, i)
			}
			winner = i
		case !errors.Is(err, user.ErrEmailTaken):
			t.Errorf("registration %d: %v, want nil or ErrEmailTaken", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no registration succeeded")
	}
	if got, err := s.UserByEmail("race@example.com"); err != nil || got.ID != recs[winner].ID {
		t.Errorf("UserByEmail = %s, %v; want the winner %s", got.ID, err, recs[winner].ID)
	}
	for i, rec := range recs {
		if _, err := s.UserByID(rec.ID); i != winner && err == nil {
			t.Errorf("loser %d was stored", i)
		}
	}
	if got := outboxCount(t, s); got != 1 {
		t.Errorf("outbox holds %d events, want exactly 1", got)
	}
}

func TestUpdateUser(t *testing.T) {
	s, _ := newStore(t)
	rec := mustCreate(t, s, "ada@example.com")
	later := t0.Add(time.Hour)

	got, err := s.UpdateUser(rec.ID, func(r *user.User) error {
		r.Name, r.Phone, r.UpdatedAt = "Ada Lovelace", "+441234567890", later
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "Ada Lovelace" || got.Phone != "+441234567890" || !got.UpdatedAt.Equal(later) {
		t.Errorf("UpdateUser returned %+v", got)
	}
	stored, _ := s.UserByID(rec.ID)
	if stored.Name != "Ada Lovelace" || stored.Phone != "+441234567890" || !stored.CreatedAt.Equal(t0) {
		t.Errorf("stored after update = %+v", stored)
	}

	t.Run("an error from fn changes nothing", func(t *testing.T) {
		boom := errors.New("refused")
		_, err := s.UpdateUser(rec.ID, func(r *user.User) error { r.Name = "Mallory"; return boom })
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v, want %v", err, boom)
		}
		if stored, _ := s.UserByID(rec.ID); stored.Name != "Ada Lovelace" {
			t.Errorf("name = %q after a failed update", stored.Name)
		}
	})
	t.Run("an unknown user is not found and fn is not called", func(t *testing.T) {
		called := false
		_, err := s.UpdateUser("nobody", func(*user.User) error { called = true; return nil })
		if !errors.Is(err, user.ErrNotFound) || called {
			t.Errorf("err = %v, called = %v; want ErrNotFound, false", err, called)
		}
	})
}

func TestWishlistAddRemove(t *testing.T) {
	s, _ := newStore(t)
	const owner = "user-a"

	e, created, err := s.AddWishlist(owner, "pub-1", t0)
	if err != nil || !created || e.PublicationID != "pub-1" || !e.AddedAt.Equal(t0) {
		t.Fatalf("first add = %+v, %v, %v; want created at t0", e, created, err)
	}
	e, created, err = s.AddWishlist(owner, "pub-1", t0.Add(time.Hour))
	if err != nil || created {
		t.Fatalf("second add = created %v, %v; want false, nil", created, err)
	}
	if !e.AddedAt.Equal(t0) {
		t.Errorf("second add reports added_at %v, want the original %v", e.AddedAt, t0)
	}
	items, _, err := s.ListWishlist(owner, 20, "")
	if err != nil || len(items) != 1 {
		t.Fatalf("list after two adds = %v, %v; want one item", items, err)
	}

	if err := s.RemoveWishlist(owner, "pub-1"); err != nil {
		t.Fatalf("remove = %v", err)
	}
	if err := s.RemoveWishlist(owner, "pub-1"); !errors.Is(err, user.ErrNotFound) {
		t.Errorf("removing again = %v, want ErrNotFound", err)
	}
	if err := s.RemoveWishlist(owner, "never-added"); !errors.Is(err, user.ErrNotFound) {
		t.Errorf("removing a missing item = %v, want ErrNotFound", err)
	}
	if items, _, _ := s.ListWishlist(owner, 20, ""); len(items) != 0 {
		t.Errorf("list after remove = %v, want empty", items)
	}
}

func pubID(i int) string { return fmt.Sprintf("pub-%03d", i) }

func TestWishlistPaging(t *testing.T) {
	s, _ := newStore(t)
	const owner = "user-a"
	for i := range 45 {
		if _, _, err := s.AddWishlist(owner, pubID(i), t0); err != nil {
			t.Fatal(err)
		}
	}
	// Another user's items sort right after owner's and must not leak into the pages.
	for i := range 3 {
		if _, _, err := s.AddWishlist(owner+"b", pubID(i), t0); err != nil {
			t.Fatal(err)
		}
	}

	var (
		got   []string
		sizes []int
		token string
	)
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatal("paging does not end")
		}
		items, next, err := s.ListWishlist(owner, 20, token)
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		sizes = append(sizes, len(items))
		for _, it := range items {
			got = append(got, it.PublicationID)
		}
		if next == "" {
			break
		}
		token = next
	}
	if !slices.Equal(sizes, []int{20, 20, 5}) {
		t.Errorf("page sizes = %v, want [20 20 5]", sizes)
	}
	want := make([]string, 45)
	for i := range want {
		want[i] = pubID(i)
	}
	if !slices.Equal(got, want) {
		t.Errorf("items over all pages = %v, want %v (each once, in order)", got, want)
	}

	t.Run("a last page that is exactly full has no next token", func(t *testing.T) {
		items, next, err := s.ListWishlist(owner, 45, "")
		if err != nil || len(items) != 45 || next != "" {
			t.Errorf("got %d items, next %q, %v; want 45 and no token", len(items), next, err)
		}
	})
	t.Run("an empty list has no items and no token", func(t *testing.T) {
		items, next, err := s.ListWishlist("nobody", 20, "")
		if err != nil || len(items) != 0 || next != "" {
			t.Errorf("got %v, %q, %v", items, next, err)
		}
	})
}

func TestWishlistPagingWithInsertsBetweenPages(t *testing.T) {
	s, _ := newStore(t)
	const owner = "user-a"
	for i := 0; i < 90; i += 2 { // even numbers only: room for inserts in between
		if _, _, err := s.AddWishlist(owner, pubID(i), t0); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int{}
	type insert struct{ id, cursor string }
	var inserted []insert
	token := ""
	for page := 0; ; page++ {
		if page > 10 {
			t.Fatal("paging does not end")
		}
		items, next, err := s.ListWishlist(owner, 20, token)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			seen[it.PublicationID]++
		}
		if next == "" {
			break
		}
		token = next
		// Between fetches, add one item before the cursor (already paged
		// past), two just after it and one at the end.
		last := items[len(items)-1].PublicationID
		var n int
		if _, err := fmt.Sscanf(last, "pub-%03d", &n); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{pubID(n-1) + "x", pubID(n) + "a", pubID(n + 1), pubID(200 + page)} {
			if _, created, err := s.AddWishlist(owner, id, t0); err != nil {
				t.Fatal(err)
			} else if created {
				inserted = append(inserted, insert{id, last})
			}
		}
	}
	if len(inserted) != 8 {
		t.Fatalf("inserted %d items between pages, want 8 (two page breaks)", len(inserted))
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("%s was listed %d times", id, n)
		}
	}
	for i := 0; i < 90; i += 2 {
		if seen[pubID(i)] != 1 {
			t.Errorf("%s, present from the start, was listed %d times", pubID(i), seen[pubID(i)])
		}
	}
	for _, in := range inserted {
		want := 0 // keyset paging: what sorts before the cursor was paged past
		if in.id > in.cursor {
			want = 1
		}
		if seen[in.id] != want {
			t.Errorf("%s, inserted with the cursor at %s, was listed %d times, want %d", in.id, in.cursor, seen[in.id], want)
		}
	}
}

func TestListRefusesABadPageToken(t *testing.T) {
	s, _ := newStore(t)
	if _, _, err := s.AddWishlist("user-a", "pub-1", t0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddWishlist("user-a", "pub-2", t0); err != nil {
		t.Fatal(err)
	}
	_, issued, err := s.ListWishlist("user-a", 1, "")
	if err != nil || issued == "" {
		t.Fatalf("first page: next %q, %v", issued, err)
	}
	if _, _, err := s.ListWishlist("user-a", 1, issued); err != nil {
		t.Fatalf("the issued token is refused: %v", err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(issued)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1] ^= 1
	tampered := base64.RawURLEncoding.EncodeToString(raw)
	// "abc", "garbage" and "cHViLTE" (base64 of "pub-1") decode as base64:
	// they were once taken as a position in the list.
	for _, tok := range []string{"!!!", "not base64?", "YQ==", "a b", "abc", "garbage", "cHViLTE", tampered} {
		t.Run(fmt.Sprintf("token %q is refused", tok), func(t *testing.T) {
			lists := map[string]func() error{
				"wishlist": func() error { _, _, err := s.ListWishlist("user-a", 20, tok); return err },
				"bank":     func() error { _, _, err := s.ListBankAccounts("user-a", 20, tok); return err },
				"devices":  func() error { _, _, err := s.ListDevices("user-a", 20, tok); return err },
			}
			for name, list := range lists {
				if err := list(); !errors.Is(err, store.ErrBadPageToken) {
					t.Errorf("%s: err = %v, want ErrBadPageToken", name, err)
				}
			}
		})
	}
	t.Run("a token of another owner's list is refused", func(t *testing.T) {
		if _, _, err := s.ListWishlist("user-b", 1, issued); !errors.Is(err, store.ErrBadPageToken) {
			t.Errorf("err = %v, want ErrBadPageToken", err)
		}
	})
	t.Run("a token of another collection is refused", func(t *testing.T) {
		if _, _, err := s.ListDevices("user-a", 1, issued); !errors.Is(err, store.ErrBadPageToken) {
			t.Errorf("err = %v, want ErrBadPageToken", err)
		}
	})
}

func TestCollectionsAreIsolatedBetweenUsers(t *testing.T) {
	s, _ := newStore(t)
	const a, b = "01HUSERA", "01HUSERB"
	acct := user.BankAccount{ID: ulid.Make().String(), Holder: "Ada", Bank: "DB", SealedNumber: []byte{1, 2, 3}, Last4: "3000", Currency: "EUR", CreatedAt: t0}
	if err := s.AddBankAccount(a, acct); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddDevice(a, user.Device{Token: "tok-a", Platform: "ios", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddWishlist(a, "pub-1", t0); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		run  func() error
		want error
	}{
		{"B cannot remove A's bank account", func() error { return s.RemoveBankAccount(b, acct.ID) }, user.ErrNotFound},
		{"B cannot remove A's device", func() error { return s.RemoveDevice(b, "tok-a") }, user.ErrNotFound},
		{"B cannot remove A's wishlist item", func() error { return s.RemoveWishlist(b, "pub-1") }, user.ErrNotFound},
		{"B lists no bank accounts", func() error { return wantEmpty(s.ListBankAccounts(b, 20, "")) }, nil},
		{"B lists no devices", func() error { return wantEmpty(s.ListDevices(b, 20, "")) }, nil},
		{"B lists no wishlist", func() error { return wantEmpty(s.ListWishlist(b, 20, "")) }, nil},
		{"a token B's list did not issue reveals nothing of A's", func() error {
			return wantEmpty(s.ListBankAccounts(b, 20, "AA"))
		}, store.ErrBadPageToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}

	// A still has everything.
	accts, _, _ := s.ListBankAccounts(a, 20, "")
	if len(accts) != 1 || accts[0].ID != acct.ID || string(accts[0].SealedNumber) != string(acct.SealedNumber) || accts[0].Last4 != "3000" {
		t.Errorf("A's accounts = %+v", accts)
	}
	devs, _, _ := s.ListDevices(a, 20, "")
	if len(devs) != 1 || devs[0].Token != "tok-a" {
		t.Errorf("A's devices = %+v", devs)
	}
	if err := s.RemoveBankAccount(a, acct.ID); err != nil {
		t.Errorf("A removing its own account = %v", err)
	}
	if err := s.RemoveBankAccount(a, acct.ID); !errors.Is(err, user.ErrNotFound) {
		t.Errorf("removing it again = %v, want ErrNotFound", err)
	}
}

func wantEmpty[T any](items []T, next string, err error) error {
	if err != nil {
		return err
	}
	if len(items) != 0 || next != "" {
		return fmt.Errorf("got %d items (next %q), want none", len(items), next)
	}
	return nil
}

func TestBankAccountsListOldestFirst(t *testing.T) {
	s, _ := newStore(t)
	var ids []string
	for i := range 5 {
		id := ulid.MustNew(ulid.Timestamp(t0.Add(time.Duration(i)*time.Second)), ulid.DefaultEntropy()).String()
		ids = append(ids, id)
		if err := s.AddBankAccount("owner", user.BankAccount{ID: id, Last4: fmt.Sprint(1000 + i), CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	p1, next, err := s.ListBankAccounts("owner", 3, "")
	if err != nil || next == "" {
		t.Fatalf("page 1: %v, next %q", err, next)
	}
	p2, next2, err := s.ListBankAccounts("owner", 3, next)
	if err != nil || next2 != "" {
		t.Fatalf("page 2: %v, next %q", err, next2)
	}
	var got []string
	for _, r := range append(p1, p2...) {
		got = append(got, r.ID)
	}
	if !slices.Equal(got, ids) {
		t.Errorf("ids = %v, want %v", got, ids)
	}
}

func TestDevices(t *testing.T) {
	s, _ := newStore(t)
	const a, b = "user-a", "user-b"
	dev := user.Device{Token: "tok-1", Platform: "android", CreatedAt: t0}

	got, created, err := s.AddDevice(a, dev)
	if err != nil || !created || got != dev {
		t.Fatalf("first add = %+v, %v, %v", got, created, err)
	}
	t.Run("adding the same device again is not a creation", func(t *testing.T) {
		got, created, err := s.AddDevice(a, user.Device{Token: "tok-1", Platform: "android", CreatedAt: t0.Add(time.Hour)})
		if err != nil || created || !got.CreatedAt.Equal(t0) {
			t.Errorf("got %+v, created %v, %v; want the original record", got, created, err)
		}
	})
	t.Run("a new platform updates the device but keeps its creation time", func(t *testing.T) {
		got, created, err := s.AddDevice(a, user.Device{Token: "tok-1", Platform: "web", CreatedAt: t0.Add(time.Hour)})
		if err != nil || created || got.Platform != "web" || !got.CreatedAt.Equal(t0) {
			t.Errorf("got %+v, created %v, %v", got, created, err)
		}
		list, _, _ := s.ListDevices(a, 20, "")
		if len(list) != 1 || list[0].Platform != "web" {
			t.Errorf("list = %+v", list)
		}
	})
	t.Run("a token moves from A to B", func(t *testing.T) {
		got, created, err := s.AddDevice(b, user.Device{Token: "tok-1", Platform: "ios", CreatedAt: t0.Add(2 * time.Hour)})
		if err != nil || !created || got.Platform != "ios" {
			t.Fatalf("B add = %+v, %v, %v", got, created, err)
		}
		if list, _, _ := s.ListDevices(a, 20, ""); len(list) != 0 {
			t.Errorf("A still lists %+v", list)
		}
		if list, _, _ := s.ListDevices(b, 20, ""); len(list) != 1 || list[0].Token != "tok-1" {
			t.Errorf("B lists %+v", list)
		}
		if err := s.RemoveDevice(a, "tok-1"); !errors.Is(err, user.ErrNotFound) {
			t.Errorf("A removing the moved token = %v, want ErrNotFound", err)
		}
	})
	t.Run("after B removes it, A can register it as new", func(t *testing.T) {
		if err := s.RemoveDevice(b, "tok-1"); err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveDevice(b, "tok-1"); !errors.Is(err, user.ErrNotFound) {
			t.Errorf("removing twice = %v", err)
		}
		if _, created, err := s.AddDevice(a, dev); err != nil || !created {
			t.Errorf("A re-add: created %v, %v", created, err)
		}
		if list, _, _ := s.ListDevices(b, 20, ""); len(list) != 0 {
			t.Errorf("B lists %+v", list)
		}
	})
}

func TestPreferences(t *testing.T) {
	s, _ := newStore(t)
	p, err := s.GetPreferences("user-a")
	if err != nil || p != (user.Preferences{Email: true, Push: true}) {
		t.Fatalf("defaults = %+v, %v; want email and push on", p, err)
	}
	if err := s.SetPreferences("user-a", user.Preferences{Email: false, Push: true}); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.GetPreferences("user-a"); p != (user.Preferences{Email: false, Push: true}) {
		t.Errorf("after set = %+v", p)
	}
	if err := s.SetPreferences("user-a", user.Preferences{}); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.GetPreferences("user-a"); p != (user.Preferences{}) {
		t.Errorf("after turning everything off = %+v, want all false (not the defaults)", p)
	}
	if p, _ := s.GetPreferences("user-b"); p != user.DefaultPreferences {
		t.Errorf("another user = %+v, want the defaults", p)
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.db")
	s := openStore(t, path)
	rec := newUser("ada@example.com")
	if err := s.CreateUser(rec, registered(t, rec)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddWishlist(rec.ID, "pub-1", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.AddBankAccount(rec.ID, user.BankAccount{ID: "acct-1", SealedNumber: []byte("sealed"), Last4: "6789", Currency: "USD", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddDevice(rec.ID, user.Device{Token: "tok-1", Platform: "ios", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPreferences(rec.ID, user.Preferences{Email: false, Push: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, path)
	defer s.Close()
	if got, err := s.UserByEmail("ada@example.com"); err != nil || got.ID != rec.ID {
		t.Errorf("user after reopen = %+v, %v", got, err)
	}
	if items, _, _ := s.ListWishlist(rec.ID, 20, ""); len(items) != 1 || !items[0].AddedAt.Equal(t0) {
		t.Errorf("wishlist after reopen = %+v", items)
	}
	if accts, _, _ := s.ListBankAccounts(rec.ID, 20, ""); len(accts) != 1 || string(accts[0].SealedNumber) != "sealed" {
		t.Errorf("bank accounts after reopen = %+v", accts)
	}
	if devs, _, _ := s.ListDevices(rec.ID, 20, ""); len(devs) != 1 {
		t.Errorf("devices after reopen = %+v", devs)
	}
	if p, _ := s.GetPreferences(rec.ID); p != (user.Preferences{Email: false, Push: true}) {
		t.Errorf("preferences after reopen = %+v", p)
	}
	if n := outboxCount(t, s); n != 1 {
		t.Errorf("outbox after reopen holds %d events, want 1", n)
	}
	// The email index survived too: the address is still taken.
	again := newUser("ada@example.com")
	if err := s.CreateUser(again, registered(t, again)); !errors.Is(err, user.ErrEmailTaken) {
		t.Errorf("re-registering after reopen = %v, want ErrEmailTaken", err)
	}
}

func TestOpenFailsWhileAnotherHandleHoldsTheFile(t *testing.T) {
	_, path := newStore(t)
	start := time.Now()
	s, err := store.Open(path)
	if err == nil {
		s.Close()
		t.Fatal("a second Open of a file in use succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Open took %v to fail", d)
	}
}

// TestStoredFieldNamesDoNotChange pins the on-disk format: data written by
// earlier versions must still load.
func TestStoredFieldNamesDoNotChange(t *testing.T) {
	s, _ := newStore(t)
	u := mustCreate(t, s, "ada@example.com")
	if _, err := s.UpdateUser(u.ID, func(u *user.User) error { u.Phone = "+14155550123"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.AddBankAccount(u.ID, user.BankAccount{ID: "acct-1", Holder: "Ada", Bank: "DB", SealedNumber: []byte{1}, Last4: "3000", Currency: "EUR", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddDevice(u.ID, user.Device{Token: "tok-1", Platform: "ios", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPreferences(u.ID, user.Preferences{Email: true}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		bucket, key string
		want        []string
	}{
		{"users", u.ID, []string{"created_at", "email", "id", "name", "password_hash", "phone", "updated_at"}},
		{"bank_accounts", u.ID + "\x00acct-1", []string{"bank", "created_at", "currency", "holder", "id", "last4", "sealed_number"}},
		{"devices", u.ID + "\x00tok-1", []string{"created_at", "platform", "token"}},
		{"notification_preferences", u.ID, []string{"email", "push"}},
	}
	for _, tt := range tests {
		t.Run("a record in "+tt.bucket+" has the fields it always had", func(t *testing.T) {
			var fields map[string]json.RawMessage
			err := s.Bolt().View(func(tx *bolt.Tx) error {
				return json.Unmarshal(tx.Bucket([]byte(tt.bucket)).Get([]byte(tt.key)), &fields)
			})
			if err != nil {
				t.Fatal(err)
			}
			got := slices.Sorted(maps.Keys(fields))
			if !slices.Equal(got, tt.want) {
				t.Errorf("fields = %v, want %v", got, tt.want)
			}
		})
	}
}
