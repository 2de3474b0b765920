package handler_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/rpcfake"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
	"github.com/marketmesh/marketmesh/services/publications/internal/handler"
)

// recordingServer records what a consumer attaches.
type recordingServer struct {
	handlers []any
	metadata map[string]string
}

func (r *recordingServer) Handle(h any) error { r.handlers = append(r.handlers, h); return nil }
func (r *recordingServer) SetMetadata(k, v string) {
	if r.metadata == nil {
		r.metadata = map[string]string{}
	}
	r.metadata[k] = v
}
func (r *recordingServer) Go(func(context.Context)) {}

// consumer wires handler.ProductDeleted as main does and returns the
// consumer's RPC handler.
func (f *fixture) consumer(t *testing.T) *events.Events {
	t.Helper()
	c := events.NewConsumer(f.store.Bolt())
	c.On(productsrpc.TopicProductDeleted, handler.ProductDeleted(f.store, f.relay))
	srv := &recordingServer{}
	if err := c.Attach(srv); err != nil {
		t.Fatal(err)
	}
	if got := srv.metadata[events.SubscribesKey]; got != productsrpc.TopicProductDeleted {
		t.Fatalf("announced topics %q, want %q", got, productsrpc.TopicProductDeleted)
	}
	ev, ok := srv.handlers[0].(*events.Events)
	if !ok {
		t.Fatalf("the consumer attached %T", srv.handlers[0])
	}
	return ev
}

func productDeleted(t *testing.T, id, productID string) *events.Event {
	t.Helper()
	payload, err := json.Marshal(productsrpc.ProductDeleted{ProductID: productID, DeletedAt: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return &events.Event{ID: id, Topic: productsrpc.TopicProductDeleted, Source: productsrpc.Service, Time: time.Now(), Payload: payload}
}

func TestProductDeletedClosesTheProductsPublications(t *testing.T) {
	f := newFixture(t)
	consumer := f.consumer(t)
	mine := f.create(t, "s1", createReq("Lamp", 1000, 5))
	theirs := f.create(t, "s2", createReq("Lamp, used", 700, 2))
	var paused publicationsrpc.Publication
	if err := f.h.Update(as("s2"), &publicationsrpc.UpdateRequest{ID: theirs.ID, Status: ptr(publicationsrpc.StatusPaused)}, &paused); err != nil {
		t.Fatal(err)
	}
	otherReq := createReq("Kettle", 300, 4)
	otherReq.ProductID = "prod-2"
	other := f.create(t, "s1", otherReq)
	var held publicationsrpc.Reservation
	if err := f.h.Reserve(fromOrders(), &publicationsrpc.ReserveRequest{ReservationID: "r1", PublicationID: mine.ID, Quantity: 2, TTLSeconds: 60}, &held); err != nil {
		t.Fatal(err)
	}
	before, notified := len(f.outbox(t)), f.relay.n.Load()

	ev := productDeleted(t, ulid.Make().String(), "prod-1")
	var ack events.Ack
	if err := consumer.Deliver(fromProducts(), ev, &ack); err != nil || ack.Duplicate {
		t.Fatalf("Deliver = %v, %+v", err, ack)
	}

	t.Run("every publication of the product is closed, each with its event", func(t *testing.T) {
		for _, id := range []string{mine.ID, theirs.ID} {
			if got := f.get(t, id); got.Status != publicationsrpc.StatusClosed {
				t.Errorf("publication %s is %s", id, got.Status)
			}
		}
		evs := f.outbox(t)[before:]
		if len(evs) != 2 {
			t.Fatalf("%d events, want 2", len(evs))
		}
		for _, e := range evs {
			var pc publicationsrpc.PublicationChanged
			if err := e.Decode(&pc); err != nil {
				t.Fatal(err)
			}
			if e.Topic != publicationsrpc.TopicPublicationChanged || pc.ProductID != "prod-1" || pc.Status != publicationsrpc.StatusClosed {
				t.Errorf("event %s %+v", e.Topic, pc)
			}
		}
		if n := f.relay.n.Load() - notified; n != 1 {
			t.Errorf("relay woken %d times, want once after the commit", n)
		}
	})
	t.Run("another product's publication is untouched", func(t *testing.T) {
		if got := f.get(t, other.ID); got != other {
			t.Fatalf("%+v, was %+v", got, other)
		}
	})
	t.Run("the closed stock is not reservable; the held reservation still commits", func(t *testing.T) {
		err := f.h.Reserve(fromOrders(), &publicationsrpc.ReserveRequest{ReservationID: "r2", PublicationID: mine.ID, Quantity: 1, TTLSeconds: 60}, &publicationsrpc.Reservation{})
		rpcfake.RequireCode(t, err, "publication_unavailable", 409)
		var r publicationsrpc.Reservation
		if err := f.h.Commit(fromOrders(), &publicationsrpc.ReservationRequest{ReservationID: "r1"}, &r); err != nil || r.Status != publicationsrpc.ReservationCommitted {
			t.Fatalf("Commit = %+v, %v", r, err)
		}
	})
	t.Run("the seller cannot reopen a publication of a deleted product", func(t *testing.T) {
		microErr(t, f.h.Update(as("s1"), &publicationsrpc.UpdateRequest{ID: mine.ID, Status: ptr(publicationsrpc.StatusActive)}, &publicationsrpc.Publication{}), 409)
	})
	t.Run("a new publication of the deleted product is 422, whatever products said", func(t *testing.T) {
		// The fake products service still knows prod-1: the answer may
		// have come just before the delete.
		me := microErr(t, f.h.Create(as("s3"), createReq("Late lamp", 900, 1), &publicationsrpc.Publication{}), 422)
		if me.Detail == "" {
			t.Error("no detail")
		}
	})
	t.Run("a redelivery is a duplicate and does nothing", func(t *testing.T) {
		n, woken := len(f.outbox(t)), f.relay.n.Load()
		var ack events.Ack
		if err := consumer.Deliver(fromProducts(), ev, &ack); err != nil || !ack.Duplicate {
			t.Fatalf("Deliver again = %v, %+v", err, ack)
		}
		if len(f.outbox(t)) != n || f.relay.n.Load() != woken {
			t.Fatal("a redelivery wrote events or woke the relay")
		}
	})
	t.Run("another event for the same product closes nothing more", func(t *testing.T) {
		n, woken := len(f.outbox(t)), f.relay.n.Load()
		var ack events.Ack
		if err := consumer.Deliver(fromProducts(), productDeleted(t, ulid.Make().String(), "prod-1"), &ack); err != nil || ack.Duplicate {
			t.Fatalf("Deliver = %v, %+v", err, ack)
		}
		if len(f.outbox(t)) != n || f.relay.n.Load() != woken {
			t.Fatal("a second product.deleted wrote events or woke the relay")
		}
	})
}

func TestProductDeletedThatCannotApplyIsAcknowledged(t *testing.T) {
	f := newFixture(t)
	consumer := f.consumer(t)
	p := f.create(t, "s1", createReq("Lamp", 1000, 5))
	before := len(f.outbox(t))
	for name, ev := range map[string]*events.Event{
		"an undecodable payload": {ID: ulid.Make().String(), Topic: productsrpc.TopicProductDeleted, Source: productsrpc.Service, Payload: json.RawMessage(`"nope"`)},
		"no product ID":          productDeleted(t, ulid.Make().String(), ""),
		"an unknown product":     productDeleted(t, ulid.Make().String(), "prod-9"),
	} {
		t.Run(name, func(t *testing.T) {
			var ack events.Ack
			if err := consumer.Deliver(fromProducts(), ev, &ack); err != nil {
				t.Fatalf("Deliver = %v, want an acknowledgement", err)
			}
		})
	}
	if got := f.get(t, p.ID); got.Status != publicationsrpc.StatusActive || len(f.outbox(t)) != before {
		t.Fatalf("publication %+v, %d new events", got, len(f.outbox(t))-before)
	}
}

// fromProducts is the context of a call proven to come from products, the
// publisher of product.deleted, as the server wrapper makes it.
func fromProducts() context.Context {
	return svcauth.WithPolicy(svcauth.WithCaller(context.Background(), productsrpc.Service), svcauth.Mesh)
}
