package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/services/products/internal/product"
)

// pubPrice is a publication price as stored in the pubPrices bucket.
type pubPrice struct {
	Seq      uint64 `json:"seq,omitempty"` // publications' outbox sequence of the event applied
	EventID  string `json:"event_id,omitempty"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Active   bool   `json:"active"`
}

// ApplyPublication records pp inside tx (the events consumer's transaction)
// and recomputes the product's lowest active price per currency and its
// price index entries. It reports false, changing nothing, when the product
// does not exist.
func ApplyPublication(tx *bolt.Tx, pp product.PublicationPrice) (bool, error) {
	if pp.ProductID == "" || pp.PublicationID == "" || strings.IndexByte(pp.ProductID, 0) >= 0 {
		return false, nil
	}
	if pp.Active && pp.Price.Validate("price") != nil {
		pp.Active = false // an unusable price never becomes a lowest price
	}
	fb := tx.Bucket(facetsBucket)
	raw := fb.Get([]byte(pp.ProductID))
	if raw == nil {
		return false, nil
	}
	f, err := decodeFacets(raw)
	if err != nil {
		return false, fmt.Errorf("store: product %s: %w", pp.ProductID, err)
	}
	pb := tx.Bucket(pubPrices)
	key := pubPriceKey(pp.ProductID, pp.PublicationID)
	if old := pb.Get(key); old != nil && pp.Seq != 0 {
		var prev pubPrice
		if err := json.Unmarshal(old, &prev); err == nil && prev.Seq >= pp.Seq {
			return true, nil // a later state (in publications' commit order) is applied already
		}
	}
	rec, err := json.Marshal(pubPrice{Seq: pp.Seq, EventID: pp.EventID, Amount: pp.Price.Amount, Currency: pp.Price.Currency, Active: pp.Active})
	if err != nil {
		return false, err
	}
	if err := pb.Put(key, rec); err != nil {
		return false, err
	}

	lowest, err := lowestPrices(pb, pp.ProductID)
	if err != nil {
		return false, err
	}
	if slices.Equal(lowest, f.prices) {
		return true, nil
	}
	ix := tx.Bucket(priceIndex)
	for _, p := range f.prices {
		if err := ix.Delete(priceKey(p.Currency, p.Amount, pp.ProductID)); err != nil {
			return false, err
		}
	}
	for _, p := range lowest {
		if err := ix.Put(priceKey(p.Currency, p.Amount, pp.ProductID), nil); err != nil {
			return false, err
		}
	}
	f.prices = lowest
	return true, fb.Put([]byte(pp.ProductID), f.encode())
}

// lowestPrices is the cheapest active publication of product id per
// currency, sorted by currency.
func lowestPrices(pb *bolt.Bucket, id string) ([]money.Money, error) {
	prefix := append([]byte(id), 0)
	best := map[string]int64{}
	c := pb.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var p pubPrice
		if err := json.Unmarshal(v, &p); err != nil {
			return nil, fmt.Errorf("store: publication price %q: %w", k, err)
		}
		if !p.Active {
			continue
		}
		if cur, ok := best[p.Currency]; !ok || p.Amount < cur {
			best[p.Currency] = p.Amount
		}
	}
	out := make([]money.Money, 0, len(best))
	for c, a := range best {
		out = append(out, money.Money{Amount: a, Currency: c})
	}
	slices.SortFunc(out, func(a, b money.Money) int { return strings.Compare(a.Currency, b.Currency) })
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}
