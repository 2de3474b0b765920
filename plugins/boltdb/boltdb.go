// Package boltdb opens a service's bbolt file the one way every marketmesh
// service does: parent directory created, a lock timeout instead of a hang
// when another process holds the file, and the whole schema created in one
// transaction before first use.
package boltdb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
)

// metaBucket holds facts about the file itself; datasetKey names the data set.
var (
	metaBucket = []byte("marketmesh.meta")
	datasetKey = []byte("dataset")
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
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("bbolt open %s: another process holds the file (waited %s); "+
			"one process at a time serves a data file", path, LockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("bbolt open %s: %w", path, err)
	}
	// db.Batch gathers concurrent writes into one commit (group commit: one
	// fsync for many). bbolt waits up to 10 ms for company by default, which
	// an idle service pays on every write; 2 ms keeps that small.
	db.MaxBatchDelay = BatchDelay
	if err := db.Update(func(tx *bolt.Tx) error {
		if err := stampDataset(tx); err != nil {
			return err
		}
		return schema(tx)
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("bbolt schema %s: %w", path, err)
	}
	return db, nil
}

// stampDataset gives a file its data-set ID the first time it is opened.
func stampDataset(tx *bolt.Tx) error {
	b, err := tx.CreateBucketIfNotExists(metaBucket)
	if err != nil {
		return err
	}
	if b.Get(datasetKey) != nil {
		return nil
	}
	return b.Put(datasetKey, []byte(ulid.Make().String()))
}

// Dataset returns the ID given to the file when it was first opened by Open.
// It names the data, not the process: a restarted process, or one started
// from a copy of the file, reads the same ID; a fresh empty file has a new
// one. The single-instance lock (plugins/service) uses it to tell a restart
// on the same data from a newcomer with other data.
func Dataset(db *bolt.DB) (string, error) {
	var id string
	err := db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(metaBucket); b != nil {
			id = string(b.Get(datasetKey))
		}
		return nil
	})
	if err == nil && id == "" {
		err = errors.New("bbolt: file has no data-set ID (not opened through boltdb.Open)")
	}
	return id, err
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
