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

	// Refresh token sessions (package session). A token is known only by
	// its SHA-256. A session's records live until it expires (its newest
	// token's expiry), revoked or not, so that a spent token presented
	// again is recognized as reuse; then the purge drops them.
	sessionsBucket   = []byte("sessions")                  // session id → sessionRecord JSON
	sessionsExpiry   = []byte("sessions.by_expiry")        // 8-byte big-endian expiry (Unix ns) + session id → nil: the purge's queue
	refreshBucket    = []byte("refresh_tokens")            // token SHA-256 (32 bytes) → refreshRecord JSON
	refreshBySession = []byte("refresh_tokens.by_session") // session id \x00 token SHA-256 → nil: the tokens to drop with their session
)

func createBuckets(tx *bolt.Tx) error {
	for _, b := range [][]byte{usersBucket, emailIndex, wishlistBucket, bankBucket, deviceBucket, deviceIndex, prefsBucket,
		sessionsBucket, sessionsExpiry, refreshBucket, refreshBySession} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return events.CreateBuckets(tx)
}

func ownedKey(owner, item string) []byte { return boltdb.Key(owner, item) }
