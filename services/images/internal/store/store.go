package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/boltdb"
	"github.com/marketmesh/marketmesh/services/images/internal/image"
)

// ErrBadPageToken is returned for a page token this store did not issue.
var ErrBadPageToken = errors.New("page_token is not valid")

// Store is the images database and blob directory.
type Store struct {
	db    *bolt.DB
	blobs *blobDir
}

// Open opens (creating if needed) the database at dbPath and the blob
// directory at blobDir, and removes temporary files a previous process left.
// Bolt is the underlying database (for the single-instance lock).
func (s *Store) Bolt() *bolt.DB { return s.db }

func Open(dbPath, blobDir string) (*Store, error) {
	db, err := boltdb.Open(dbPath, createBuckets)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	blobs, err := openBlobDir(blobDir)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	return &Store{db: db, blobs: blobs}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Check is the readiness check: the database is readable and the blob
// directory is there.
func (s *Store) Check(context.Context) error {
	if err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(imagesBucket) == nil {
			return errors.New("images bucket missing")
		}
		return nil
	}); err != nil {
		return err
	}
	_, err := os.Stat(s.blobs.tmp)
	return err
}

// CreateTemp creates a temporary file in the blob directory (same file
// system as the blobs, so placing it is a rename). The caller closes it and
// either hands its name to Add or removes it.
func (s *Store) CreateTemp() (*os.File, error) { return s.blobs.createTemp() }

// OpenBlob opens a blob for reading. A blob deleted while open stays
// readable through the handle.
func (s *Store) OpenBlob(sha string) (*os.File, error) {
	path, err := blobPath(s.blobs.root, sha)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, image.ErrNotFound
	}
	return f, err
}

// NewBlob is a file to store under its hash: Temp is the temporary file
// (from CreateTemp, closed) holding the bytes whose SHA-256 is SHA256.
type NewBlob struct {
	SHA256 string
	Temp   string
}

// Add stores im and its blobs: each temporary file becomes the blob file
// (or is dropped if the blob exists already) and each blob's reference
// count goes up by one, in one transaction with the metadata.
func (s *Store) Add(im image.Image, blobs ...NewBlob) error {
	raw, err := json.Marshal(im)
	if err != nil {
		return err
	}
	shas := make([]string, len(blobs))
	for i, b := range blobs {
		shas[i] = b.SHA256
	}
	unlock := s.blobs.lock(shas)
	defer unlock()
	for _, b := range blobs {
		if err := s.blobs.place(b.SHA256, b.Temp); err != nil {
			return err
		}
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		images := tx.Bucket(imagesBucket)
		if images.Get([]byte(im.ID)) != nil {
			return fmt.Errorf("store: image %s exists", im.ID)
		}
		if err := images.Put([]byte(im.ID), raw); err != nil {
			return err
		}
		if err := tx.Bucket(ownerIndex).Put(ownerKey(im.OwnerType, im.OwnerID, im.ID), nil); err != nil {
			return err
		}
		for _, sha := range shas {
			if _, err := addRef(tx, sha, +1); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// The files are in place but not counted: remove those nothing else counts.
		s.removeUnreferenced(shas)
	}
	return err
}

// Get returns the image with id.
func (s *Store) Get(id string) (image.Image, error) {
	var im image.Image
	err := s.db.View(func(tx *bolt.Tx) error {
		return getImage(tx, id, &im)
	})
	return im, err
}

// List returns up to size images of an owner, oldest first, after the page
// token, and the token of the next page ("" on the last page).
func (s *Store) List(ownerType, ownerID string, size int, token string) ([]image.Image, string, error) {
	prefix := ownerPrefix(ownerType, ownerID)
	start := prefix
	if token != "" {
		after, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil {
			return nil, "", ErrBadPageToken
		}
		if _, err := ulid.ParseStrict(string(after)); err != nil {
			return nil, "", ErrBadPageToken
		}
		start = append(append([]byte{}, prefix...), after...)
		start = append(start, 0) // strictly after the last item returned
	}
	items := make([]image.Image, 0, min(size, 32))
	var next string
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(ownerIndex).Cursor()
		for k, _ := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(items) == size { // there is more: hand out a token
				next = base64.RawURLEncoding.EncodeToString([]byte(items[len(items)-1].ID))
				return nil
			}
			var im image.Image
			if err := getImage(tx, string(k[len(prefix):]), &im); err != nil {
				return fmt.Errorf("store: index entry %q: %w", k, err)
			}
			items = append(items, im)
		}
		return nil
	})
	return items, next, err
}

// First returns the oldest image of each owner that has one.
func (s *Store) First(ownerType string, ownerIDs []string) (map[string]image.Image, error) {
	out := make(map[string]image.Image, len(ownerIDs))
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(ownerIndex).Cursor()
		for _, owner := range ownerIDs {
			if _, done := out[owner]; done {
				continue
			}
			prefix := ownerPrefix(ownerType, owner)
			k, _ := c.Seek(prefix)
			if k == nil || !bytes.HasPrefix(k, prefix) {
				continue
			}
			var im image.Image
			if err := getImage(tx, string(k[len(prefix):]), &im); err != nil {
				return fmt.Errorf("store: index entry %q: %w", k, err)
			}
			out[owner] = im
		}
		return nil
	})
	return out, err
}

// Delete removes the image with id if allow (given the stored image)
// returns nil, drops a reference to each of its blobs and removes the
// files no image references any more. It returns the deleted image.
func (s *Store) Delete(id string, allow func(image.Image) error) (image.Image, error) {
	im, err := s.Get(id)
	if err != nil {
		return im, err
	}
	// Images are immutable, so the blobs read here are the ones to lock.
	shas := []string{im.Original.SHA256, im.Thumbnail.SHA256}
	unlock := s.blobs.lock(shas)
	defer unlock()
	var unused []string
	err = s.db.Update(func(tx *bolt.Tx) error {
		unused = unused[:0]
		if err := getImage(tx, id, &im); err != nil { // deleted meanwhile
			return err
		}
		if err := allow(im); err != nil {
			return err
		}
		if err := tx.Bucket(imagesBucket).Delete([]byte(id)); err != nil {
			return err
		}
		if err := tx.Bucket(ownerIndex).Delete(ownerKey(im.OwnerType, im.OwnerID, id)); err != nil {
			return err
		}
		for _, sha := range shas {
			n, err := addRef(tx, sha, -1)
			if err != nil {
				return err
			}
			if n == 0 {
				unused = append(unused, sha)
			}
		}
		return nil
	})
	if err != nil {
		return im, err
	}
	for _, sha := range unused {
		// Committed: a failure here leaves an orphan file, which is harmless
		// (a later upload of the same bytes reuses it).
		if err := s.blobs.remove(sha); err != nil {
			slog.Warn("images: blob not removed", "sha256", sha, "err", err)
		}
	}
	return im, nil
}

// removeUnreferenced removes the files of blobs without a reference count;
// the caller holds their locks.
func (s *Store) removeUnreferenced(shas []string) {
	var orphans []string
	_ = s.db.View(func(tx *bolt.Tx) error {
		for _, sha := range shas {
			if tx.Bucket(blobsBucket).Get([]byte(sha)) == nil {
				orphans = append(orphans, sha)
			}
		}
		return nil
	})
	for _, sha := range orphans {
		_ = s.blobs.remove(sha)
	}
}

// Refs returns a blob's reference count (0 when unknown).
func (s *Store) Refs(sha string) (uint64, error) {
	var n uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(blobsBucket).Get([]byte(sha)); len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return n, err
}

// addRef changes a blob's reference count by delta and returns the new
// count; a count of zero deletes the entry.
func addRef(tx *bolt.Tx, sha string, delta int) (uint64, error) {
	b := tx.Bucket(blobsBucket)
	var n uint64
	if v := b.Get([]byte(sha)); v != nil {
		if len(v) != 8 {
			return 0, fmt.Errorf("store: blob %s: corrupt reference count", sha)
		}
		n = binary.BigEndian.Uint64(v)
	}
	switch {
	case delta > 0:
		n += uint64(delta)
	case uint64(-delta) > n:
		return 0, fmt.Errorf("store: blob %s: reference count below zero", sha)
	default:
		n -= uint64(-delta)
	}
	if n == 0 {
		return 0, b.Delete([]byte(sha))
	}
	return n, b.Put([]byte(sha), binary.BigEndian.AppendUint64(nil, n))
}

func getImage(tx *bolt.Tx, id string, im *image.Image) error {
	raw := tx.Bucket(imagesBucket).Get([]byte(id))
	if raw == nil {
		return image.ErrNotFound
	}
	// json.Unmarshal copies out of the mmap'd value before the tx ends.
	return json.Unmarshal(raw, im)
}
