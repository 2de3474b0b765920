package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/boltdb"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/plugins/textsearch"
	"github.com/marketmesh/marketmesh/services/publications/internal/publication"
)

// Store is the publications database.
type Store struct {
	db *bolt.DB
	// afterEvent runs after every outbox append, in the same transaction;
	// tests use it to fail a write after its event was appended.
	afterEvent func(*bolt.Tx) error
	// searchReads, if set, is told how many publications a search read.
	searchReads func(int)
}

// Open opens (creating if needed) the database at path.
func Open(path string) (*Store, error) {
	db, err := boltdb.Open(path, createBuckets)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Bolt exposes the handle for the events outbox relay.
func (s *Store) Bolt() *bolt.DB { return s.db }

// Check is the readiness check: the file is open and readable.
func (s *Store) Check(context.Context) error {
	return boltdb.CheckBucket(s.db, publicationsBucket)
}

// publicationRecord is a publication as stored in the publications bucket
// (JSON); its fields are publication.Publication's, so each converts to the
// other.
type publicationRecord struct {
	ID        string      `json:"id"`
	SellerID  string      `json:"seller_id"`
	ProductID string      `json:"product_id"`
	Title     string      `json:"title"`
	Price     money.Money `json:"price"`
	Quantity  int64       `json:"quantity"` // available
	Reserved  int64       `json:"reserved"` // held by reservations
	Condition string      `json:"condition"`
	Status    string      `json:"status"`
	CreatedAt time.Time   `json:"created_at"`
	UpdatedAt time.Time   `json:"updated_at"`
}

// changed appends publication.changed with p's state to the outbox in tx,
// with w's next event ID and w's time.
func (s *Store) changed(tx *bolt.Tx, w *write, p publication.Publication) error {
	ev, err := events.NewEvent(w.nextEventID(), w.At, publicationsrpc.Service, publicationsrpc.TopicPublicationChanged, publicationsrpc.PublicationChanged{
		PublicationID: p.ID, ProductID: p.ProductID, SellerID: p.SellerID,
		Price: p.Price, Quantity: p.Quantity, Status: p.Status,
	})
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

// Create stores a new publication with its indexes and its
// publication.changed event (stamped st), in one transaction. A product
// known to be deleted (product.deleted was handled) is
// publication.UnknownProduct: the products service may have said it existed
// just before it was deleted.
func (s *Store) Create(p publication.Publication, st Stamp) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		w := &write{Stamp: st}
		if tx.Bucket(publicationsBucket).Get([]byte(p.ID)) != nil {
			return fmt.Errorf("store: publication %s exists", p.ID)
		}
		if tx.Bucket(deletedProducts).Get([]byte(p.ProductID)) != nil {
			return publication.UnknownProduct(p.ProductID)
		}
		if err := putPublication(tx, p); err != nil {
			return err
		}
		for _, ix := range []struct {
			bucket []byte
			key    []byte
		}{
			{byProduct, boltdb.Key(p.ProductID, p.ID)},
			{bySeller, boltdb.Key(p.SellerID, p.ID)},
			{bySellerStatus, boltdb.Key(p.SellerID, p.Status, p.ID)},
			{byStatus, boltdb.Key(p.Status, p.ID)},
			{byPrice, priceKey(p.Price.Currency, p.Price.Amount, p.ID)},
		} {
			if err := tx.Bucket(ix.bucket).Put(ix.key, nil); err != nil {
				return err
			}
		}
		if err := titles.Put(tx, p.ID, textsearch.Field{Text: p.Title, Weight: 1}); err != nil {
			return err
		}
		return s.changed(tx, w, p)
	})
}

// Get returns the publication with id.
func (s *Store) Get(id string) (publication.Publication, error) {
	var p publication.Publication
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		p, err = getPublication(tx, id)
		return err
	})
	return p, err
}

// GetMany returns the publications of ids that exist, in the order asked,
// each once.
func (s *Store) GetMany(ids []string) ([]publication.Publication, error) {
	out := make([]publication.Publication, 0, len(ids))
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(publicationsBucket)
		seen := make(map[string]bool, len(ids))
		for _, id := range ids {
			if seen[id] {
				continue
			}
			seen[id] = true
			raw := b.Get([]byte(id))
			if raw == nil {
				continue
			}
			p, err := decodePublication(raw)
			if err != nil {
				return err
			}
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// Update loads the publication, lets fn decide (check and change it), and
// saves it with its indexes, in one transaction. Only price, quantity and
// status may change; if any did, publication.changed (stamped st: fn
// should change the publication at st.At) is appended in the same
// transaction and changed is true.
func (s *Store) Update(id string, st Stamp, fn func(*publication.Publication) error) (p publication.Publication, changed bool, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		w := &write{Stamp: st}
		old, err := getPublication(tx, id)
		if err != nil {
			return err
		}
		p = old
		if err := fn(&p); err != nil {
			return err
		}
		if p.ID != old.ID || p.SellerID != old.SellerID || p.ProductID != old.ProductID || p.Title != old.Title {
			return fmt.Errorf("store: update of publication %s changed an immutable field", id)
		}
		changed = p.Price != old.Price || p.Quantity != old.Quantity || p.Status != old.Status
		if !changed {
			p = old
			return nil
		}
		if err := reindex(tx, old, p); err != nil {
			return err
		}
		if err := putPublication(tx, p); err != nil {
			return err
		}
		return s.changed(tx, w, p)
	})
	if err != nil {
		return publication.Publication{}, false, err
	}
	return p, changed, nil
}

// CloseProduct applies product.deleted inside tx (the events consumer's
// transaction, which also records the event as handled): it remembers that
// productID was deleted (so Create refuses it from now on) and closes every
// publication of the product that is not closed yet, found through the
// by_product index, each with its indexes and its publication.changed
// event. Held reservations are left alone: they may still be committed or
// released (Stock.Settle does not look at the status). The publications
// close at st.At, and their events are stamped st (StampFor the delivered
// event: nothing is generated in the consumer's transaction). It returns
// the publications it closed; applying it again closes nothing more.
func (s *Store) CloseProduct(tx *bolt.Tx, productID string, deletedAt time.Time, st Stamp) ([]publication.Publication, error) {
	w := &write{Stamp: st}
	if err := tx.Bucket(deletedProducts).Put([]byte(productID), []byte(deletedAt.UTC().Format(time.RFC3339Nano))); err != nil {
		return nil, err
	}
	// Collect the IDs first: keys are only valid during the cursor walk.
	var ids []string
	prefix := boltdb.Prefix(productID)
	c := tx.Bucket(byProduct).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		ids = append(ids, string(k[len(prefix):]))
	}
	var closed []publication.Publication
	for _, id := range ids {
		old, err := getPublication(tx, id)
		if err != nil {
			return nil, fmt.Errorf("store: product %s: %w", productID, err)
		}
		p := old
		if !p.CloseForDeletedProduct(w.At) {
			continue
		}
		if err := reindex(tx, old, p); err != nil {
			return nil, err
		}
		if err := putPublication(tx, p); err != nil {
			return nil, err
		}
		if err := s.changed(tx, w, p); err != nil {
			return nil, err
		}
		closed = append(closed, p)
	}
	return closed, nil
}

// reindex moves the status and price index entries of a publication that
// changed from old to p.
func reindex(tx *bolt.Tx, old, p publication.Publication) error {
	if old.Status != p.Status {
		ss, st := tx.Bucket(bySellerStatus), tx.Bucket(byStatus)
		if err := ss.Delete(boltdb.Key(old.SellerID, old.Status, old.ID)); err != nil {
			return err
		}
		if err := st.Delete(boltdb.Key(old.Status, old.ID)); err != nil {
			return err
		}
		if err := ss.Put(boltdb.Key(p.SellerID, p.Status, p.ID), nil); err != nil {
			return err
		}
		if err := st.Put(boltdb.Key(p.Status, p.ID), nil); err != nil {
			return err
		}
	}
	if old.Price != p.Price {
		pr := tx.Bucket(byPrice)
		if err := pr.Delete(priceKey(old.Price.Currency, old.Price.Amount, old.ID)); err != nil {
			return err
		}
		if err := pr.Put(priceKey(p.Price.Currency, p.Price.Amount, p.ID), nil); err != nil {
			return err
		}
	}
	return nil
}

// CountBySeller counts a seller's publications (of one status, if status is
// set) by walking the seller's index range; no publication is read.
func (s *Store) CountBySeller(sellerID, status string) (int64, error) {
	bucket, p := bySeller, boltdb.Prefix(sellerID)
	if status != "" {
		bucket, p = bySellerStatus, boltdb.Prefix(sellerID, status)
	}
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			n++
		}
		return nil
	})
	return n, err
}

func getPublication(tx *bolt.Tx, id string) (publication.Publication, error) {
	raw := tx.Bucket(publicationsBucket).Get([]byte(id))
	if raw == nil {
		return publication.Publication{}, publication.NotFound("publication", id)
	}
	return decodePublication(raw)
}

// decodePublication decodes a publications bucket value; json.Unmarshal
// copies out of the mmap'd value before the tx ends.
func decodePublication(raw []byte) (publication.Publication, error) {
	var rec publicationRecord
	err := json.Unmarshal(raw, &rec)
	return publication.Publication(rec), err
}

func putPublication(tx *bolt.Tx, p publication.Publication) error {
	return putJSON(tx.Bucket(publicationsBucket), []byte(p.ID), publicationRecord(p))
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}
