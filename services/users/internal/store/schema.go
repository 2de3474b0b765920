// Package store keeps the users service's data in one bbolt file. Every
// bucket is declared here and created in one transaction at Open. Per-user
// collections are keyed "<user id>\x00<item>", so a user's items are one
// contiguous, ordered range: listing is a cursor seek, never a scan.
package store

import (
	"github.com/marketmesh/marketmesh/plugins/events"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/boltdb"
)

var (
	usersBucket    = []byte("users")                    // user id → userRecord JSON
	emailIndex     = []byte("users.by_email")           // normalized email → user id
	wishlistBucket = []byte("wishlist")                 // user id \x00 publication id → added_at (RFC 3339)
	bankBucket     = []byte("bank_accounts")            // user id \x00 account id → bankRecord JSON
	deviceBucket   = []byte("devices")                  // user id \x00 token → deviceRecord JSON
	deviceIndex    = []byte("devices.by_token")         // token → user id (a device belongs to one user)
	prefsBucket    = []byte("notification_preferences") // user id → prefsRecord JSON
)

func createBuckets(tx *bolt.Tx) error {
	for _, b := range [][]byte{usersBucket, emailIndex, wishlistBucket, bankBucket, deviceBucket, deviceIndex, prefsBucket} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return events.CreateBuckets(tx)
}

func ownedKey(owner, item string) []byte { return boltdb.Key(owner, item) }
