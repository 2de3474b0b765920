package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/services/orders/internal/order"
)

func open(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "orders.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func newOrder(t *testing.T, buyer string) order.Order {
	t.Helper()
	o, err := order.New(ulid.Make().String(), buyer, order.Draft{
		Items:   []ordersrpc.Item{{PublicationID: "P1", Quantity: 1}},
		Payment: ordersrpc.PaymentMethod{Method: "card", CardToken: "tok_visa"},
		Address: ordersrpc.Address{Name: "A", Line1: "L", City: "C", PostalCode: "1", Country: "US"},
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestCreateTakesAnIdempotencyKeyOnce(t *testing.T) {
	s, _ := open(t)
	a, b := newOrder(t, "u1"), newOrder(t, "u1")
	rec := Idempotency{User: "u1", Key: "k", Endpoint: "Create", Hash: "h", OrderID: a.ID, Created: time.Now()}
	if err := s.Create(a, &rec); err != nil {
		t.Fatal(err)
	}
	rec.OrderID = b.ID
	err := s.Create(b, &rec)
	var exists *IdempotencyExists
	if !errors.As(err, &exists) || exists.Record.OrderID != a.ID {
		t.Fatalf("second create with the key: %v", err)
	}
	if _, err := s.Get(b.ID); !errors.Is(err, order.ErrNotFound) {
		t.Fatalf("the refused order was stored: %v", err)
	}
	// Another user may use the same key.
	c := newOrder(t, "u2")
	if err := s.Create(c, &Idempotency{User: "u2", Key: "k", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// Finishing stores the first answer only.
	if _, err := s.Update(a.ID, func(o *order.Order, tx *Tx) error { return tx.FinishIdempotency("u1", "k", "first") }); err != nil {
		t.Fatal(err)
	}
	_, _ = s.Update(a.ID, func(o *order.Order, tx *Tx) error { return tx.FinishIdempotency("u1", "k", "second") })
	got, _, _ := s.Idempotency("u1", "k")
	if !got.Done || string(got.Response) != `"first"` {
		t.Fatalf("record = %+v", got)
	}
	// Pruning forgets keys older than the cutoff, not newer ones.
	if n, err := s.PruneIdempotency(time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("prune old: %d, %v", n, err)
	}
	if n, _ := s.PruneIdempotency(time.Now().Add(time.Hour)); n != 2 {
		t.Fatalf("pruned %d, want 2", n)
	}
	if _, found, _ := s.Idempotency("u1", "k"); found {
		t.Fatal("pruned key still found")
	}
}

func TestAFailureWithNothingDoneReleasesItsKey(t *testing.T) {
	s, _ := open(t)
	o := newOrder(t, "u1")
	if err := s.Create(o, &Idempotency{User: "u1", Key: "k", Endpoint: "Create", Hash: "h", OrderID: o.ID, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Update(o.ID, func(o *order.Order, tx *Tx) error {
		o.Fail(ordersrpc.ReasonServiceUnavailable, "publications down", time.Now())
		return tx.Settle(o, "u1", "k", "503")
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, found, _ := s.Idempotency("u1", "k"); found {
		t.Fatal("the key of a retryable failure was kept: a retry would replay it")
	}
	// A declined card is an answer: it is kept and replayed.
	d := newOrder(t, "u1")
	_ = s.Create(d, &Idempotency{User: "u1", Key: "k2", Created: time.Now()})
	_, _ = s.Update(d.ID, func(o *order.Order, tx *Tx) error {
		o.Fail(ordersrpc.ReasonPaymentDeclined, "declined", time.Now())
		return tx.Settle(o, "u1", "k2", "402")
	})
	if rec, found, _ := s.Idempotency("u1", "k2"); !found || !rec.Done || string(rec.Response) != `"402"` {
		t.Fatalf("declined: %+v, found %v", rec, found)
	}
}

func TestUpdateIsAllOrNothingAndKeepsTheActiveAndSellerIndexes(t *testing.T) {
	s, _ := open(t)
	o := newOrder(t, "u1")
	if err := s.Create(o, nil); err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.Active(); len(ids) != 1 {
		t.Fatalf("active = %v", ids)
	}
	boom := errors.New("boom")
	if _, err := s.Update(o.ID, func(o *order.Order, tx *Tx) error {
		o.Reserved(0, order.Snapshot{SellerID: "s1", UnitPrice: money.Money{Amount: 5, Currency: "USD"}}, time.Now())
		if err := tx.Emit(ulid.Make().String(), time.Now(), ordersrpc.TopicOrderPaid, o.Event("", time.Now())); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if got, _ := s.Get(o.ID); got.Lines[0].ReservationStatus != order.ResNone {
		t.Fatal("a failed update was stored")
	}
	_, err := s.Update(o.ID, func(o *order.Order, tx *Tx) error {
		now := time.Now()
		o.Reserved(0, order.Snapshot{SellerID: "s1", UnitPrice: money.Money{Amount: 5, Currency: "USD"}}, now)
		o.ReservationsDone(now)
		o.Charged("sandbox", "ch", ordersrpc.PaymentSucceeded, now)
		o.Committed(0, now)
		o.Paid(now)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.Active(); len(ids) != 0 {
		t.Fatalf("a paid order is still active: %v", ids)
	}
	if got, next, _ := s.List(ordersrpc.RoleSeller, "s1", 10, ""); len(got) != 1 || next != "" {
		t.Fatalf("seller list = %d orders, next %q", len(got), next)
	}
}

// Emit writes the event with the ID and time its caller decided before the
// transaction.
func TestEmitWritesTheCallersIDAndTime(t *testing.T) {
	s, _ := open(t)
	o := newOrder(t, "u1")
	if err := s.Create(o, nil); err != nil {
		t.Fatal(err)
	}
	id, at := ulid.Make().String(), time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	runs := 0
	if _, err := s.Update(o.ID, func(o *order.Order, tx *Tx) error {
		runs++
		return tx.Emit(id, at, ordersrpc.TopicOrderShipped, o.Event("s1", at))
	}); err != nil {
		t.Fatal(err)
	}
	evs, err := events.Outbox(s.Bolt())
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].ID != id || !evs[0].Time.Equal(at) || evs[0].Topic != ordersrpc.TopicOrderShipped || evs[0].Source != ordersrpc.Service {
		t.Fatalf("outbox = %+v (fn ran %d times), want one %s with ID %s at %v", evs, runs, ordersrpc.TopicOrderShipped, id, at)
	}
	// Nothing is made up for a caller that decided no ID.
	if _, err := s.Update(o.ID, func(o *order.Order, tx *Tx) error {
		return tx.Emit("", at, ordersrpc.TopicOrderShipped, o.Event("s1", at))
	}); err == nil {
		t.Fatal("Emit without an ID succeeded")
	}
}

func TestListPagesNewestFirstPerUser(t *testing.T) {
	s, _ := open(t)
	var ids []string
	for range 7 {
		o := newOrder(t, "u1")
		if err := s.Create(o, nil); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, o.ID)
		_ = s.Create(newOrder(t, "u0"), nil) // neighbours on both sides of the prefix
		_ = s.Create(newOrder(t, "u2"), nil)
	}
	var got []string
	token := ""
	for page := 0; ; page++ {
		os, next, err := s.List(ordersrpc.RoleBuyer, "u1", 3, token)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range os {
			got = append(got, o.ID)
		}
		if next == "" {
			break
		}
		if page > 5 {
			t.Fatal("paging does not end")
		}
		token = next
	}
	if len(got) != 7 {
		t.Fatalf("got %d orders: %v", len(got), got)
	}
	for i := range got {
		if got[i] != ids[len(ids)-1-i] {
			t.Fatalf("order %d is %s, want %s (newest first)", i, got[i], ids[len(ids)-1-i])
		}
	}
	if _, _, err := s.List(ordersrpc.RoleBuyer, "u1", 3, "%%%"); !errors.Is(err, ErrBadPageToken) {
		t.Fatalf("bad token: %v", err)
	}
}

func TestAWebhookEventIsAppliedOnce(t *testing.T) {
	s, _ := open(t)
	o := newOrder(t, "u1")
	_ = s.Create(o, nil)
	calls := 0
	apply := func(o *order.Order, _ *Tx) error { calls++; return nil }
	for i := range 3 {
		_, dup, err := s.ApplyWebhook("evt_1", o.ID, apply)
		if err != nil || dup != (i > 0) {
			t.Fatalf("delivery %d: dup %v, %v", i, dup, err)
		}
	}
	if calls != 1 {
		t.Fatalf("applied %d times", calls)
	}
	got, dup, err := s.ApplyWebhook("evt_2", "unknown", apply)
	if err != nil || dup || got.ID != "" || calls != 1 {
		t.Fatalf("event for an unknown order: %+v, %v, %v", got, dup, err)
	}
}

func TestCartsAreKeptPerUser(t *testing.T) {
	s, _ := open(t)
	for i := range 3 {
		if _, err := s.UpdateCart("u1", func(c *order.Cart) error { return c.Set(fmt.Sprintf("P%d", i), 1, time.Now()) }); err != nil {
			t.Fatal(err)
		}
	}
	c1, _ := s.Cart("u1")
	c2, _ := s.Cart("u2")
	if len(c1.Items) != 3 || len(c2.Items) != 0 {
		t.Fatalf("carts: %d and %d lines", len(c1.Items), len(c2.Items))
	}
}
