package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/boltdb"
	"github.com/marketmesh/marketmesh/services/users/internal/session"
	"github.com/marketmesh/marketmesh/services/users/internal/user"
)

// PurgeBatch bounds the expired sessions one write drops: every write that
// starts a session or uses a token purges up to this many, so expired ones
// are dropped at least as fast as new ones come, with no background sweeper
// and no write that takes long.
const PurgeBatch = 64

// KeepExpired is how long a session is kept after it expired, so that a
// client presenting its token is told that it expired rather than that it
// is unknown.
const KeepExpired = 7 * 24 * time.Hour

// sessionRecord is a stored session.Session, converted like userRecord.
type sessionRecord struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	Reason    string    `json:"reason,omitempty"`
}

// refreshRecord is a stored session.Token; its hash is the key.
type refreshRecord struct {
	Hash      session.Hash `json:"-"`
	SessionID string       `json:"session_id"`
	IssuedAt  time.Time    `json:"issued_at"`
	ExpiresAt time.Time    `json:"expires_at"`
	SpentAt   time.Time    `json:"spent_at,omitzero"`
}

// StartSession stores a new session and its first token, and purges expired
// sessions (at most PurgeBatch), in one transaction.
func (s *Store) StartSession(sess session.Session, first session.Token, now time.Time) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := purge(tx, now); err != nil {
			return err
		}
		if err := putSession(tx, sess, time.Time{}); err != nil {
			return err
		}
		return putToken(tx, first)
	})
}

// UseToken is how a refresh token is used: in one transaction it loads the
// token with hash h, its session and the session's account (nil when the
// account is gone), lets decide judge them, and saves the session, the
// token and the token decide returns (nil: none). It also purges expired
// sessions (at most PurgeBatch).
//
// decide's error is a verdict, not a failure: what decide changed is saved
// even when it returns one (a spent token presented again revokes its
// session, and the refresh still fails), and UseToken returns it. A hash no
// stored token has is session.ErrUnknown, without calling decide.
func (s *Store) UseToken(h session.Hash, now time.Time, decide func(acct *user.User, sess *session.Session, tok *session.Token) (*session.Token, error)) error {
	var verdict error
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := purge(tx, now); err != nil {
			return err
		}
		var rec refreshRecord
		err := getJSON(tx.Bucket(refreshBucket), h[:], &rec)
		var srec sessionRecord
		if err == nil {
			// A session and its tokens are written and purged together.
			err = getJSON(tx.Bucket(sessionsBucket), []byte(rec.SessionID), &srec)
		}
		if errors.Is(err, user.ErrNotFound) {
			verdict = session.ErrUnknown
			return nil
		}
		if err != nil {
			return err
		}
		rec.Hash = h
		var acct *user.User
		var urec userRecord
		switch err := getJSON(tx.Bucket(usersBucket), []byte(srec.UserID), &urec); {
		case err == nil:
			u := user.User(urec)
			acct = &u
		case !errors.Is(err, user.ErrNotFound):
			return err
		}
		sess, tok := session.Session(srec), session.Token(rec)
		next, v := decide(acct, &sess, &tok)
		verdict = v
		if sess != session.Session(srec) {
			if err := putSession(tx, sess, srec.ExpiresAt); err != nil {
				return err
			}
		}
		if tok != session.Token(rec) {
			if err := putToken(tx, tok); err != nil {
				return err
			}
		}
		if next != nil {
			return putToken(tx, *next)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return verdict
}

// putSession writes sess and moves its entry in the expiry queue from
// oldExpiry (zero: none yet) to its expiry.
func putSession(tx *bolt.Tx, sess session.Session, oldExpiry time.Time) error {
	q := tx.Bucket(sessionsExpiry)
	if !oldExpiry.IsZero() && !oldExpiry.Equal(sess.ExpiresAt) {
		if err := q.Delete(expiryKey(oldExpiry, sess.ID)); err != nil {
			return err
		}
	}
	if err := q.Put(expiryKey(sess.ExpiresAt, sess.ID), nil); err != nil {
		return err
	}
	return putJSON(tx.Bucket(sessionsBucket), []byte(sess.ID), sessionRecord(sess))
}

// putToken writes tok and its entry in its session's token index.
func putToken(tx *bolt.Tx, tok session.Token) error {
	raw, err := json.Marshal(refreshRecord(tok))
	if err != nil {
		return err
	}
	if err := tx.Bucket(refreshBucket).Put(tok.Hash[:], raw); err != nil {
		return err
	}
	return tx.Bucket(refreshBySession).Put(boltdb.KeyBytes([]byte(tok.SessionID), tok.Hash[:]), nil)
}

// expiryKey orders sessions by expiry: fixed-width big-endian nanoseconds,
// then the ID.
func expiryKey(at time.Time, id string) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(id)), uint64(max(at.UnixNano(), 0)))
	return append(k, id...)
}

// purge drops up to PurgeBatch sessions that expired more than KeepExpired
// before now, with their tokens.
func purge(tx *bolt.Tx, now time.Time) error {
	q := tx.Bucket(sessionsExpiry)
	cutoff := expiryKey(now.Add(-KeepExpired), "")
	// Collect first: deleting under a cursor can skip entries.
	var due [][]byte
	c := q.Cursor()
	for k, _ := c.First(); k != nil && len(due) < PurgeBatch && bytes.Compare(k[:8], cutoff) < 0; k, _ = c.Next() {
		due = append(due, bytes.Clone(k))
	}
	sessions, byHash, bySession := tx.Bucket(sessionsBucket), tx.Bucket(refreshBucket), tx.Bucket(refreshBySession)
	for _, k := range due {
		id := string(k[8:])
		prefix := boltdb.Prefix(id)
		var keys [][]byte
		tc := bySession.Cursor()
		for tk, _ := tc.Seek(prefix); tk != nil && bytes.HasPrefix(tk, prefix); tk, _ = tc.Next() {
			keys = append(keys, bytes.Clone(tk))
		}
		for _, tk := range keys {
			if err := byHash.Delete(tk[len(prefix):]); err != nil {
				return err
			}
			if err := bySession.Delete(tk); err != nil {
				return err
			}
		}
		if err := sessions.Delete([]byte(id)); err != nil {
			return err
		}
		if err := q.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
