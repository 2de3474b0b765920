package handler_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/meshtest"
	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/plugins/service"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
	"github.com/marketmesh/marketmesh/services/products/internal/handler"
	"github.com/marketmesh/marketmesh/services/products/internal/store"
)

// TestOverRPC runs the service as main wires it (handler, events consumer,
// readiness check, view flusher) on a real go-micro server registered in a
// real Consul, and calls it through the typed client: endpoint names, the
// JSON form of every contract type, caller metadata and error codes all
// cross the wire.
func TestOverRPC(t *testing.T) {
	agent := meshtest.Consul(t)
	mesh := config.Defaults()
	mesh.Consul.Address = agent.Addr
	mesh.Consul.CheckInterval = config.Duration(time.Second)
	mesh.RPC.RequestTimeout = config.Duration(2 * time.Second)
	mesh.Log.Level = "error"
	mesh.DataDir = t.TempDir()

	db, err := store.Open(filepath.Join(t.TempDir(), "products.db"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New("products", mesh, config.Server{Address: "127.0.0.1:0"}, service.DrainDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Handle(handler.New(db, &countingNotifier{})); err != nil {
		t.Fatal(err)
	}
	consumer := events.NewConsumer(db.Bolt())
	consumer.On(publicationsrpc.TopicPublicationChanged, handler.PublicationChanged)
	if err := consumer.Attach(svc); err != nil {
		t.Fatal(err)
	}
	svc.Health().Add("bbolt", db.Check)
	svc.Go(db.ViewFlusher(50 * time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return")
		}
		if err := db.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
	})
	entries := agent.WaitPassing(t, productsrpc.Service, 1, 15*time.Second)
	if got := entries[0].Service.Meta[events.SubscribesKey]; got != publicationsrpc.TopicPublicationChanged {
		t.Errorf("registry metadata %s = %q", events.SubscribesKey, got)
	}

	c := productsrpc.NewClient(agent.Caller(t, svcauth.API)) // users act through the api
	alice := as("alice")
	p, err := c.Create(alice, productsrpc.CreateRequest{Name: "Pixel 9 Pro", Description: "Google phone", Category: "Electronics/Phones",
		Brand: "Google", Attributes: map[string]string{"storage": "256GB"}})
	if err != nil {
		t.Fatalf("Create = %v", err)
	}
	if p.CreatorID != "alice" || p.Category != "electronics/phones" || p.Attributes["storage"] != "256GB" {
		t.Fatalf("Create = %+v", p)
	}

	codes := []struct {
		name string
		call func() error
		code int32
		says string
	}{
		{"an anonymous create is 401", func() error {
			_, err := c.Create(context.Background(), productsrpc.CreateRequest{Name: "X", Category: "a"})
			return err
		}, 401, "authentication"},
		{"a bad category is 422 naming it", func() error {
			_, err := c.Create(alice, productsrpc.CreateRequest{Name: "X", Category: "a b"})
			return err
		}, 422, "category"},
		{"another user's update is 403", func() error {
			name := "Mine now"
			_, err := c.Update(as("mallory"), productsrpc.UpdateRequest{ID: p.ID, Name: &name})
			return err
		}, 403, "creator"},
		{"an unknown product is 404 naming it", func() error {
			_, err := c.Get(context.Background(), productsrpc.GetRequest{ID: "01NOPE"})
			return err
		}, 404, "01NOPE"},
		{"a bad page token is 400", func() error {
			_, err := c.Search(context.Background(), productsrpc.SearchRequest{PageToken: "nope"})
			return err
		}, 400, "page_token"},
	}
	for _, tc := range codes {
		t.Run(tc.name, func(t *testing.T) {
			var me *merrors.Error
			if err := tc.call(); !errors.As(err, &me) || me.Code != tc.code || !strings.Contains(me.Detail, tc.says) {
				t.Fatalf("err = %v, want %d mentioning %q", err, tc.code, tc.says)
			}
		})
	}

	// A publication event, delivered as its producer's relay would: as publications.
	payload, _ := json.Marshal(publicationsrpc.PublicationChanged{PublicationID: "pub1", ProductID: p.ID, SellerID: "alice",
		Price: money.Money{Amount: 74900, Currency: "USD"}, Quantity: 1, Status: publicationsrpc.StatusActive})
	ev := &events.Event{ID: ulid.Make().String(), Topic: publicationsrpc.TopicPublicationChanged, Source: publicationsrpc.Service,
		Time: time.Now().UTC(), Payload: payload}
	cl := agent.Caller(t, svcauth.Publications)
	for i := range 2 {
		var ack events.Ack
		if err := cl.Call(context.Background(), cl.NewRequest(productsrpc.Service, events.Endpoint, ev), &ack); err != nil {
			t.Fatalf("Deliver = %v", err)
		}
		if ack.Duplicate != (i == 1) {
			t.Fatalf("delivery %d: duplicate = %v", i+1, ack.Duplicate)
		}
	}

	lo, hi := int64(70000), int64(80000)
	res, err := c.Search(context.Background(), productsrpc.SearchRequest{Query: "pixel phone", MinPrice: &lo, MaxPrice: &hi, Sort: productsrpc.SortPriceAsc})
	if err != nil {
		t.Fatalf("Search = %v", err)
	}
	if len(res.Items) != 1 || res.Items[0].ID != p.ID ||
		!reflect.DeepEqual(res.Items[0].LowestPrices, []money.Money{{Amount: 74900, Currency: "USD"}}) {
		t.Fatalf("Search = %+v", res)
	}

	for range 3 {
		if _, err := c.Get(context.Background(), productsrpc.GetRequest{ID: p.ID, CountView: true}); err != nil {
			t.Fatal(err)
		}
	}
	meshtest.Eventually(t, 5*time.Second, func() error { // the flusher writes them
		if n := db.PendingViews(); n != 0 {
			return errors.New("views still pending")
		}
		return nil
	})
	if got, err := c.Get(context.Background(), productsrpc.GetRequest{ID: p.ID}); err != nil || got.ViewCount != 3 {
		t.Fatalf("Get = %+v, %v; want 3 views", got, err)
	}

	cats, err := c.Categories(context.Background())
	if err != nil || len(cats.Categories) != 1 || cats.Categories[0].Count != 1 || cats.Categories[0].Children[0].Path != "electronics/phones" {
		t.Fatalf("Categories = %+v, %v", cats, err)
	}
	if err := c.Delete(alice, p.ID); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	if res, _ := c.Search(context.Background(), productsrpc.SearchRequest{}); len(res.Items) != 0 {
		t.Fatalf("after Delete: %+v", res.Items)
	}
}
