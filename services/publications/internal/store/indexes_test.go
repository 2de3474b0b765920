package store_test

import (
	"encoding/binary"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/services/publications/internal/store"
)

// checkIndexes fails unless every index holds exactly the entries its
// publications and held reservations call for: nothing missing, nothing stale.
func checkIndexes(t *testing.T, s *store.Store) {
	t.Helper()
	want := map[string][]string{}
	add := func(bucket string, k []byte) { want[bucket] = append(want[bucket], string(k)) }
	join := func(parts ...string) []byte { return []byte(strings.Join(parts, "\x00")) }
	err := s.Bolt().View(func(tx *bolt.Tx) error {
		err := tx.Bucket([]byte("publications")).ForEach(func(_, v []byte) error {
			var p store.PublicationRecord
			if err := json.Unmarshal(v, &p); err != nil {
				return err
			}
			add("publications.by_product", join(p.ProductID, p.ID))
			add("publications.by_seller", join(p.SellerID, p.ID))
			add("publications.by_seller_status", join(p.SellerID, p.Status, p.ID))
			add("publications.by_status", join(p.Status, p.ID))
			pk := binary.BigEndian.AppendUint64([]byte(p.Price.Currency), uint64(p.Price.Amount))
			add("publications.by_price", append(pk, p.ID...))
			add("publications.docs", []byte(p.ID))
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket([]byte("reservations")).ForEach(func(_, v []byte) error {
			var r store.ReservationRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			if r.Status == "held" {
				k := binary.BigEndian.AppendUint64(nil, uint64(r.ExpiresAt.UnixNano()))
				add("reservations.by_expiry", append(append(k, 0), r.ID...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for bucket, keys := range want {
			slices.Sort(keys)
			var got []string
			err := tx.Bucket([]byte(bucket)).ForEach(func(k, _ []byte) error {
				if bucket != "publications.docs" || k[0] != 0 { // not the text index's document count
					got = append(got, string(k))
				}
				return nil
			})
			if err != nil {
				return err
			}
			if !slices.Equal(got, keys) {
				t.Errorf("index %s holds %q, want %q", bucket, got, keys)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
