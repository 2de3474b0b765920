package store

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/services/products/internal/product"
)

// TestDeleteLeavesNoKeyOrValueNamingTheProduct looks in every bucket, not
// only in the ones this test knows about, for the deleted product's ID.
func TestDeleteLeavesNoKeyOrValueNamingTheProduct(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ps []product.Product
	for _, name := range []string{"Keep me", "Delete me"} {
		p, err := product.New(ulid.Make().String(), "u1", product.Draft{
			Name: name, Description: "words here", Category: "a/b/c", Brand: "Brand X",
		}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Create(p); err != nil {
			t.Fatal(err)
		}
		err = s.db.Update(func(tx *bolt.Tx) error {
			for i, cur := range []string{"USD", "EUR"} {
				_, err := ApplyPublication(tx, product.PublicationPrice{PublicationID: cur, ProductID: p.ID,
					Price: money.Money{Amount: int64(100 + i), Currency: cur}, Active: true})
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		s.Get(p.ID, true)
		ps = append(ps, p)
	}
	if err := s.FlushViews(); err != nil {
		t.Fatal(err)
	}
	keep, gone := ps[0], ps[1]
	if n := mentions(t, s, gone.ID); n < 8 {
		t.Fatalf("before Delete only %d entries name the product; the test sees too little", n)
	}
	if n := outboxMentions(t, s, gone.ID); n != 0 {
		t.Fatalf("before Delete %d outbox events name the product", n)
	}
	if err := s.Delete(gone.ID, time.Now(), ulid.Make().String(), func(product.Product) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if n := mentions(t, s, gone.ID); n != 0 {
		t.Fatalf("%d entries still name the deleted product", n)
	}
	// Only its product.deleted event does, until the relay's retention drops it.
	if n := outboxMentions(t, s, gone.ID); n != 1 {
		t.Fatalf("%d outbox events name the deleted product, want its product.deleted only", n)
	}
	if n := mentions(t, s, keep.ID); n < 8 {
		t.Fatalf("the other product lost entries: %d left", n)
	}
}

// outboxBucket is plugins/events' outbox, where product.deleted names the
// product it is about.
const outboxBucket = "events.outbox"

// mentions counts keys and values, in every bucket but the outbox,
// containing id.
func mentions(t *testing.T, s *Store, id string) int {
	t.Helper()
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if string(name) == outboxBucket {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				if bytes.Contains(k, []byte(id)) || bytes.Contains(v, []byte(id)) {
					n++
				}
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// outboxMentions counts the outbox events containing id.
func outboxMentions(t *testing.T, s *Store, id string) int {
	t.Helper()
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(outboxBucket)).ForEach(func(_, v []byte) error {
			if bytes.Contains(v, []byte(id)) {
				n++
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
