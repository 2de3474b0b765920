// Package store keeps orders, carts, idempotency records and received
// webhook IDs in the orders service's bbolt file. Every order change runs
// in one transaction with what must go with it: the outbox event, the
// indexes, the cart, the idempotency record.
package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/plugins/boltdb"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/services/orders/internal/order"
)

// The schema: every bucket of the orders database (the payment sandbox
// adds its own ledger buckets, and plugins/events its outbox).
var (
	ordersBucket   = []byte("orders")           // order ID → order.Order JSON
	byBuyerBucket  = []byte("orders.by_buyer")  // buyer \0 order ID → nil
	bySellerBucket = []byte("orders.by_seller") // seller \0 order ID → nil (paid or later)
	activeBucket   = []byte("orders.active")    // order ID → nil, while its saga has work left
	cartsBucket    = []byte("carts")            // user ID → order.Cart JSON
	idemBucket     = []byte("idempotency")      // user \0 key → Idempotency JSON
	idemTimeBucket = []byte("idempotency.by_time")
	webhookBucket  = []byte("webhooks.seen") // provider event ID → received-at (RFC 3339)
)

func createBuckets(tx *bolt.Tx) error {
	for _, b := range [][]byte{ordersBucket, byBuyerBucket, bySellerBucket, activeBucket, cartsBucket, idemBucket, idemTimeBucket, webhookBucket} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return events.CreateBuckets(tx)
}

// Store is the orders database.
type Store struct {
	db  *bolt.DB
	now func() time.Time
}

// Open opens (creating if needed) the database at path.
func Open(path string) (*Store, error) {
	db, err := boltdb.Open(path, createBuckets)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &Store{db: db, now: func() time.Time { return time.Now().UTC() }}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Bolt exposes the handle for the events relay and the payment sandbox.
func (s *Store) Bolt() *bolt.DB { return s.db }

// Check is the readiness check.
func (s *Store) Check(context.Context) error { return boltdb.CheckBucket(s.db, ordersBucket) }

// Idempotency records one request made with an Idempotency-Key.
type Idempotency struct {
	User     string          `json:"user"`
	Key      string          `json:"key"`
	Endpoint string          `json:"endpoint"`
	Hash     string          `json:"hash"` // of endpoint and request
	OrderID  string          `json:"order_id"`
	Done     bool            `json:"done"`
	Response json.RawMessage `json:"response,omitempty"` // the first answer, replayed
	Created  time.Time       `json:"created"`
}

// ErrIdempotencyExists is returned (wrapped in *IdempotencyExists) when a
// key is recorded already.
var ErrIdempotencyExists = errors.New("idempotency key exists")

// IdempotencyExists carries the existing record.
type IdempotencyExists struct{ Record Idempotency }

func (e *IdempotencyExists) Error() string        { return "idempotency key " + e.Record.Key + " exists" }
func (e *IdempotencyExists) Is(target error) bool { return target == ErrIdempotencyExists }

// Tx is an order transaction: what an order change may do beside it.
type Tx struct {
	tx     *bolt.Tx
	events int
}

// Emit appends an event to the outbox in this transaction, with the ID and
// time its caller decided before the transaction (a ULID of its own, and
// the time of the change), so a transaction function that runs again
// writes the same event.
func (t *Tx) Emit(id string, at time.Time, topic string, payload any) error {
	ev, err := events.NewEvent(id, at, ordersrpc.Service, topic, payload)
	if err != nil {
		return err
	}
	if _, err := events.AppendEvent(t.tx, ev); err != nil {
		return err
	}
	t.events++
	return nil
}

// BeginIdempotency records a running request; it fails with
// *IdempotencyExists if the key is taken.
func (t *Tx) BeginIdempotency(rec Idempotency) error {
	b := t.tx.Bucket(idemBucket)
	k := boltdb.Key(rec.User, rec.Key)
	if raw := b.Get(k); raw != nil {
		var old Idempotency
		if err := json.Unmarshal(raw, &old); err != nil {
			return err
		}
		return &IdempotencyExists{Record: old}
	}
	if err := putJSON(b, k, rec); err != nil {
		return err
	}
	return t.tx.Bucket(idemTimeBucket).Put(timeKey(rec.Created, k), nil)
}

// running reads a user's record for key if it is still running.
func (t *Tx) running(user, key string) (Idempotency, []byte, bool, error) {
	var rec Idempotency
	k := boltdb.Key(user, key)
	raw := t.tx.Bucket(idemBucket).Get(k)
	if key == "" || raw == nil {
		return rec, k, false, nil // no key, or pruned
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		return rec, k, false, err
	}
	return rec, k, !rec.Done, nil
}

// FinishIdempotency stores the answer of a running request; a record that is
// done already keeps its first answer.
func (t *Tx) FinishIdempotency(user, key string, response any) error {
	rec, k, ok, err := t.running(user, key)
	if err != nil || !ok {
		return err
	}
	body, err := json.Marshal(response)
	if err != nil {
		return err
	}
	rec.Done, rec.Response = true, body
	return putJSON(t.tx.Bucket(idemBucket), k, rec)
}

// ReleaseIdempotency forgets a running request's key, so the same key may
// be used again (its request failed with nothing done). A finished record
// is kept.
func (t *Tx) ReleaseIdempotency(user, key string) error {
	_, k, ok, err := t.running(user, key)
	if err != nil || !ok {
		return err
	}
	return t.tx.Bucket(idemBucket).Delete(k)
}

// Settle finishes a running request's key with response, or releases it
// when the order failed with nothing done and may be retried.
func (t *Tx) Settle(o *order.Order, user, key string, response any) error {
	if o.Retryable() {
		return t.ReleaseIdempotency(user, key)
	}
	return t.FinishIdempotency(user, key, response)
}

// CartBought removes from the buyer's cart the lines o paid for.
func (t *Tx) CartBought(o *order.Order, now time.Time) error {
	b := t.tx.Bucket(cartsBucket)
	var c order.Cart
	if raw := b.Get([]byte(o.BuyerID)); raw != nil {
		if err := json.Unmarshal(raw, &c); err != nil {
			return err
		}
	}
	c.Bought(o, now)
	return putJSON(b, []byte(o.BuyerID), c)
}

// Create stores a new order (and its idempotency record, if any) in one
// transaction.
func (s *Store) Create(o order.Order, idem *Idempotency) error {
	return s.db.Batch(func(btx *bolt.Tx) error {
		t := &Tx{tx: btx}
		if idem != nil {
			if err := t.BeginIdempotency(*idem); err != nil {
				return err
			}
		}
		if btx.Bucket(ordersBucket).Get([]byte(o.ID)) != nil {
			return fmt.Errorf("store: order %s exists", o.ID)
		}
		if err := btx.Bucket(byBuyerBucket).Put(boltdb.Key(o.BuyerID, o.ID), nil); err != nil {
			return err
		}
		return s.put(btx, nil, &o)
	})
}

// put writes o and keeps the active and seller indexes in step with it.
func (s *Store) put(tx *bolt.Tx, before, o *order.Order) error {
	if o.Step == order.StepDone {
		if err := tx.Bucket(activeBucket).Delete([]byte(o.ID)); err != nil {
			return err
		}
	} else if err := tx.Bucket(activeBucket).Put([]byte(o.ID), nil); err != nil {
		return err
	}
	if o.PaidAt != nil && (before == nil || before.PaidAt == nil) {
		for _, seller := range o.SellerIDs() {
			if err := tx.Bucket(bySellerBucket).Put(boltdb.Key(seller, o.ID), nil); err != nil {
				return err
			}
		}
	}
	return putJSON(tx.Bucket(ordersBucket), []byte(o.ID), o)
}

// Get reads one order.
func (s *Store) Get(id string) (order.Order, error) {
	var o order.Order
	err := s.db.View(func(tx *bolt.Tx) error { return getOrder(tx, id, &o) })
	return o, err
}

func getOrder(tx *bolt.Tx, id string, o *order.Order) error {
	raw := tx.Bucket(ordersBucket).Get([]byte(id))
	if raw == nil {
		return order.NotFound("order %s not found", id)
	}
	return json.Unmarshal(raw, o)
}

// Update loads the order, lets fn change it inside the transaction (fn may
// emit events and touch idempotency records through t), and saves it. An
// error from fn rolls everything back. fn may run more than once (batched
// transactions retry), so it must only decide from o, t and what its caller
// decided before the transaction (the time, event IDs): it generates none.
func (s *Store) Update(id string, fn func(o *order.Order, t *Tx) error) (order.Order, error) {
	var out order.Order
	err := s.db.Batch(func(btx *bolt.Tx) error {
		var o order.Order
		if err := getOrder(btx, id, &o); err != nil {
			return err
		}
		before := o
		t := &Tx{tx: btx}
		if err := fn(&o, t); err != nil {
			return err
		}
		out = o
		return s.put(btx, &before, &o)
	})
	return out, err
}

// Active lists the orders whose saga has work left (or awaits the payment
// provider), oldest first.
func (s *Store) Active() ([]string, error) {
	var ids []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(activeBucket).ForEach(func(k, _ []byte) error {
			ids = append(ids, string(k))
			return nil
		})
	})
	return ids, err
}

// ErrBadPageToken is a page token this store did not make.
var ErrBadPageToken = errors.New("page_token is not valid")

// List pages the orders of a buyer or a seller, newest first (order IDs are
// ULIDs, so key order is time order).
func (s *Store) List(role, user string, size int, token string) ([]order.Order, string, error) {
	idx := byBuyerBucket
	if role == ordersrpc.RoleSeller {
		idx = bySellerBucket
	}
	prefix := boltdb.Prefix(user)
	var after []byte
	if token != "" {
		id, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil || len(id) == 0 || len(id) > 64 {
			return nil, "", ErrBadPageToken
		}
		after = append(append([]byte(nil), prefix...), id...)
	}
	var out []order.Order
	next := ""
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(idx).Cursor()
		if after == nil {
			// Every key with the prefix sorts before this one.
			after = append(append([]byte(nil), prefix[:len(prefix)-1]...), 1)
		}
		// The greatest key before after: Seek lands on after or the next key.
		k, _ := c.Seek(after)
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
			if len(out) == size {
				next = base64.RawURLEncoding.EncodeToString([]byte(out[len(out)-1].ID))
				return nil
			}
			var o order.Order
			if err := getOrder(tx, string(k[len(prefix):]), &o); err != nil {
				return err
			}
			out = append(out, o)
		}
		return nil
	})
	return out, next, err
}

// Cart reads a user's cart (empty if none).
func (s *Store) Cart(user string) (order.Cart, error) {
	var c order.Cart
	err := s.db.View(func(tx *bolt.Tx) error {
		if raw := tx.Bucket(cartsBucket).Get([]byte(user)); raw != nil {
			return json.Unmarshal(raw, &c)
		}
		return nil
	})
	return c, err
}

// UpdateCart changes a user's cart in one transaction.
func (s *Store) UpdateCart(user string, fn func(c *order.Cart) error) (order.Cart, error) {
	var out order.Cart
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(cartsBucket)
		var c order.Cart
		if raw := b.Get([]byte(user)); raw != nil {
			if err := json.Unmarshal(raw, &c); err != nil {
				return err
			}
		}
		if err := fn(&c); err != nil {
			return err
		}
		out = c
		return putJSON(b, []byte(user), c)
	})
	return out, err
}

// Idempotency reads a user's record for key.
func (s *Store) Idempotency(user, key string) (Idempotency, bool, error) {
	var rec Idempotency
	found := false
	err := s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(idemBucket).Get(boltdb.Key(user, key))
		if raw == nil {
			return nil
		}
		found = true
		return json.Unmarshal(raw, &rec)
	})
	return rec, found, err
}

// PruneIdempotency deletes records created before cutoff; it returns how many.
func (s *Store) PruneIdempotency(cutoff time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		tb, ib := tx.Bucket(idemTimeBucket), tx.Bucket(idemBucket)
		c := tb.Cursor()
		limit := timeKey(cutoff, nil)
		for k, _ := c.First(); k != nil && bytes.Compare(k, limit) < 0; k, _ = c.First() {
			if err := ib.Delete(k[9:]); err != nil {
				return err
			}
			if err := tb.Delete(k); err != nil {
				return err
			}
			n++
		}
		// Received webhook IDs are kept as long: a provider retries for hours, not days.
		wb := tx.Bucket(webhookBucket)
		var old [][]byte
		err := wb.ForEach(func(k, v []byte) error {
			if t, err := time.Parse(time.RFC3339, string(v)); err == nil && t.Before(cutoff) {
				old = append(old, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range old {
			if err := wb.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// ApplyWebhook records a provider event ID and applies fn to its order in
// the same transaction; duplicate is true (and fn not run) when the event was
// received before.
func (s *Store) ApplyWebhook(eventID, orderID string, fn func(o *order.Order, t *Tx) error) (o order.Order, duplicate bool, err error) {
	err = s.db.Update(func(btx *bolt.Tx) error {
		wb := btx.Bucket(webhookBucket)
		if wb.Get([]byte(eventID)) != nil {
			duplicate = true
			return nil
		}
		if err := wb.Put([]byte(eventID), []byte(s.now().Format(time.RFC3339))); err != nil {
			return err
		}
		if err := getOrder(btx, orderID, &o); errors.Is(err, order.ErrNotFound) {
			o = order.Order{} // not ours: acknowledged and ignored
			return nil
		} else if err != nil {
			return err
		}
		before := o
		if err := fn(&o, &Tx{tx: btx}); err != nil {
			return err
		}
		return s.put(btx, &before, &o)
	})
	return o, duplicate, err
}

// timeKey is an index key that sorts by time: 8 bytes of unix nanos, a
// separator, then k.
func timeKey(t time.Time, k []byte) []byte {
	out := make([]byte, 9, 9+len(k))
	binary.BigEndian.PutUint64(out, uint64(t.UnixNano()))
	return append(out, k...)
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}
