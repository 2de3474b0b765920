package store_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/services/products/internal/product"
	"github.com/marketmesh/marketmesh/services/products/internal/store"
)

// outbox returns the events in the store's outbox, oldest first.
func outbox(t *testing.T, s *store.Store) []events.Event {
	t.Helper()
	evs, err := events.Outbox(s.Bolt())
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestDeleteAppendsProductDeletedInItsTransaction(t *testing.T) {
	s, _ := newStore(t)
	keep := create(t, s, spec{name: "Blue widget", category: "tools/hand"})
	gone := create(t, s, spec{name: "Red widget", category: "tools/power"})
	allow := func(product.Product) error { return nil }

	t.Run("a refused delete writes no event", func(t *testing.T) {
		errNo := errors.New("not yours")
		if err := s.Delete(gone.ID, t0, ulid.Make().String(), func(product.Product) error { return errNo }); !errors.Is(err, errNo) {
			t.Fatalf("a refused delete = %v", err)
		}
		if evs := outbox(t, s); len(evs) != 0 {
			t.Fatalf("outbox = %+v", evs)
		}
	})
	t.Run("a delete that fails after appending its event rolls both back", func(t *testing.T) {
		boom := errors.New("disk on fire")
		store.FailAfterEvent(s, boom)
		err := s.Delete(gone.ID, t0, ulid.Make().String(), allow)
		store.FailAfterEvent(s, nil)
		if !errors.Is(err, boom) {
			t.Fatalf("Delete = %v, want %v", err, boom)
		}
		if evs := outbox(t, s); len(evs) != 0 {
			t.Fatalf("a failed delete left events: %+v", evs)
		}
		if _, err := s.Get(gone.ID, false); err != nil {
			t.Fatalf("the product of a failed delete is gone: %v", err)
		}
		if got := all(t, s, product.Query{Category: "tools"}); !sameSet(got, ids(keep, gone)) {
			t.Fatalf("after a failed delete the category holds %v", got)
		}
	})
	t.Run("a delete that commits has exactly one product.deleted, with the caller's ID and time", func(t *testing.T) {
		eventID := ulid.Make().String()
		if err := s.Delete(gone.ID, t0, eventID, allow); err != nil {
			t.Fatal(err)
		}
		evs := outbox(t, s)
		if len(evs) != 1 || evs[0].Topic != productsrpc.TopicProductDeleted || evs[0].Source != productsrpc.Service {
			t.Fatalf("outbox = %+v, want one %s", evs, productsrpc.TopicProductDeleted)
		}
		if evs[0].ID != eventID || !evs[0].Time.Equal(t0) {
			t.Fatalf("event %s at %v, want %s at %v", evs[0].ID, evs[0].Time, eventID, t0)
		}
		var pd productsrpc.ProductDeleted
		if err := evs[0].Decode(&pd); err != nil {
			t.Fatal(err)
		}
		if pd.ProductID != gone.ID || !pd.DeletedAt.Equal(t0) {
			t.Fatalf("payload = %+v, want product %s deleted at %v", pd, gone.ID, t0)
		}
		var raw map[string]any
		if err := json.Unmarshal(evs[0].Payload, &raw); err != nil {
			t.Fatal(err)
		}
		keys := make([]string, 0, len(raw))
		for k := range raw {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, []string{"deleted_at", "product_id"}) {
			t.Fatalf("payload members = %v, want deleted_at and product_id", keys)
		}
	})
	t.Run("deleting again is not found and writes nothing more", func(t *testing.T) {
		if err := s.Delete(gone.ID, t0, ulid.Make().String(), allow); !errors.Is(err, product.ErrNotFound) {
			t.Fatalf("deleting twice = %v", err)
		}
		if evs := outbox(t, s); len(evs) != 1 {
			t.Fatalf("outbox holds %d events, want 1", len(evs))
		}
	})
}
