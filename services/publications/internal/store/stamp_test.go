package store_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/services/publications/internal/store"
)

// rawOutbox returns the store's outbox values, oldest first, as stored.
func rawOutbox(t *testing.T, s *store.Store) [][]byte {
	t.Helper()
	var raws [][]byte
	err := s.Bolt().View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("events.outbox")).ForEach(func(_, v []byte) error {
			raws = append(raws, bytes.Clone(v))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return raws
}

// The events a write appends carry the IDs and time of the stamp its
// caller prepared before the transaction: the first the stamp's own ID, the
// next ones IDs derived from it. Nothing is generated in the transaction, so
// the same prepared writes applied again write the same bytes.
func TestWritesAppendTheEventsTheirStampsName(t *testing.T) {
	a, b := newPub(spec{seller: "s1", product: "x", qty: 5}), newPub(spec{seller: "s2", product: "x", qty: 2})
	createA, createB := store.NewStamp(t0), store.NewStamp(t0)
	reserve, closing := store.NewStamp(t0.Add(time.Second)), store.NewStamp(t0.Add(time.Minute))
	apply := func() [][]byte {
		s := newStore(t)
		if err := s.Create(a, createA); err != nil {
			t.Fatal(err)
		}
		if err := s.Create(b, createB); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Reserve("r1", a.ID, 1, time.Minute, reserve); err != nil {
			t.Fatal(err)
		}
		err := s.Bolt().Update(func(tx *bolt.Tx) error {
			closed, err := s.CloseProduct(tx, "x", t0, closing)
			if err == nil && len(closed) != 2 {
				t.Errorf("closed %d publications, want 2", len(closed))
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return rawOutbox(t, s)
	}

	first, again := apply(), apply()
	if len(first) != 5 || len(again) != len(first) {
		t.Fatalf("outboxes of %d and %d events, want 5", len(first), len(again))
	}
	for i := range first {
		if !bytes.Equal(first[i], again[i]) {
			t.Errorf("event %d: %s, then %s", i, first[i], again[i])
		}
	}

	evs := make([]events.Event, len(first))
	for i, raw := range first {
		if err := json.Unmarshal(raw, &evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []store.Stamp{createA, createB, reserve, closing} {
		if evs[i].ID != want.EventID || !evs[i].Time.Equal(want.At) {
			t.Errorf("event %d is %s at %v, want the stamp's %s at %v", i, evs[i].ID, evs[i].Time, want.EventID, want.At)
		}
	}
	derived := evs[4]
	if _, err := ulid.ParseStrict(derived.ID); err != nil || derived.ID == closing.EventID || !derived.Time.Equal(closing.At) {
		t.Errorf("the close's second event is %s at %v (%v), want an ID of its own derived from %s, at %v",
			derived.ID, derived.Time, err, closing.EventID, closing.At)
	}
}

// A write made in answer to a delivered event is stamped from the event
// alone: its time, and an ID of its own that the same event always gives.
func TestStampForADeliveredEvent(t *testing.T) {
	ev := events.Event{ID: ulid.Make().String(), Topic: productsrpc.TopicProductDeleted, Time: t0}
	st := store.StampFor(ev)
	if _, err := ulid.ParseStrict(st.EventID); err != nil || st.EventID == ev.ID || !st.At.Equal(t0) {
		t.Fatalf("StampFor = %+v (%v), want a ULID other than %s, at %v", st, err, ev.ID, t0)
	}
	if again := store.StampFor(ev); again != st {
		t.Fatalf("StampFor again = %+v, want %+v", again, st)
	}
	other := ev
	other.ID = ulid.Make().String()
	if store.StampFor(other).EventID == st.EventID {
		t.Fatal("two events gave the same event ID")
	}
}
