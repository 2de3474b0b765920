package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/boltdb"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/paging"
	"github.com/marketmesh/marketmesh/services/users/internal/user"
)

// ErrBadPageToken is returned for a page token this store did not issue, or
// issued for another list (another collection or another owner).
var ErrBadPageToken = errors.New("page_token is not valid")

// Store is the users database.
type Store struct{ db *bolt.DB }

// Open opens (creating if needed) the database at path.
func Open(path string) (*Store, error) {
	db, err := boltdb.Open(path, createBuckets)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Bolt exposes the handle for the events outbox relay.
func (s *Store) Bolt() *bolt.DB { return s.db }

// Check is the readiness check: the file is open and readable.
func (s *Store) Check(context.Context) error {
	return boltdb.CheckBucket(s.db, usersBucket)
}

// userRecord is a stored user.User: the same fields under their JSON names
// on disk, so each converts to the other, and the compiler refuses the
// conversion if they drift apart.
type userRecord struct {
	ID           string    `json:"id"`
	Email        string    `json:"email"`
	Name         string    `json:"name"`
	Phone        string    `json:"phone,omitempty"`
	PasswordHash string    `json:"password_hash"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// CreateUser stores u unless its email is taken, and appends registered
// (user.registered, built by the caller with its ID and time) to the outbox
// in the same transaction.
func (s *Store) CreateUser(u user.User, registered events.Event) error {
	raw, err := json.Marshal(userRecord(u))
	if err != nil {
		return err
	}
	// Batch shares one fsync among concurrent registrations; its function may
	// run twice, which is harmless: it checks before it writes.
	return s.db.Batch(func(tx *bolt.Tx) error {
		idx := tx.Bucket(emailIndex)
		if id := idx.Get([]byte(u.Email)); id != nil {
			if string(id) == u.ID {
				return nil // a retried batch already wrote it
			}
			return user.ErrEmailTaken
		}
		if err := idx.Put([]byte(u.Email), []byte(u.ID)); err != nil {
			return err
		}
		if err := tx.Bucket(usersBucket).Put([]byte(u.ID), raw); err != nil {
			return err
		}
		_, err := events.AppendEvent(tx, registered)
		return err
	})
}

// UserByID returns the user with id.
func (s *Store) UserByID(id string) (user.User, error) {
	var rec userRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(usersBucket), []byte(id), &rec)
	})
	return user.User(rec), err
}

// UserByEmail returns the user with a normalized email.
func (s *Store) UserByEmail(email string) (user.User, error) {
	var rec userRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		id := tx.Bucket(emailIndex).Get([]byte(email))
		if id == nil {
			return user.ErrNotFound
		}
		return getJSON(tx.Bucket(usersBucket), id, &rec)
	})
	return user.User(rec), err
}

// UpdateUser loads the user, lets fn change it and saves it, in one
// transaction. fn must not change the email: its index is not rewritten.
func (s *Store) UpdateUser(id string, fn func(*user.User) error) (user.User, error) {
	var u user.User
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(usersBucket)
		var rec userRecord
		if err := getJSON(b, []byte(id), &rec); err != nil {
			return err
		}
		u = user.User(rec)
		if err := fn(&u); err != nil {
			return err
		}
		return putJSON(b, []byte(id), userRecord(u))
	})
	return u, err
}

func getJSON(b *bolt.Bucket, key []byte, v any) error {
	raw := b.Get(key)
	if raw == nil {
		return user.ErrNotFound
	}
	// json.Unmarshal copies out of the mmap'd value before the tx ends.
	return json.Unmarshal(raw, v)
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

// listOwned returns up to size items of owner in bucket after the page token,
// and the token of the next page ("" on the last page).
func listOwned[T any](db *bolt.DB, bucket []byte, owner string, size int, token string, decode func(item, v []byte) (T, error)) ([]T, string, error) {
	prefix := boltdb.Prefix(owner)
	start := prefix
	if token != "" {
		after, err := paging.DecodeToken(token, bucket, []byte(owner))
		if err != nil {
			return nil, "", ErrBadPageToken
		}
		start = append(append([]byte{}, prefix...), after...)
		start = append(start, 0) // strictly after the last item returned
	}
	items := make([]T, 0, size)
	var next string
	err := db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		var lastItem []byte
		for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(items) == size { // there is more: hand out a token
				next = paging.EncodeToken(lastItem, bucket, []byte(owner))
				return nil
			}
			it, err := decode(k[len(prefix):], v)
			if err != nil {
				return err
			}
			items = append(items, it)
			lastItem = k[len(prefix):]
		}
		return nil
	})
	return items, next, err
}
