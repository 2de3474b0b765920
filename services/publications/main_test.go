package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	merrors "go-micro.dev/v4/errors"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/meshtest"
	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/plugins/rpcclient"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/plugins/service"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
)

// Products is a stand-in products service: it knows one product and
// listens to publication.changed, as the real one does.
type Products struct{}

// Get answers the known product, 404 otherwise.
func (*Products) Get(_ context.Context, req *productsrpc.GetRequest, rsp *productsrpc.Product) error {
	if req.ID != "prod-1" {
		return merrors.NotFound(productsrpc.Service, "product %s not found", req.ID)
	}
	*rsp = productsrpc.Product{ID: req.ID, Name: "Lamp"}
	return nil
}

// TestServiceOverTheMesh runs the service as main wires it, with a real
// Consul, a stub products service and the typed client: the handler is
// reachable over gRPC/JSON, a product that products does not know is 422,
// stock calls work over the wire, and publication.changed reaches a
// subscriber through the outbox relay.
func TestServiceOverTheMesh(t *testing.T) {
	agent := meshtest.Consul(t)
	mesh := config.Defaults()
	mesh.Consul.Address = agent.Addr
	mesh.Consul.CheckInterval = config.Duration(500 * time.Millisecond)
	mesh.DataDir = t.TempDir()
	mesh.Log.Level = "warn"

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	// The products stub, subscribed to publication.changed.
	prod, err := service.New("products", mesh, config.Server{Address: "127.0.0.1:0", OpsAddress: "127.0.0.1:0"}, service.DrainDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(t.TempDir(), "products.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Update(events.CreateBuckets); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var changes []publicationsrpc.PublicationChanged
	consumer := events.NewConsumer(db)
	consumer.On(publicationsrpc.TopicPublicationChanged, func(_ context.Context, _ *bolt.Tx, ev events.Event) error {
		var pc publicationsrpc.PublicationChanged
		if err := ev.Decode(&pc); err != nil {
			return err
		}
		mu.Lock()
		changes = append(changes, pc)
		mu.Unlock()
		return nil
	})
	if err := prod.Handle(&Products{}); err != nil {
		t.Fatal(err)
	}
	if err := consumer.Attach(prod); err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		if err := prod.Run(ctx); err != nil {
			t.Errorf("products stub: %v", err)
		}
	})

	var cfg Config
	cfg.Mesh = mesh
	cfg.Publications.Server = config.Server{Address: "127.0.0.1:0", OpsAddress: "127.0.0.1:0"}
	cfg.Publications.DBPath = "publications/publications.db"
	cfg.Publications.MaxReservationTTL = config.Duration(time.Minute)
	cfg.Publications.ExpirySweep = config.Duration(100 * time.Millisecond)
	wg.Go(func() {
		if err := serve(ctx, cfg); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	agent.WaitPassing(t, productsrpc.Service, 1, 15*time.Second)
	agent.WaitPassing(t, publicationsrpc.Service, 1, 15*time.Second)

	// Each client proves a service with a certificate from the agent's
	// Connect CA: the api's calls act for users, the stock calls are orders'.
	as := func(svc string) *publicationsrpc.Client {
		return publicationsrpc.NewClient(rpcclient.New(service.NewRegistry(mesh.Consul, "", ""), config.NewLive(mesh.RPC),
			rpcclient.Identity(agent.Identity(t, svc))))
	}
	c, orders := as(svcauth.API), as(ordersrpc.Service)
	seller := rpcmeta.WithCaller(context.Background(), "seller-1")
	code := func(err error) int32 {
		var me *merrors.Error
		if errors.As(err, &me) {
			return me.Code
		}
		return 0
	}

	t.Run("a product products does not know is 422", func(t *testing.T) {
		_, err := c.Create(seller, publicationsrpc.CreateRequest{ProductID: "ghost", Title: "Lamp", Price: money.Money{Amount: 100, Currency: "USD"}, Quantity: 1, Condition: "new"})
		if code(err) != 422 {
			t.Fatalf("err = %v, want 422", err)
		}
	})
	var pub *publicationsrpc.Publication
	t.Run("a known product is listed for the caller", func(t *testing.T) {
		pub, err = c.Create(seller, publicationsrpc.CreateRequest{ProductID: "prod-1", Title: "Brass lamp", Price: money.Money{Amount: 2500, Currency: "USD"}, Quantity: 2, Condition: "new"})
		if err != nil || pub.SellerID != "seller-1" || pub.Status != "active" {
			t.Fatalf("Create = %+v, %v", pub, err)
		}
	})
	if pub == nil {
		t.FailNow()
	}
	t.Run("without a caller Create is 401", func(t *testing.T) {
		if _, err := c.Create(context.Background(), publicationsrpc.CreateRequest{ProductID: "prod-1"}); code(err) != 401 {
			t.Fatalf("err = %v, want 401", err)
		}
	})
	t.Run("stock calls from anyone but orders are 403 over the wire", func(t *testing.T) {
		for who, ctx := range map[string]context.Context{"no caller": context.Background(), "a user": seller} {
			if _, err := c.Reserve(ctx, publicationsrpc.ReserveRequest{ReservationID: "order-0", PublicationID: pub.ID, Quantity: 1, TTLSeconds: 30}); code(err) != 403 {
				t.Errorf("Reserve by %s: %v, want 403", who, err)
			}
		}
		// Not even products, a service publications trusts with its events.
		if _, err := as(svcauth.Products).Reserve(context.Background(), publicationsrpc.ReserveRequest{ReservationID: "order-0", PublicationID: pub.ID, Quantity: 1, TTLSeconds: 30}); code(err) != 403 {
			t.Errorf("Reserve by products: %v, want 403", err)
		}
	})
	t.Run("stock calls work over the wire", func(t *testing.T) {
		r, err := orders.Reserve(context.Background(), publicationsrpc.ReserveRequest{ReservationID: "order-1", PublicationID: pub.ID, Quantity: 2, TTLSeconds: 30})
		if err != nil || r.Status != "held" || r.Title != "Brass lamp" || r.SellerID != "seller-1" || r.ProductID != "prod-1" || r.UnitPrice != (money.Money{Amount: 2500, Currency: "USD"}) {
			t.Fatalf("Reserve = %+v, %v, want held with the publication's snapshot", r, err)
		}
		_, err = orders.Reserve(context.Background(), publicationsrpc.ReserveRequest{ReservationID: "order-2", PublicationID: pub.ID, Quantity: 1, TTLSeconds: 30})
		var me *merrors.Error
		if !errors.As(err, &me) || me.Code != 409 || me.Id != "out_of_stock" {
			t.Fatalf("second Reserve: %v, want 409 out_of_stock", err)
		}
		if r, err := orders.Commit(context.Background(), "order-1"); err != nil || r.Status != "committed" {
			t.Fatalf("Commit = %+v, %v", r, err)
		}
		got, err := c.Get(context.Background(), pub.ID)
		if err != nil || got.Quantity != 0 || got.Reserved != 0 {
			t.Fatalf("Get = %+v, %v", got, err)
		}
		if r, err := orders.Restock(context.Background(), "order-1"); err != nil || r.Status != "restocked" {
			t.Fatalf("Restock = %+v, %v", r, err)
		}
		if got, err := c.Get(context.Background(), pub.ID); err != nil || got.Quantity != 2 || got.Reserved != 0 {
			t.Fatalf("after Restock: Get = %+v, %v", got, err)
		}
		page, err := c.Search(context.Background(), publicationsrpc.SearchRequest{Query: "lamp"})
		if err != nil || len(page.Items) != 1 {
			t.Fatalf("Search = %+v, %v", page, err)
		}
	})
	t.Run("publication.changed reaches the subscriber", func(t *testing.T) {
		meshtest.Eventually(t, 15*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			// create (quantity 2), reserve (quantity 0), restock (quantity 2)
			if len(changes) < 3 {
				return fmt.Errorf("%d events delivered", len(changes))
			}
			first, reserved, last := changes[0], changes[1], changes[len(changes)-1]
			if first.PublicationID != pub.ID || first.Quantity != 2 || reserved.Quantity != 0 || last.Quantity != 2 || last.Status != "active" {
				return fmt.Errorf("delivered %+v", changes)
			}
			return nil
		})
	})
}
