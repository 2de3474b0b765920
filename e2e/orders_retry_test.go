package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	grpcclient "github.com/go-micro/plugins/v4/client/grpc"
	"go-micro.dev/v4/client"

	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/plugins/service"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
)

// TestALostReplyRetriedMakesOneOrder drops the reply of a checkout after the
// order was made (fault point drop_reply: the order exists, its answer never
// arrives, as when a connection drops). Neither a client retrying with its
// Idempotency-Key nor go-micro's own retry (a plain go-micro client with
// retries on, which resends a call that timed out) makes a second order,
// reservation or charge.
func TestALostReplyRetriedMakesOneOrder(t *testing.T) {
	m := startMesh(t, "ORDERS_FAULT_POINT=drop_reply")
	_, seller := m.signup("lost-seller@example.com")
	buyerID, buyer := m.signup("lost-buyer@example.com")
	pub := m.seedPublication(seller, "Lost reply lamp", 2500, "EUR", 10)

	// Through the api: the first answer is lost (a 5xx), the retry with the
	// same key replays the order.
	// (The api's client stack reports the lost reply as a 503 "timed out".)
	first := m.placeOrder(buyer, orderBody(pub, 2, "tok_visa"), "lamp-1")
	if first.status/100 != 5 {
		t.Fatalf("the dropped reply answered %s, want a 5xx", first)
	}
	retry := m.placeOrder(buyer, orderBody(pub, 2, "tok_visa"), "lamp-1")
	body := expectAnswer(t, "retry with the same key", retry, 201)
	if n := len(m.listOrders(t, buyer, "")); n != 1 {
		t.Fatalf("the buyer has %d orders after a lost reply and a retry, want 1", n)
	}
	if q := m.pubQuantity(t, pub); q != 8 {
		t.Fatalf("quantity %d after one order of 2 from 10, want 8", q)
	}

	// go-micro's own retry: a client with retries on resends the call whose
	// reply timed out, with the same metadata (so the same key). A fresh
	// orders process drops its first reply again.
	orders := m.procs["orders"]
	orders.stop()
	orders.start()
	m.consul.WaitPassing(t, ordersrpc.Service, 1, 30*time.Second)
	mesh := config.Defaults()
	mesh.Consul.Address = m.consul.Addr
	// As the api: a Connect certificate for marketmesh.api (mutual TLS).
	id := m.consul.Identity(t, svcauth.API)
	c := grpcclient.NewClient(
		client.Registry(service.NewRegistry(mesh.Consul, "", "")),
		grpcclient.AuthTLS(id.ClientConfig(ordersrpc.Service)),
		client.ContentType("application/json"),
		client.Retries(3), // go-micro's default RetryOnError retries 408 and 500
		client.RequestTimeout(20*time.Second),
	)
	ctx := rpcmeta.Outgoing(rpcmeta.WithIdempotencyKey(rpcmeta.WithCaller(context.Background(), buyerID), "lamp-2"))
	req := ordersrpc.CreateRequest{
		Items:           []ordersrpc.Item{{PublicationID: pub, Quantity: 3}},
		Payment:         ordersrpc.PaymentMethod{Method: "card", CardToken: "tok_visa"},
		ShippingAddress: ordersrpc.Address{Name: "Ada", Line1: "1 Main St", City: "Paris", PostalCode: "75001", Country: "FR"},
	}
	var o ordersrpc.Order
	if err := c.Call(ctx, c.NewRequest(ordersrpc.Service, "Orders.Create", &req), &o); err != nil {
		t.Fatalf("Orders.Create with go-micro retries: %v", err)
	}
	if o.Status != ordersrpc.StatusPaid || o.ID == body["id"] {
		t.Fatalf("order = %+v", o)
	}
	if n := len(m.listOrders(t, buyer, "")); n != 2 {
		t.Fatalf("the buyer has %d orders, want 2 (one per key)", n)
	}
	if q := m.pubQuantity(t, pub); q != 5 {
		t.Fatalf("quantity %d after orders of 2 and 3 from 10, want 5", q)
	}
	if n := strings.Count(orders.log.String(), "FAULT POINT drop_reply fired"); n != 2 {
		t.Fatalf("the reply was dropped %d times, want 2 (once per orders process)", n)
	}
}
