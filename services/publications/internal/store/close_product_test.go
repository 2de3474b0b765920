package store_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/services/publications/internal/publication"
	"github.com/marketmesh/marketmesh/services/publications/internal/store"
)

// closeProduct applies product.deleted for productID in its own transaction,
// as the events consumer does in the one that records the event.
func closeProduct(s *store.Store, productID string, now time.Time) ([]publication.Publication, error) {
	var closed []publication.Publication
	err := s.Bolt().Update(func(tx *bolt.Tx) error {
		var err error
		closed, err = s.CloseProduct(tx, productID, now, store.NewStamp(now))
		return err
	})
	return closed, err
}

func TestCloseProductClosesItsPublicationsOnly(t *testing.T) {
	s := newStore(t)
	active := mustCreate(t, s, spec{seller: "s1", product: "x", title: "Brass lamp", qty: 5})
	paused := mustCreate(t, s, spec{seller: "s2", product: "x", title: "Brass lamp, used", qty: 2, status: publicationsrpc.StatusPaused})
	closedBefore := mustCreate(t, s, spec{seller: "s3", product: "x", title: "Old lamp", qty: 1, status: publicationsrpc.StatusClosed})
	other := mustCreate(t, s, spec{seller: "s1", product: "xy", title: "Copper kettle", qty: 3}) // "x" is its prefix
	for _, id := range []string{"r-commit", "r-release"} {
		if _, err := s.Reserve(id, active.ID, 1, time.Minute, store.NewStamp(t0)); err != nil {
			t.Fatal(err)
		}
	}
	before := len(outbox(t, s))
	otherBefore := mustGet(t, s, other.ID)
	at := t0.Add(time.Second)

	t.Run("a failure after an event rolls back the whole transaction", func(t *testing.T) {
		boom := errors.New("disk on fire")
		store.FailAfterEvent(s, boom)
		_, err := closeProduct(s, "x", at)
		store.FailAfterEvent(s, nil)
		if !errors.Is(err, boom) {
			t.Fatalf("CloseProduct = %v, want %v", err, boom)
		}
		if n := len(outbox(t, s)); n != before {
			t.Fatalf("outbox has %d events, want %d", n, before)
		}
		if got := mustGet(t, s, active.ID); got.Status != publicationsrpc.StatusActive {
			t.Fatalf("status %s after a rolled back close", got.Status)
		}
		if err := s.Create(newPub(spec{seller: "s4", product: "x", qty: 1}), store.NewStamp(t0)); err != nil {
			t.Fatalf("a rolled back close still refuses the product: %v", err)
		}
	})
	// The create above is one more publication of x, still active.
	before = len(outbox(t, s))

	closed, err := closeProduct(s, "x", at)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("every open publication of the product is closed, with one event each", func(t *testing.T) {
		if len(closed) != 3 {
			t.Fatalf("closed %d publications, want 3 (active, paused and the one created above)", len(closed))
		}
		evs := outbox(t, s)[before:]
		if len(evs) != len(closed) {
			t.Fatalf("%d events for %d closed publications", len(evs), len(closed))
		}
		for i, p := range closed {
			got := mustGet(t, s, p.ID)
			if got.Status != publicationsrpc.StatusClosed || !got.UpdatedAt.Equal(at) || got.ProductID != "x" {
				t.Errorf("publication %s = %+v", p.ID, got)
			}
			if pc := payload(t, evs[i]); pc != changedOf(got) {
				t.Errorf("event %d = %+v, want %+v", i, pc, changedOf(got))
			}
		}
		if ids := []string{closed[0].ID, closed[1].ID}; !slices.Equal(ids, []string{active.ID, paused.ID}) {
			t.Errorf("closed %v first, want %v", ids, []string{active.ID, paused.ID})
		}
		if got := mustGet(t, s, closedBefore.ID); !got.UpdatedAt.Equal(t0) {
			t.Errorf("the publication closed before was written again: %+v", got)
		}
		if got := mustGet(t, s, active.ID); got.Quantity != 3 || got.Reserved != 2 {
			t.Errorf("closing moved stock: quantity %d reserved %d, want 3 and 2", got.Quantity, got.Reserved)
		}
		checkIndexes(t, s)
	})
	t.Run("another product's publications are untouched", func(t *testing.T) {
		if got := mustGet(t, s, other.ID); got != otherBefore {
			t.Fatalf("%+v, was %+v", got, otherBefore)
		}
		if _, err := s.Reserve("r-other", other.ID, 1, time.Minute, store.NewStamp(t0)); err != nil {
			t.Fatalf("reserving another product's publication = %v", err)
		}
		if err := s.Create(newPub(spec{seller: "s4", product: "xy", qty: 1}), store.NewStamp(t0)); err != nil {
			t.Fatalf("creating on another product = %v", err)
		}
	})
	t.Run("the product's stock is no longer reservable, held reservations still settle", func(t *testing.T) {
		if _, err := s.Reserve("r-late", active.ID, 1, time.Minute, store.NewStamp(t0)); !errors.Is(err, publication.ErrNotAvailable) {
			t.Fatalf("Reserve on a closed publication = %v, want ErrNotAvailable", err)
		}
		if r, err := s.Commit("r-commit", store.NewStamp(t0)); err != nil || r.Status != publicationsrpc.ReservationCommitted {
			t.Fatalf("Commit = %+v, %v", r, err)
		}
		if r, err := s.Release("r-release", store.NewStamp(t0)); err != nil || r.Status != publicationsrpc.ReservationReleased {
			t.Fatalf("Release = %+v, %v", r, err)
		}
		got := mustGet(t, s, active.ID)
		if got.Status != publicationsrpc.StatusClosed || got.Quantity != 4 || got.Reserved != 0 {
			t.Fatalf("after settling: %+v", got)
		}
		ps, _, err := s.Search(mustSearch(t, publicationsrpc.SearchRequest{ProductID: "x", Status: publicationsrpc.StatusActive}))
		if err != nil || len(ps) != 0 {
			t.Fatalf("active publications of x = %v, %v", idsOf(ps), err)
		}
	})
	t.Run("a new publication of the deleted product is refused", func(t *testing.T) {
		if err := s.Create(newPub(spec{seller: "s5", product: "x", qty: 1}), store.NewStamp(t0)); !errors.Is(err, publication.ErrInvalid) {
			t.Fatalf("Create = %v, want ErrInvalid", err)
		}
	})
	t.Run("applying it again closes nothing and writes no event", func(t *testing.T) {
		n, was := len(outbox(t, s)), mustGet(t, s, active.ID)
		again, err := closeProduct(s, "x", at.Add(time.Hour))
		if err != nil || len(again) != 0 {
			t.Fatalf("CloseProduct again = %d closed, %v", len(again), err)
		}
		if m := len(outbox(t, s)); m != n {
			t.Fatalf("%d more events", m-n)
		}
		if got := mustGet(t, s, active.ID); got != was {
			t.Fatalf("a closed publication was written again: %+v, was %+v", got, was)
		}
	})
}

func TestCloseProductWithoutPublications(t *testing.T) {
	s := newStore(t)
	closed, err := closeProduct(s, "nothing-listed", t0)
	if err != nil || len(closed) != 0 {
		t.Fatalf("CloseProduct = %d, %v", len(closed), err)
	}
	if n := len(outbox(t, s)); n != 0 {
		t.Fatalf("%d events", n)
	}
	if err := s.Create(newPub(spec{seller: "s1", product: "nothing-listed", qty: 1}), store.NewStamp(t0)); !errors.Is(err, publication.ErrInvalid) {
		t.Fatalf("Create on a deleted product = %v, want ErrInvalid", err)
	}
}
