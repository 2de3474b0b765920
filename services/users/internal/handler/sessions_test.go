package handler_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
	"github.com/marketmesh/marketmesh/services/users/internal/handler"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// sessionFixture is a handler over the fixture's store with a clock the
// test moves and refresh tokens that live a day.
type sessionFixture struct {
	*fixture
	h     *handler.Users
	clock *fakeClock
}

const sessionTTL = 24 * time.Hour

func newSessionFixture(t *testing.T) *sessionFixture {
	t.Helper()
	f := newFixture(t)
	clock := &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	h := handler.New(f.store, f.sealer, f.relay, handler.Clock(clock.Now), handler.RefreshTTL(sessionTTL))
	return &sessionFixture{fixture: f, h: h, clock: clock}
}

// fromAPI is the context of a call the api made.
func fromAPI() context.Context {
	return svcauth.WithCaller(context.Background(), "marketmesh.api")
}

func (f *sessionFixture) login(t *testing.T, email, password string) usersrpc.Session {
	t.Helper()
	var s usersrpc.Session
	if err := f.h.Login(fromAPI(), &usersrpc.AuthenticateRequest{Email: email, Password: password}, &s); err != nil {
		t.Fatalf("Login(%s) = %v", email, err)
	}
	return s
}

func (f *sessionFixture) refresh(token string) (usersrpc.Session, error) {
	var s usersrpc.Session
	err := f.h.Refresh(fromAPI(), &usersrpc.RefreshRequest{RefreshToken: token}, &s)
	return s, err
}

func (f *sessionFixture) logout(token string) error {
	return f.h.Logout(fromAPI(), &usersrpc.RefreshRequest{RefreshToken: token}, &usersrpc.Empty{})
}

// wantRefused checks that err is a 401 whose detail says what.
func wantRefused(t *testing.T, err error, what string) {
	t.Helper()
	me := microErr(t, err, 401)
	if !strings.Contains(me.Detail, what) || !strings.Contains(me.Detail, "log in again") {
		t.Errorf("detail %q, want it to say %q and to log in again", me.Detail, what)
	}
}

func TestSessionEndpointsAreForTheAPIOnly(t *testing.T) {
	f := newSessionFixture(t)
	u := f.register(t, "ada@example.com", "correct horse", "Ada")
	s := f.login(t, "ada@example.com", "correct horse")
	for name, ctx := range map[string]context.Context{
		"the user themself":   as(u.ID),
		"another service":     svcauth.WithCaller(context.Background(), "marketmesh.orders"),
		"no proven caller":    context.Background(),
		"notifications":       svcauth.WithCaller(context.Background(), "marketmesh.notifications"),
		"a caller naming api": as("marketmesh.api"),
	} {
		t.Run(name, func(t *testing.T) {
			microErr(t, f.h.Login(ctx, &usersrpc.AuthenticateRequest{Email: "ada@example.com", Password: "correct horse"}, &usersrpc.Session{}), 403)
			microErr(t, f.h.Refresh(ctx, &usersrpc.RefreshRequest{RefreshToken: s.RefreshToken}, &usersrpc.Session{}), 403)
			microErr(t, f.h.Logout(ctx, &usersrpc.RefreshRequest{RefreshToken: s.RefreshToken}, &usersrpc.Empty{}), 403)
		})
	}
	// None of the refused calls used the token.
	if _, err := f.refresh(s.RefreshToken); err != nil {
		t.Fatalf("the token after refused calls: %v", err)
	}
}

func TestLoginStartsASession(t *testing.T) {
	f := newSessionFixture(t)
	u := f.register(t, "ada@example.com", "correct horse", "Ada")
	s := f.login(t, " ADA@example.com", "correct horse")
	if s.User.ID != u.ID || s.User.Email != "ada@example.com" {
		t.Errorf("user %+v, want %s", s.User, u.ID)
	}
	if len(s.RefreshToken) != 43 || !s.RefreshExpiresAt.Equal(f.clock.Now().Add(sessionTTL)) {
		t.Errorf("refresh token %q expiring %v; want 43 characters expiring in a day", s.RefreshToken, s.RefreshExpiresAt)
	}
	if other := f.login(t, "ada@example.com", "correct horse"); other.RefreshToken == s.RefreshToken {
		t.Error("two logins got the same refresh token")
	}
	// The token is nowhere in the file: only its hash is.
	err := f.store.Bolt().View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				if strings.Contains(string(k), s.RefreshToken) || strings.Contains(string(v), s.RefreshToken) {
					t.Errorf("bucket %s holds the refresh token", name)
				}
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("wrong credentials start nothing and say what Authenticate says", func(t *testing.T) {
		var rsp usersrpc.Session
		err := f.h.Login(fromAPI(), &usersrpc.AuthenticateRequest{Email: "ada@example.com", Password: "wrong password"}, &rsp)
		me := microErr(t, err, 401)
		var authErr = f.h.Authenticate(context.Background(), &usersrpc.AuthenticateRequest{Email: "nobody@example.com", Password: "wrong password"}, &usersrpc.User{})
		if me.Detail != microErr(t, authErr, 401).Detail || rsp.RefreshToken != "" {
			t.Errorf("detail %q, token %q", me.Detail, rsp.RefreshToken)
		}
	})
}

func TestRefreshRotatesAndReuseRevokesTheSession(t *testing.T) {
	f := newSessionFixture(t)
	f.register(t, "ada@example.com", "correct horse", "Ada")
	first := f.login(t, "ada@example.com", "correct horse")

	f.clock.Advance(15 * time.Minute)
	second, err := f.refresh(first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if second.RefreshToken == first.RefreshToken || second.User.ID != first.User.ID ||
		!second.RefreshExpiresAt.Equal(f.clock.Now().Add(sessionTTL)) {
		t.Fatalf("after refresh: %+v", second)
	}
	f.clock.Advance(15 * time.Minute)
	third, err := f.refresh(second.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}

	// The first token again: a reuse. The session is revoked, so the
	// newest token (whoever holds it) is refused too.
	wantRefused(t, firstErr(f.refresh(first.RefreshToken)), "already used")
	wantRefused(t, firstErr(f.refresh(third.RefreshToken)), "revoked")

	t.Run("another login of the same user is untouched", func(t *testing.T) {
		other := f.login(t, "ada@example.com", "correct horse")
		if _, err := f.refresh(other.RefreshToken); err != nil {
			t.Fatal(err)
		}
	})
}

func firstErr(_ usersrpc.Session, err error) error { return err }

func TestRefreshRefusals(t *testing.T) {
	f := newSessionFixture(t)
	u := f.register(t, "ada@example.com", "correct horse", "Ada")
	f.register(t, "bob@example.com", "correct horse", "Bob")
	tests := []struct {
		name  string
		token func(t *testing.T) string
		what  string
	}{
		{"an empty token", func(*testing.T) string { return "" }, "not valid"},
		{"garbage", func(*testing.T) string { return "not-a-token" }, "not valid"},
		{"a well-formed token never issued", func(*testing.T) string { return strings.Repeat("A", 43) }, "not valid"},
		{"an access token (a JWT)", func(*testing.T) string { return "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1In0.c2ln" }, "not valid"},
		{"an expired token", func(t *testing.T) string {
			s := f.login(t, "bob@example.com", "correct horse")
			f.clock.Advance(sessionTTL)
			return s.RefreshToken
		}, "expired"},
		{"the token of a deleted account", func(t *testing.T) string {
			s := f.login(t, "ada@example.com", "correct horse")
			// The users service has no deletion yet: an operator removed the record.
			if err := f.store.Bolt().Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("users")).Delete([]byte(u.ID)) }); err != nil {
				t.Fatal(err)
			}
			return s.RefreshToken
		}, "no longer exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is 401", func(t *testing.T) {
			var rsp usersrpc.Session
			err := f.h.Refresh(fromAPI(), &usersrpc.RefreshRequest{RefreshToken: tt.token(t)}, &rsp)
			wantRefused(t, err, tt.what)
			if rsp.RefreshToken != "" {
				t.Errorf("a refused refresh answered a token")
			}
		})
	}
}

func TestATokenWorksUntilItExpires(t *testing.T) {
	f := newSessionFixture(t)
	f.register(t, "ada@example.com", "correct horse", "Ada")
	s := f.login(t, "ada@example.com", "correct horse")
	// Each refresh restarts the clock: a session used daily never expires.
	for range 3 {
		f.clock.Advance(sessionTTL - time.Second)
		next, err := f.refresh(s.RefreshToken)
		if err != nil {
			t.Fatalf("a second before expiry: %v", err)
		}
		s = next
	}
	f.clock.Advance(sessionTTL)
	wantRefused(t, firstErr(f.refresh(s.RefreshToken)), "expired")
}

func TestLogoutRevokesTheSession(t *testing.T) {
	f := newSessionFixture(t)
	f.register(t, "ada@example.com", "correct horse", "Ada")
	first := f.login(t, "ada@example.com", "correct horse")
	second, err := f.refresh(first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	other := f.login(t, "ada@example.com", "correct horse") // another device

	if err := f.logout(second.RefreshToken); err != nil {
		t.Fatalf("Logout = %v", err)
	}
	wantRefused(t, firstErr(f.refresh(second.RefreshToken)), "revoked")
	// A retried logout (its answer was lost) succeeds again.
	if err := f.logout(second.RefreshToken); err != nil {
		t.Fatalf("a second Logout = %v", err)
	}
	// Only this session ended: the other device's still refreshes.
	if _, err := f.refresh(other.RefreshToken); err != nil {
		t.Fatalf("the other session after logout: %v", err)
	}

	t.Run("logout with a spent token is reuse: refused, and the session revoked", func(t *testing.T) {
		s := f.login(t, "ada@example.com", "correct horse")
		next, err := f.refresh(s.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, f.logout(s.RefreshToken), "already used")
		wantRefused(t, firstErr(f.refresh(next.RefreshToken)), "revoked")
	})
	t.Run("logout with a bad token is 401", func(t *testing.T) {
		wantRefused(t, f.logout("not-a-token"), "not valid")
		wantRefused(t, f.logout(strings.Repeat("A", 43)), "not valid")
	})
	t.Run("logout with an expired token is 401", func(t *testing.T) {
		s := f.login(t, "ada@example.com", "correct horse")
		f.clock.Advance(sessionTTL)
		wantRefused(t, f.logout(s.RefreshToken), "expired")
	})
}
