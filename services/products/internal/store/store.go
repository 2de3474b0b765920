package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/plugins/boltdb"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/textsearch"
	"github.com/marketmesh/marketmesh/services/products/internal/product"
)

// Store is the products database, with the view counts not yet flushed to it.
type Store struct {
	db    *bolt.DB
	views viewCounter
	// afterEvent runs after every outbox append, in the same transaction;
	// tests use it to fail a write after its event was appended.
	afterEvent func(*bolt.Tx) error
}

// Open opens (creating if needed) the database at path.
func Open(path string) (*Store, error) {
	var gen uint64
	db, err := boltdb.Open(path, func(tx *bolt.Tx) error {
		if err := createBuckets(tx); err != nil {
			return err
		}
		gen = uint64(getCount(tx.Bucket(metaBucket), viewsGenKey))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s := &Store{db: db}
	s.views.init(gen)
	return s, nil
}

// Close writes the pending view counts and closes the database.
func (s *Store) Close() error {
	ferr := s.FlushViews()
	if err := s.db.Close(); err != nil {
		return err
	}
	return ferr
}

// Bolt exposes the handle for the events inbox and outbox.
func (s *Store) Bolt() *bolt.DB { return s.db }

// Check is the readiness check: the file is open and readable.
func (s *Store) Check(context.Context) error {
	return boltdb.CheckBucket(s.db, productsBucket)
}

// productRecord is a stored product: what its creator wrote. Views and
// prices live in facets.
type productRecord struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Category    string            `json:"category"`
	Brand       string            `json:"brand,omitempty"`
	Attributes  map[string]string `json:"attributes,omitempty"`
	CreatorID   string            `json:"creator_id"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
}

func toRecord(p product.Product) productRecord {
	return productRecord{ID: p.ID, Name: p.Name, Description: p.Description, Category: p.Category, Brand: p.Brand,
		Attributes: p.Attributes, CreatorID: p.CreatorID, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
}

func (r productRecord) product(f facets) product.Product {
	attrs := r.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	return product.Product{ID: r.ID, Name: r.Name, Description: r.Description, Category: r.Category, Brand: r.Brand,
		Attributes: attrs, CreatorID: r.CreatorID, ViewCount: int64(f.views), LowestPrices: f.prices,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

// load reads product id as stored (views without pending ones).
func load(tx *bolt.Tx, id string) (productRecord, facets, error) {
	return newLoader(tx).load([]byte(id))
}

// loader reads products in one transaction, its buckets opened once: in a
// read transaction bbolt looks a bucket up anew on every tx.Bucket.
type loader struct {
	products, facets *bolt.Bucket
}

func newLoader(tx *bolt.Tx) loader {
	return loader{products: tx.Bucket(productsBucket), facets: tx.Bucket(facetsBucket)}
}

func (l loader) load(id []byte) (productRecord, facets, error) {
	var rec productRecord
	raw := l.products.Get(id)
	if raw == nil {
		return rec, facets{}, product.ErrNotFound
	}
	if err := decodeRecord(raw, &rec); err != nil { // copies out of the mmap
		return rec, facets{}, fmt.Errorf("store: product %s: %w", id, err)
	}
	f, err := decodeFacets(l.facets.Get(id))
	if err != nil {
		return rec, facets{}, fmt.Errorf("store: product %s: %w", id, err)
	}
	return rec, f, nil
}

// Create stores a new product with all its index entries.
func (s *Store) Create(p product.Product) error {
	rec := toRecord(p)
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	// Batch shares one fsync among concurrent creates. If another create in
	// the batch fails, this one is run again in a new transaction (the first
	// was rolled back), which insert tolerates.
	return s.db.Batch(func(tx *bolt.Tx) error { return insert(tx, rec, raw) })
}

func insert(tx *bolt.Tx, rec productRecord, raw []byte) error {
	b := tx.Bucket(productsBucket)
	if b.Get([]byte(rec.ID)) != nil {
		return fmt.Errorf("store: product %s exists", rec.ID)
	}
	if err := b.Put([]byte(rec.ID), raw); err != nil {
		return err
	}
	f := facets{category: rec.Category, brand: FoldBrand(rec.Brand)}
	if err := tx.Bucket(facetsBucket).Put([]byte(rec.ID), f.encode()); err != nil {
		return err
	}
	if err := tx.Bucket(viewsIndex).Put(viewsKey(0, rec.ID), nil); err != nil {
		return err
	}
	if err := indexCategory(tx, rec.Category, rec.ID, 1); err != nil {
		return err
	}
	if err := indexBrand(tx, f.brand, rec.ID, 1); err != nil {
		return err
	}
	if err := indexText(tx, rec); err != nil {
		return err
	}
	return addCount(tx.Bucket(metaBucket), productCountKey, 1)
}

// indexCategory adds (delta 1) or removes (-1) id under path, and counts it
// in path and every ancestor.
func indexCategory(tx *bolt.Tx, path, id string, delta int64) error {
	ix := tx.Bucket(categoryIndex)
	var err error
	if delta > 0 {
		err = ix.Put(categoryKey(path, id), nil)
	} else {
		err = ix.Delete(categoryKey(path, id))
	}
	if err != nil {
		return err
	}
	counts := tx.Bucket(categoryCounts)
	for _, a := range product.Ancestors(path) {
		if err := addCount(counts, []byte(a), delta); err != nil {
			return err
		}
	}
	return nil
}

func indexBrand(tx *bolt.Tx, folded, id string, delta int64) error {
	if folded == "" {
		return nil
	}
	var err error
	if delta > 0 {
		err = tx.Bucket(brandIndex).Put(brandKey(folded, id), nil)
	} else {
		err = tx.Bucket(brandIndex).Delete(brandKey(folded, id))
	}
	if err != nil {
		return err
	}
	return addCount(tx.Bucket(brandCounts), []byte(folded), delta)
}

func indexText(tx *bolt.Tx, rec productRecord) error {
	return textIndex.Put(tx, rec.ID,
		textsearch.Field{Text: rec.Name, Weight: 3},
		textsearch.Field{Text: rec.Brand, Weight: 2},
		textsearch.Field{Text: rec.Description, Weight: 1})
}

// Get returns product id with its view count including views not yet
// flushed. countView records one more view first (in memory only).
func (s *Store) Get(id string, countView bool) (product.Product, error) {
	var p product.Product
	err := s.view(func(tx *bolt.Tx, pending func(string) uint64) error {
		rec, f, err := load(tx, id)
		if err != nil {
			return err
		}
		if countView {
			s.views.add(id)
		}
		f.views += pending(id)
		p = rec.product(f)
		return nil
	})
	return p, err
}

// Update loads product id, lets fn change it (fn decides whether the change
// is allowed and valid) and saves it with its index entries, in one
// transaction. It returns the product as saved.
func (s *Store) Update(id string, fn func(*product.Product) error) (product.Product, error) {
	var out product.Product
	err := s.update(func(tx *bolt.Tx, pending func(string) uint64) error {
		rec, f, err := load(tx, id)
		if err != nil {
			return err
		}
		p := rec.product(f)
		if err := fn(&p); err != nil {
			return err
		}
		next := toRecord(p)
		next.ID, next.CreatorID, next.CreatedAt = rec.ID, rec.CreatorID, rec.CreatedAt
		if err := reindex(tx, rec, next, &f); err != nil {
			return err
		}
		raw, err := json.Marshal(next)
		if err != nil {
			return err
		}
		if err := tx.Bucket(productsBucket).Put([]byte(id), raw); err != nil {
			return err
		}
		f.views += pending(id)
		out = next.product(f)
		return nil
	})
	return out, err
}

// reindex moves the index entries of old to those of next and updates f.
func reindex(tx *bolt.Tx, old, next productRecord, f *facets) error {
	if old.Category != next.Category {
		if err := indexCategory(tx, old.Category, old.ID, -1); err != nil {
			return err
		}
		if err := indexCategory(tx, next.Category, next.ID, 1); err != nil {
			return err
		}
		f.category = next.Category
	}
	if fb := FoldBrand(next.Brand); fb != f.brand {
		if err := indexBrand(tx, f.brand, old.ID, -1); err != nil {
			return err
		}
		if err := indexBrand(tx, fb, next.ID, 1); err != nil {
			return err
		}
		f.brand = fb
	}
	if old.Name != next.Name || old.Brand != next.Brand || old.Description != next.Description {
		if err := indexText(tx, next); err != nil {
			return err
		}
	}
	return tx.Bucket(facetsBucket).Put([]byte(old.ID), f.encode())
}

// Delete removes product id and every index entry, price and count of it,
// after allow (the permission check) has accepted it, and appends
// product.deleted (deleted at now, with ID eventID: both decided by the
// caller before the transaction) to the outbox in the same transaction: a
// delete that commits always has its event, one that fails never does.
func (s *Store) Delete(id string, now time.Time, eventID string, allow func(product.Product) error) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		rec, f, err := load(tx, id)
		if err != nil {
			return err
		}
		if err := allow(rec.product(f)); err != nil {
			return err
		}
		if err := tx.Bucket(productsBucket).Delete([]byte(id)); err != nil {
			return err
		}
		if err := tx.Bucket(facetsBucket).Delete([]byte(id)); err != nil {
			return err
		}
		if err := tx.Bucket(viewsIndex).Delete(viewsKey(f.views, id)); err != nil {
			return err
		}
		for _, p := range f.prices {
			if err := tx.Bucket(priceIndex).Delete(priceKey(p.Currency, p.Amount, id)); err != nil {
				return err
			}
		}
		if err := indexCategory(tx, rec.Category, id, -1); err != nil {
			return err
		}
		if err := indexBrand(tx, f.brand, id, -1); err != nil {
			return err
		}
		if err := textIndex.Delete(tx, id); err != nil {
			return err
		}
		if err := deletePrefix(tx.Bucket(pubPrices), append([]byte(id), 0)); err != nil {
			return err
		}
		if err := addCount(tx.Bucket(metaBucket), productCountKey, -1); err != nil {
			return err
		}
		return s.deleted(tx, id, now, eventID)
	})
	if err == nil {
		s.views.forget(id)
	}
	return err
}

// deleted appends product.deleted for id, deleted at now, to the outbox in
// tx, as event eventID of that time.
func (s *Store) deleted(tx *bolt.Tx, id string, now time.Time, eventID string) error {
	ev, err := events.NewEvent(eventID, now.UTC(), productsrpc.Service, productsrpc.TopicProductDeleted,
		productsrpc.ProductDeleted{ProductID: id, DeletedAt: now.UTC()})
	if err != nil {
		return err
	}
	if _, err := events.AppendEvent(tx, ev); err != nil {
		return err
	}
	if s.afterEvent != nil {
		return s.afterEvent(tx)
	}
	return nil
}

func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Categories returns the category tree with counts.
func (s *Store) Categories() ([]product.Category, error) {
	counts := map[string]int64{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(categoryCounts).ForEach(func(k, v []byte) error {
			if len(v) == 8 {
				counts[string(k)] = int64(binary.BigEndian.Uint64(v))
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return product.Tree(counts), nil
}
