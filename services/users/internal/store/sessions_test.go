package store_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/services/users/internal/session"
	"github.com/marketmesh/marketmesh/services/users/internal/store"
	"github.com/marketmesh/marketmesh/services/users/internal/user"
)

const refreshTTL = 30 * 24 * time.Hour

// startSession starts a session for u at now and returns it, its first
// token's text and the token.
func startSession(t *testing.T, s *store.Store, u user.User, now time.Time) (session.Session, string, session.Token) {
	t.Helper()
	text, h, err := session.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	sess, first, err := session.Start(ulid.Make().String(), u.ID, h, now, refreshTTL)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StartSession(sess, first, now); err != nil {
		t.Fatalf("StartSession = %v", err)
	}
	return sess, text, first
}

// rotate uses the token with hash h at now as a refresh does, returning the
// next token (zero when refused) and the verdict.
func rotate(t *testing.T, s *store.Store, h session.Hash, now time.Time) (session.Token, error) {
	t.Helper()
	_, nh, err := session.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	var next session.Token
	err = s.UseToken(h, now, func(acct *user.User, sess *session.Session, tok *session.Token) (*session.Token, error) {
		if acct == nil {
			return nil, sess.AccountGone(now)
		}
		n, err := sess.Rotate(tok, nh, now, refreshTTL)
		if err != nil {
			return nil, err
		}
		next = n
		return &next, nil
	})
	return next, err
}

// peek reads the stored session and token of hash h without changing them.
func peek(t *testing.T, s *store.Store, h session.Hash) (session.Session, session.Token) {
	t.Helper()
	var sess session.Session
	var tok session.Token
	err := s.UseToken(h, t0, func(_ *user.User, ss *session.Session, tt *session.Token) (*session.Token, error) {
		sess, tok = *ss, *tt
		return nil, nil
	})
	if err != nil {
		t.Fatalf("peek: %v", err)
	}
	return sess, tok
}

// keys returns the keys of bucket.
func keys(t *testing.T, s *store.Store, bucket string) [][]byte {
	t.Helper()
	var out [][]byte
	err := s.Bolt().View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucket)).ForEach(func(k, _ []byte) error {
			out = append(out, bytes.Clone(k))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sessionBuckets are the buckets of refresh token sessions.
var sessionBuckets = []string{"sessions", "sessions.by_expiry", "refresh_tokens", "refresh_tokens.by_session"}

func counts(t *testing.T, s *store.Store) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, b := range sessionBuckets {
		out[b] = len(keys(t, s, b))
	}
	return out
}

func TestASessionRotatesItsTokens(t *testing.T) {
	s, _ := newStore(t)
	u := mustCreate(t, s, "ada@example.com")
	sess, text, first := startSession(t, s, u, t0)

	cur, at := first, t0
	for i := range 5 {
		at = at.Add(15 * time.Minute)
		next, err := rotate(t, s, cur.Hash, at)
		if err != nil {
			t.Fatalf("rotation %d: %v", i+1, err)
		}
		if next.Hash == cur.Hash || next.SessionID != sess.ID || !next.ExpiresAt.Equal(at.Add(refreshTTL)) {
			t.Fatalf("rotation %d: next %+v", i+1, next)
		}
		_, spent := peek(t, s, cur.Hash)
		if !spent.SpentAt.Equal(at) {
			t.Fatalf("rotation %d: the presented token was not stored spent: %+v", i+1, spent)
		}
		cur = next
	}
	got, tok := peek(t, s, cur.Hash)
	if got.ID != sess.ID || got.UserID != u.ID || !got.ExpiresAt.Equal(at.Add(refreshTTL)) || got.Revoked() || !tok.SpentAt.IsZero() {
		t.Fatalf("session %+v, current token %+v", got, tok)
	}
	// One session, six tokens (five spent), one expiry entry: a rotation
	// moves the session's entry in the purge queue rather than adding one.
	want := map[string]int{"sessions": 1, "sessions.by_expiry": 1, "refresh_tokens": 6, "refresh_tokens.by_session": 6}
	if c := counts(t, s); !maps.Equal(c, want) {
		t.Errorf("records %v, want %v", c, want)
	}

	t.Run("only the tokens' hashes are stored", func(t *testing.T) {
		raw, err := session.Parse(text)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Bolt().View(func(tx *bolt.Tx) error {
			return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
				return b.ForEach(func(k, v []byte) error {
					if bytes.Contains(k, []byte(text)) || bytes.Contains(v, []byte(text)) {
						t.Errorf("bucket %s holds the token's text", name)
					}
					return nil
				})
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(keys(t, s, "refresh_tokens"), func(k []byte) bool { return bytes.Equal(k, raw[:]) }) {
			t.Error("the first token's hash is not a key of refresh_tokens")
		}
	})
}

func TestReusingASpentTokenRevokesTheSession(t *testing.T) {
	s, _ := newStore(t)
	u := mustCreate(t, s, "ada@example.com")
	_, _, first := startSession(t, s, u, t0)
	second, err := rotate(t, s, first.Hash, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	third, err := rotate(t, s, second.Hash, t0.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}

	// The first token again: refused, and the refusal's decision is stored.
	if _, err := rotate(t, s, first.Hash, t0.Add(3*time.Minute)); !errors.Is(err, session.ErrReused) {
		t.Fatalf("reuse = %v, want ErrReused", err)
	}
	sess, _ := peek(t, s, third.Hash)
	if sess.Reason != session.RevokedReuse || !sess.RevokedAt.Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("after reuse the session is %+v, want revoked for reuse", sess)
	}
	// Every token of the session is dead now: the newest, and the one
	// before it, which is also a reuse.
	for name, h := range map[string]session.Hash{"the newest token": third.Hash, "a spent token": second.Hash} {
		if _, err := rotate(t, s, h, t0.Add(4*time.Minute)); !errors.Is(err, session.ErrRevoked) {
			t.Errorf("%s after the session was revoked: %v, want ErrRevoked", name, err)
		}
	}
	// A revoked session keeps its first reason and time.
	if again, _ := peek(t, s, third.Hash); again != sess {
		t.Errorf("session changed after revocation: %+v, was %+v", again, sess)
	}

	t.Run("another session of the same user is untouched", func(t *testing.T) {
		_, _, other := startSession(t, s, u, t0)
		if _, err := rotate(t, s, other.Hash, t0.Add(5*time.Minute)); err != nil {
			t.Fatalf("the other session: %v", err)
		}
	})
}

func TestAnUnknownTokenIsRefusedWithoutADecision(t *testing.T) {
	s, _ := newStore(t)
	called := false
	err := s.UseToken(session.Hash{1, 2, 3}, t0, func(*user.User, *session.Session, *session.Token) (*session.Token, error) {
		called = true
		return nil, nil
	})
	if !errors.Is(err, session.ErrUnknown) || called {
		t.Fatalf("UseToken = %v, decide called %v; want ErrUnknown without a call", err, called)
	}
}

func TestATokenWhoseAccountIsGoneRevokesItsSession(t *testing.T) {
	s, _ := newStore(t)
	u := mustCreate(t, s, "ada@example.com")
	_, _, first := startSession(t, s, u, t0)
	// The account disappears (the users service has no deletion yet: an
	// operator removed the record).
	err := s.Bolt().Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("users")).Delete([]byte(u.ID)) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rotate(t, s, first.Hash, t0.Add(time.Minute)); !errors.Is(err, session.ErrAccountGone) {
		t.Fatalf("refresh of a deleted account = %v, want ErrAccountGone", err)
	}
	if sess, _ := peek(t, s, first.Hash); sess.Reason != session.RevokedAccountGone {
		t.Fatalf("session %+v, want revoked: account gone", sess)
	}
}

func TestAnExpiredTokenIsRefusedAndPurgedLater(t *testing.T) {
	s, _ := newStore(t)
	u := mustCreate(t, s, "ada@example.com")
	_, _, first := startSession(t, s, u, t0)
	second, err := rotate(t, s, first.Hash, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	expiry := second.ExpiresAt

	if _, err := rotate(t, s, second.Hash, expiry); !errors.Is(err, session.ErrExpired) {
		t.Fatalf("at its expiry: %v, want ErrExpired", err)
	}
	// Kept for KeepExpired so the client hears why; then a write purges it.
	if _, err := rotate(t, s, second.Hash, expiry.Add(store.KeepExpired-time.Second)); !errors.Is(err, session.ErrExpired) {
		t.Fatalf("just before the purge: %v, want ErrExpired", err)
	}
	if _, err := rotate(t, s, second.Hash, expiry.Add(store.KeepExpired+time.Second)); !errors.Is(err, session.ErrUnknown) {
		t.Fatalf("after the purge: %v, want ErrUnknown", err)
	}
	for b, n := range counts(t, s) {
		if n != 0 {
			t.Errorf("%s still holds %d records of the purged session", b, n)
		}
	}
}

func TestEachWritePurgesABoundedBatchOfExpiredSessions(t *testing.T) {
	s, _ := newStore(t)
	u := mustCreate(t, s, "ada@example.com")
	const expired = store.PurgeBatch + 10
	for i := range expired {
		startSession(t, s, u, t0.Add(time.Duration(i)*time.Second))
	}
	due := t0.Add(refreshTTL + store.KeepExpired + time.Hour) // every one of them expired more than KeepExpired ago
	live, _, _ := startSession(t, s, u, due)
	if c := counts(t, s); c["sessions"] != expired+1-store.PurgeBatch || c["refresh_tokens"] != c["sessions"] || c["sessions.by_expiry"] != c["sessions"] {
		t.Fatalf("after one write: %v; want %d sessions, one token and one queue entry each", c, expired+1-store.PurgeBatch)
	}
	startSession(t, s, u, due.Add(time.Minute))
	c := counts(t, s)
	if c["sessions"] != 2 || c["refresh_tokens"] != 2 || c["refresh_tokens.by_session"] != 2 || c["sessions.by_expiry"] != 2 {
		t.Fatalf("after two writes: %v; want only the two live sessions", c)
	}
	if !slices.ContainsFunc(keys(t, s, "sessions"), func(k []byte) bool { return string(k) == live.ID }) {
		t.Error("a live session was purged")
	}
}

func TestConcurrentRefreshesWithOneTokenHaveOneWinner(t *testing.T) {
	s, _ := newStore(t)
	u := mustCreate(t, s, "ada@example.com")
	_, _, first := startSession(t, s, u, t0)
	const n = 20
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = rotate(t, s, first.Hash, t0.Add(time.Minute))
		})
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, session.ErrReused), errors.Is(err, session.ErrRevoked):
		default:
			t.Errorf("refresh %d: %v", i, err)
		}
	}
	// Rotation is strict: the first refresh wins, the next one is a reuse
	// that revokes the session, and the rest find it revoked.
	if wins != 1 {
		t.Fatalf("%d refreshes won, want exactly 1", wins)
	}
	if sess, _ := peek(t, s, first.Hash); sess.Reason != session.RevokedReuse {
		t.Fatalf("session %+v, want revoked for reuse", sess)
	}
}

func TestStoredSessionFieldNamesDoNotChange(t *testing.T) {
	s, _ := newStore(t)
	u := mustCreate(t, s, "ada@example.com")
	sess, _, first := startSession(t, s, u, t0)
	if _, err := rotate(t, s, first.Hash, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	err := s.UseToken(first.Hash, t0.Add(2*time.Minute), func(_ *user.User, ss *session.Session, tok *session.Token) (*session.Token, error) {
		return nil, ss.End(tok, t0.Add(2*time.Minute))
	})
	if !errors.Is(err, session.ErrReused) {
		t.Fatalf("logout with a spent token = %v, want ErrReused", err)
	}
	tests := []struct {
		bucket string
		key    []byte
		want   []string
	}{
		{"sessions", []byte(sess.ID), []string{"created_at", "expires_at", "id", "reason", "revoked_at", "user_id"}},
		{"refresh_tokens", first.Hash[:], []string{"expires_at", "issued_at", "session_id", "spent_at"}},
	}
	for _, tt := range tests {
		t.Run("a record in "+tt.bucket+" has the fields it always had", func(t *testing.T) {
			var fields map[string]json.RawMessage
			err := s.Bolt().View(func(tx *bolt.Tx) error {
				return json.Unmarshal(tx.Bucket([]byte(tt.bucket)).Get(tt.key), &fields)
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Sorted(maps.Keys(fields)); !slices.Equal(got, tt.want) {
				t.Errorf("fields = %v, want %v", got, tt.want)
			}
		})
	}
}
