// Package store keeps the notifications service's deliveries in bbolt, with
// the indexes its readers need: due (the send queue, by next attempt), per
// user (newest first), per order, and dead letters (newest first).
package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/boltdb"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/paging"
	"github.com/marketmesh/marketmesh/services/notifications/internal/delivery"
)

var (
	deliveriesBucket = []byte("deliveries")       // id → Delivery JSON
	dueBucket        = []byte("deliveries.due")   // next_at (8 B) id → nil, queued only
	byUserBucket     = []byte("deliveries.user")  // user \0 created_at (8 B) id → nil
	byOrderBucket    = []byte("deliveries.order") // order \0 id → nil
	deadBucket       = []byte("deliveries.dead")  // failed_at (8 B) id → nil
	allBuckets       = [][]byte{deliveriesBucket, dueBucket, byUserBucket, byOrderBucket, deadBucket}
)

// ErrNotFound is returned for an unknown delivery ID.
var ErrNotFound = errors.New("notification not found")

// Store is the notifications database.
type Store struct{ db *bolt.DB }

// Open opens (creating) the database at path.
func Open(path string) (*Store, error) {
	db, err := boltdb.Open(path, func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return events.CreateBuckets(tx)
	})
	if err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Bolt is the database (for the event consumer and the single-instance lock).
func (s *Store) Bolt() *bolt.DB { return s.db }

// Check is the readiness check.
func (s *Store) Check(context.Context) error { return boltdb.CheckBucket(s.db, deliveriesBucket) }

func stamp(t time.Time) []byte { return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())) }

func dueKey(d delivery.Delivery) []byte { return append(stamp(d.NextAt), d.ID...) }
func userKey(d delivery.Delivery) []byte {
	return append(append(boltdb.Prefix(d.UserID), stamp(d.CreatedAt)...), d.ID...)
}
func deadKey(d delivery.Delivery) []byte {
	var at time.Time
	if d.FailedAt != nil {
		at = *d.FailedAt
	}
	return append(stamp(at), d.ID...)
}

// index writes (put) or removes the index entries of d.
func index(tx *bolt.Tx, d delivery.Delivery, put bool) error {
	type entry struct {
		bucket []byte
		key    []byte
		on     bool
	}
	entries := []entry{
		{dueBucket, dueKey(d), d.Status == "queued"},
		{deadBucket, deadKey(d), d.Dead},
	}
	if d.UserID != "" {
		entries = append(entries, entry{byUserBucket, userKey(d), true})
	}
	if d.OrderID != "" {
		entries = append(entries, entry{byOrderBucket, boltdb.Key(d.OrderID, d.ID), true})
	}
	for _, e := range entries {
		if !e.on {
			continue
		}
		var err error
		if put {
			err = tx.Bucket(e.bucket).Put(e.key, nil)
		} else {
			err = tx.Bucket(e.bucket).Delete(e.key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func get(tx *bolt.Tx, id string) (delivery.Delivery, error) {
	var d delivery.Delivery
	raw := tx.Bucket(deliveriesBucket).Get([]byte(id))
	if raw == nil {
		return d, ErrNotFound
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return d, fmt.Errorf("delivery %s: %w", id, err)
	}
	return d, nil
}

func put(tx *bolt.Tx, d delivery.Delivery) error {
	raw, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if err := tx.Bucket(deliveriesBucket).Put([]byte(d.ID), raw); err != nil {
		return err
	}
	return index(tx, d, true)
}

// Enqueue records planned deliveries inside tx (the event's inbox
// transaction); one already recorded is left as it is. It reports whether
// any is due to be sent.
func Enqueue(tx *bolt.Tx, ds []delivery.Delivery) (queued bool, err error) {
	for _, d := range ds {
		if tx.Bucket(deliveriesBucket).Get([]byte(d.ID)) != nil {
			continue
		}
		if err := put(tx, d); err != nil {
			return false, err
		}
		queued = queued || d.Status == "queued"
	}
	return queued, nil
}

// Get reads one delivery.
func (s *Store) Get(id string) (d delivery.Delivery, err error) {
	err = s.db.View(func(tx *bolt.Tx) error { d, err = get(tx, id); return err })
	return d, err
}

// Update applies fn to the delivery in one transaction and keeps its
// indexes in step; fn's error aborts with nothing written. Concurrent
// updates share commits (bbolt's Batch: one fsync for many), so fn may run
// more than once and must only decide from the delivery it is given.
func (s *Store) Update(id string, fn func(*delivery.Delivery) error) (d delivery.Delivery, err error) {
	err = s.db.Batch(func(tx *bolt.Tx) error {
		if d, err = get(tx, id); err != nil {
			return err
		}
		if err := index(tx, d, false); err != nil {
			return err
		}
		if err := fn(&d); err != nil {
			return err
		}
		return put(tx, d)
	})
	return d, err
}

// Due returns up to limit queued deliveries whose attempt is due at now,
// oldest first, skipping skip (those already being worked), and when the
// next one after them is due (zero when none is queued).
func (s *Store) Due(now time.Time, limit int, skip func(id string) bool) (ds []delivery.Delivery, next time.Time, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(dueBucket).Cursor()
		end := stamp(now)
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if bytes.Compare(k[:8], end) > 0 {
				next = time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])))
				return nil
			}
			id := string(k[8:])
			if skip(id) {
				continue
			}
			if len(ds) == limit {
				next = now
				return nil
			}
			d, err := get(tx, id)
			if err != nil {
				return err
			}
			ds = append(ds, d)
		}
		return nil
	})
	return ds, next, err
}

// ByUser pages a user's deliveries, newest first.
func (s *Store) ByUser(userID string, size int, token string) ([]delivery.Delivery, string, error) {
	return s.page(byUserBucket, boltdb.Prefix(userID), []byte(userID), size, token)
}

// Dead pages the dead letters, newest first.
func (s *Store) Dead(size int, token string) ([]delivery.Delivery, string, error) {
	return s.page(deadBucket, nil, nil, size, token)
}

// page walks an index whose keys end in a delivery ID after an 8-byte
// stamp, backwards from the newest, size at a time.
func (s *Store) page(bucket, prefix, owner []byte, size int, token string) ([]delivery.Delivery, string, error) {
	var after []byte
	if token != "" {
		pos, err := paging.DecodeToken(token, bucket, owner)
		if err != nil {
			return nil, "", err
		}
		after = append(append([]byte(nil), prefix...), pos...)
	}
	out := make([]delivery.Delivery, 0, size)
	var next string
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		var k []byte
		if after != nil {
			k, _ = c.Seek(after)
			if k != nil && bytes.Equal(k, after) {
				k, _ = c.Prev()
			} else if k == nil {
				k, _ = c.Last()
			} else {
				k, _ = c.Prev()
			}
		} else {
			// the last key with the prefix: seek just past it, step back
			k, _ = c.Seek(append(append([]byte(nil), prefix...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
			if k == nil {
				k, _ = c.Last()
			} else {
				k, _ = c.Prev()
			}
		}
		var last []byte
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
			if len(out) == size {
				next = paging.EncodeToken(last, bucket, owner)
				return nil
			}
			rest := k[len(prefix):]
			if len(rest) <= 8 {
				continue
			}
			d, err := get(tx, string(rest[8:]))
			if err != nil {
				return err
			}
			out = append(out, d)
			last = append([]byte(nil), rest...)
		}
		return nil
	})
	return out, next, err
}

// ByOrder lists a user's deliveries about an order, newest first.
func (s *Store) ByOrder(userID, orderID string) ([]delivery.Delivery, error) {
	var out []delivery.Delivery
	err := s.db.View(func(tx *bolt.Tx) error {
		prefix := boltdb.Prefix(orderID)
		c := tx.Bucket(byOrderBucket).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			d, err := get(tx, string(k[len(prefix):]))
			if err != nil {
				return err
			}
			if d.UserID == userID {
				out = append(out, d)
			}
		}
		return nil
	})
	slices.SortFunc(out, func(a, b delivery.Delivery) int { // newest first, then by ID
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, err
}

// Counts returns how many deliveries are in each status (for metrics and the bench).
func (s *Store) Counts() (map[string]int, error) {
	counts := map[string]int{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(deliveriesBucket).ForEach(func(_, v []byte) error {
			var d struct {
				Status string `json:"status"`
			}
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			counts[d.Status]++
			return nil
		})
	})
	return counts, err
}

// Queued is how many deliveries wait for an attempt.
func (s *Store) Queued() (n int, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(dueBucket).Stats().KeyN
		return nil
	})
	return n, err
}
