// Package boltdb opens a service's bbolt file the one way every marketmesh
// service does: parent directory created, a lock timeout instead of a hang
// when another process holds the file, and the whole schema created in one
// transaction before first use.
package boltdb

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BatchDelay is how long a batched write waits for others to share its commit.
const BatchDelay = 2 * time.Millisecond

// LockTimeout is how long Open waits for another process to release the file.
const LockTimeout = 2 * time.Second

// Open opens (creating if needed) the database at path and runs schema (the
// service's bucket declarations) in one write transaction.
func Open(path string, schema func(*bolt.Tx) error) (*bolt.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("bbolt %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: LockTimeout})
	if err != nil {
		return nil, fmt.Errorf("bbolt open %s: %w", path, err)
	}
	// db.Batch gathers concurrent writes into one commit (group commit: one
	// fsync for many). bbolt waits up to 10 ms for company by default, which
	// an idle service pays on every write; 2 ms keeps that small.
	db.MaxBatchDelay = BatchDelay
	if err := db.Update(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("bbolt schema %s: %w", path, err)
	}
	return db, nil
}

// CheckBucket is a readiness check: the file is open, readable, and has bucket.
func CheckBucket(db *bolt.DB, bucket []byte) error {
	return db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucket) == nil {
			return fmt.Errorf("bucket %s missing", bucket)
		}
		return nil
	})
}

// Key joins parts with NUL separators: the layout of every composite key
// (index entries "<value>\x00<id>", owned items "<owner>\x00<item>"). Parts
// must not contain NUL, or ranges would overlap.
func Key(parts ...string) []byte { return join(parts) }

// KeyBytes is Key for binary parts (big-endian numbers sort as they compare).
func KeyBytes(parts ...[]byte) []byte { return join(parts) }

// Prefix is Key(parts...) plus a separator: the range of keys that extend it.
func Prefix(parts ...string) []byte { return append(Key(parts...), 0) }

func join[T string | []byte](parts []T) []byte {
	n := len(parts) - 1
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 0, max(n, 0))
	for i, p := range parts {
		if i > 0 {
			k = append(k, 0)
		}
		k = append(k, p...)
	}
	return k
}
