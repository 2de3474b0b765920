// Package store keeps the products service's data in one bbolt file. Every
// bucket is declared here and created in one transaction at Open. Secondary
// indexes are written in the same transaction as the product they describe,
// so a search never sees a half-indexed product.
//
// Index keys end in the product ID (a 26-character ULID, which never
// contains NUL) after fixed-width or NUL-terminated fields, so each index is
// one ordered range per value and a query is a cursor seek, not a scan:
//
//	products.by_category  "<path>\x00<id>"                      a category's products, by ID
//	products.by_brand     "<folded brand>\x00<id>"              a brand's products, by ID
//	products.by_price     "<CUR>\x00<amount u64 BE>\x00<id>"    lowest active price per currency
//	products.by_views     "<views u64 BE>\x00<id>"              persisted view counts
//
// Because ULIDs sort by creation time, "newest first" is any ID-ordered
// range read backwards.
package store

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/textsearch"

	"github.com/marketmesh/marketmesh/plugins/boltdb"
)

var (
	productsBucket = []byte("products")                 // id → productRecord JSON (what the creator wrote)
	facetsBucket   = []byte("products.facets")          // id → facets (binary): what search filters and sorts on
	categoryIndex  = []byte("products.by_category")     // path \x00 id → nil
	brandIndex     = []byte("products.by_brand")        // folded brand \x00 id → nil
	priceIndex     = []byte("products.by_price")        // currency \x00 amount(8) \x00 id → nil
	viewsIndex     = []byte("products.by_views")        // views(8) \x00 id → nil
	categoryCounts = []byte("products.category_counts") // path → u64 BE: products in it and below
	brandCounts    = []byte("products.brand_counts")    // folded brand → u64 BE
	pubPrices      = []byte("publication_prices")       // product id \x00 publication id → pubPrice JSON
	metaBucket     = []byte("meta")                     // the keys below
)

// Keys of metaBucket.
var (
	productCountKey = []byte("product_count") // u64 BE: products stored (the text ranking's N)
	viewsGenKey     = []byte("views_gen")     // u64 BE: the last view-count flush committed
)

// textIndex is the full-text index over name (3), brand (2) and description (1).
var textIndex = textsearch.New("products")

// postingsBucket is textIndex's postings bucket, read directly by the ranked
// search so that page tokens can carry the idf of the first page (see
// text.go). Its layout is the one textsearch documents on Index:
// "term\x00docID" → weight (u32 BE).
var postingsBucket = []byte("products.postings")

func createBuckets(tx *bolt.Tx) error {
	for _, b := range [][]byte{productsBucket, facetsBucket, categoryIndex, brandIndex, priceIndex, viewsIndex,
		categoryCounts, brandCounts, pubPrices, metaBucket} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	if err := textIndex.CreateBuckets(tx); err != nil {
		return err
	}
	return events.CreateBuckets(tx)
}

// Index keys.

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func categoryKey(path, id string) []byte { return boltdb.KeyBytes([]byte(path), []byte(id)) }
func brandKey(folded, id string) []byte  { return boltdb.KeyBytes([]byte(folded), []byte(id)) }
func viewsKey(views uint64, id string) []byte {
	return boltdb.KeyBytes(u64(views), []byte(id))
}
func priceKey(currency string, amount int64, id string) []byte {
	return boltdb.KeyBytes([]byte(currency), u64(uint64(amount)), []byte(id))
}

// priceKeyLen is the length of a price key without its ID: "USD\x00" + 8 + "\x00".
const priceKeyLen = 3 + 1 + 8 + 1

// viewsKeyLen is the length of a views key without its ID.
const viewsKeyLen = 8 + 1

func pubPriceKey(productID, publicationID string) []byte {
	return boltdb.KeyBytes([]byte(productID), []byte(publicationID))
}

// addCount adds delta to the u64 counter at key, deleting it at zero.
func addCount(b *bolt.Bucket, key []byte, delta int64) error {
	var n int64
	if v := b.Get(key); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	n += delta
	if n <= 0 {
		return b.Delete(key)
	}
	return b.Put(key, u64(uint64(n)))
}

func getCount(b *bolt.Bucket, key []byte) int64 {
	if v := b.Get(key); len(v) == 8 {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}
