// Package store keeps the images service's data: metadata in one bbolt file
// and the bytes as content-addressed files under a blob directory
// (<dir>/<sha[0:2]>/<sha>). Every bucket is declared here and created in one
// transaction at Open.
//
// Several images may share one blob (the same bytes uploaded twice, or an
// original that equals some thumbnail), so each blob has a reference count;
// its file is removed when the count drops to zero. Changes to a blob's
// count and to its file happen under that blob's lock, so an upload can
// never count a file that a concurrent delete is about to remove.
package store

import (
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/boltdb"
)

var (
	imagesBucket = []byte("images")          // image id → image.Image JSON
	ownerIndex   = []byte("images.by_owner") // owner type \x00 owner id \x00 image id → nothing (ULIDs: oldest first)
	blobsBucket  = []byte("blobs")           // sha256 (hex) → reference count (uint64, big endian)
)

func createBuckets(tx *bolt.Tx) error {
	for _, b := range [][]byte{imagesBucket, ownerIndex, blobsBucket} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

// ownerPrefix is the start of an owner's range in ownerIndex. IDs never
// contain \x00 (image.CheckID), so ranges do not overlap.
func ownerPrefix(ownerType, ownerID string) []byte {
	return boltdb.Prefix(ownerType, ownerID)
}

func ownerKey(ownerType, ownerID, imageID string) []byte {
	return append(ownerPrefix(ownerType, ownerID), imageID...)
}
