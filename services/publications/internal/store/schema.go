// Package store keeps the publications service's data in one bbolt file.
// Every bucket is declared here and created in one transaction at Open.
// Indexes are written in the same transaction as the publication they
// describe, and so is the publication.changed event (plugins/events outbox).
//
// Index keys are "<value>\x00<publication id>" (IDs never contain NUL), so
// one value's publications are one contiguous range ordered by ID; IDs are
// ULIDs, so that is creation order and "newest" is a reverse cursor walk.
package store

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/textsearch"
)

var (
	publicationsBucket = []byte("publications")                  // id → Publication JSON (ULID order = creation order)
	byProduct          = []byte("publications.by_product")       // product id \x00 id → nil
	bySeller           = []byte("publications.by_seller")        // seller id \x00 id → nil
	bySellerStatus     = []byte("publications.by_seller_status") // seller id \x00 status \x00 id → nil
	byStatus           = []byte("publications.by_status")        // status \x00 id → nil
	byPrice            = []byte("publications.by_price")         // currency (3 bytes) amount (8 bytes BE) id → nil
	reservationsBucket = []byte("reservations")                  // reservation id → Reservation JSON
	byExpiry           = []byte("reservations.by_expiry")        // expires_at unix nano (8 bytes BE) \x00 id → nil; held ones only
	deletedProducts    = []byte("deleted_products")              // product id → deleted_at (RFC 3339): from product.deleted events
)

// titles is the full-text index over titles (buckets publications.postings
// and publications.docs).
var titles = textsearch.New("publications")

func createBuckets(tx *bolt.Tx) error {
	for _, b := range [][]byte{publicationsBucket, byProduct, bySeller, bySellerStatus, byStatus, byPrice, reservationsBucket, byExpiry, deletedProducts} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	if err := titles.CreateBuckets(tx); err != nil {
		return err
	}
	return events.CreateBuckets(tx)
}

// priceKey is the by_price key of a price: currency, big-endian amount
// (amounts are positive, so byte order is numeric order), then ID.
func priceKey(currency string, amount int64, id string) []byte {
	k := make([]byte, 0, 3+8+len(id))
	k = append(k, currency...)
	k = binary.BigEndian.AppendUint64(k, uint64(amount))
	return append(k, id...)
}

// priceBound is the by_price key before every ID at (currency, amount).
func priceBound(currency string, amount int64) []byte { return priceKey(currency, amount, "") }

const priceHead = 3 + 8 // currency and amount before the ID

// expiryKey is the by_expiry key of a held reservation.
func expiryKey(expiresUnixNano int64, id string) []byte {
	k := make([]byte, 0, 8+1+len(id))
	k = binary.BigEndian.AppendUint64(k, uint64(expiresUnixNano))
	k = append(k, 0)
	return append(k, id...)
}

// end returns the smallest key greater than every key starting with p.
func end(p []byte) []byte {
	e := append([]byte{}, p...)
	for i := len(e) - 1; i >= 0; i-- {
		if e[i] < 0xff {
			e[i]++
			return e[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}
