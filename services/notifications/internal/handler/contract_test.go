package handler_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/contracts/notificationsrpc"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/meshtest"
	"github.com/marketmesh/marketmesh/plugins/rpcclient"
	"github.com/marketmesh/marketmesh/plugins/rpcfake"
	"github.com/marketmesh/marketmesh/plugins/service"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
	"github.com/marketmesh/marketmesh/services/notifications/internal/delivery"
	"github.com/marketmesh/marketmesh/services/notifications/internal/handler"
)

// TestClientMatchesTheHandler checks that every typed client method calls an
// endpoint the handler serves, with the request and response types it takes.
func TestClientMatchesTheHandler(t *testing.T) {
	rc := &rpcfake.Client{}
	c := notificationsrpc.NewClient(rc)
	ctx := context.Background()
	calls := map[string]func() error{
		"List":        func() error { _, err := c.List(ctx, notificationsrpc.PageRequest{}); return err },
		"ForOrder":    func() error { _, err := c.ForOrder(ctx, "ord-1"); return err },
		"DeadLetters": func() error { _, err := c.DeadLetters(ctx, notificationsrpc.PageRequest{}); return err },
		"Retry":       func() error { _, err := c.Retry(ctx, "ntf_1"); return err },
	}
	rpcfake.CheckContract(t, notificationsrpc.Service, "Notifications.", &handler.Notifications{}, rc, calls)
}

// TestTheContractOverTheMesh runs the handler and the events consumer as
// main wires them, on a real go-micro server registered in a real Consul,
// and calls them through the typed client: endpoint names, the JSON form of
// every contract type, the caller in metadata, the api's service credential
// and the error codes all cross the wire.
func TestTheContractOverTheMesh(t *testing.T) {
	agent := meshtest.Consul(t)
	mesh := config.Defaults()
	mesh.Consul.Address = agent.Addr
	mesh.Consul.CheckInterval = config.Duration(500 * time.Millisecond)
	mesh.RPC.RequestTimeout = config.Duration(5 * time.Second)
	mesh.Log.Level = "error"
	mesh.DataDir = agent.DataDir

	s := open(t)
	seeded := &kicks{}
	enqueue(t, s,
		queued("a1", "u-ada", "ord-1", t0),
		queued("b1", "u-bob", "ord-1", t0.Add(time.Second)),
		queued("a2", "u-ada", "ord-2", t0.Add(2*time.Second)),
	)
	malformed := deadLetters(t, s, seeded) // "dead", "sent", "waiting" (u-ada, t0) and a malformed event

	svc, err := service.New("notifications", mesh, config.Server{Address: "127.0.0.1:0"}, service.DrainDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	k := &kicks{}
	if err := svc.Handle(handler.New(s, k.kick)); err != nil {
		t.Fatal(err)
	}
	consumer := events.NewConsumer(s.Bolt())
	handler.Subscribe(consumer, k.kick)
	if err := consumer.Attach(svc, events.FromLatest()); err != nil {
		t.Fatal(err)
	}
	svc.Health().Add("bbolt", s.Check)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { // before the store closes
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not return")
		}
	})
	entries := agent.WaitPassing(t, notificationsrpc.Service, 1, 20*time.Second)
	topics := slices.Sorted(slices.Values(delivery.Topics))
	if got := entries[0].Service.Meta[events.SubscribesKey]; got != strings.Join(topics, ",") {
		t.Errorf("registry metadata %s = %q, want %q", events.SubscribesKey, got, strings.Join(topics, ","))
	}

	// The api proves itself with a Connect certificate; a client without
	// one gets no answer at all, and another service is refused.
	reg := service.NewRegistry(mesh.Consul, "", "")
	api := notificationsrpc.NewClient(rpcclient.New(reg, config.NewLive(mesh.RPC), rpcclient.Identity(agent.Identity(t, svcauth.API))))
	unsigned := notificationsrpc.NewClient(rpcclient.New(reg, config.NewLive(mesh.RPC)))
	peer := notificationsrpc.NewClient(rpcclient.New(reg, config.NewLive(mesh.RPC), rpcclient.Identity(agent.Identity(t, svcauth.Orders))))
	ada := user("u-ada")

	t.Run("List pages the caller's notifications newest first", func(t *testing.T) {
		var got []string
		token := ""
		for range 5 {
			page, err := api.List(ada, notificationsrpc.PageRequest{PageSize: 2, PageToken: token})
			if err != nil {
				t.Fatalf("List = %v", err)
			}
			got = append(got, ids(page.Items)...)
			if token = page.NextPageToken; token == "" {
				break
			}
		}
		// a2 (t0+2s), then a1, dead, sent and waiting at t0, by ID descending.
		if strings.Join(got, ",") != "a2,waiting,sent,dead,a1" {
			t.Errorf("List = %v", got)
		}
		if _, err := unsigned.List(ada, notificationsrpc.PageRequest{PageSize: 1}); !is(err, 503, "") {
			t.Errorf("List without a certificate = %v, want 503: no connection", err)
		}
		page, err := api.List(ada, notificationsrpc.PageRequest{PageSize: 1})
		if err != nil || len(page.Items) != 1 || page.Items[0].ID != "a2" || page.Items[0].CreatedAt.IsZero() ||
			page.Items[0].Status != notificationsrpc.StatusQueued || page.Items[0].OrderID != "ord-2" {
			t.Errorf("List without a service credential = %+v, %v; users' own lists need none", page, err)
		}
	})
	t.Run("ForOrder lists the caller's notifications of that order", func(t *testing.T) {
		rsp, err := api.ForOrder(ada, "ord-1")
		if err != nil || strings.Join(ids(rsp.Items), ",") != "a1,dead" {
			t.Errorf("ForOrder = %+v, %v; want a1 and dead (not bob's b1)", rsp, err)
		}
	})
	t.Run("DeadLetters lists for the api only", func(t *testing.T) {
		page, err := api.DeadLetters(context.Background(), notificationsrpc.PageRequest{})
		if err != nil || len(page.Items) != 2 || page.Items[0].ID != "dead" || page.Items[1].ID != malformed {
			t.Fatalf("DeadLetters = %+v, %v; want dead then the malformed event", page, err)
		}
		if dl := page.Items[0]; dl.UserID != "u-ada" || dl.Provider != "sendgrid" || dl.Attempts != 3 || dl.EventID != "ev-dead" ||
			!dl.FailedAt.Equal(t0.Add(2*time.Minute)) || !strings.Contains(dl.LastError, "gave up after 3 attempts") {
			t.Errorf("dead letter = %+v", dl)
		}
		for name, c := range map[string]*notificationsrpc.Client{"without a certificate": unsigned, "as another service": peer} {
			want := int32(403)
			if c == unsigned {
				want = 503 // the handshake fails: no call
			}
			if _, err := c.DeadLetters(ada, notificationsrpc.PageRequest{}); !is(err, want, "") {
				t.Errorf("DeadLetters %s = %v, want %d", name, err, want)
			}
			if _, err := c.Retry(ada, "dead"); !is(err, want, "") {
				t.Errorf("Retry %s = %v, want %d", name, err, want)
			}
		}
	})
	t.Run("Retry queues a dead letter again, once", func(t *testing.T) {
		kicked := k.count()
		dl, err := api.Retry(context.Background(), "dead")
		if err != nil || dl.ID != "dead" || dl.Status != notificationsrpc.StatusQueued || dl.Attempts != 0 {
			t.Fatalf("Retry = %+v, %v; want queued with 0 attempts", dl, err)
		}
		if k.count() != kicked+1 {
			t.Errorf("%d kicks, want %d", k.count(), kicked+1)
		}
		if d, err := s.Get("dead"); err != nil || d.Status != notificationsrpc.StatusQueued || d.Dead {
			t.Errorf("stored %+v, %v", d, err)
		}
		for _, tt := range []struct {
			id     string
			code   int32
			errID  string
			reason string
		}{
			{"dead", 409, notificationsrpc.CodeNotDead, "retried already"},
			{"sent", 409, notificationsrpc.CodeNotDead, "sent"},
			{malformed, 409, notificationsrpc.CodeNotDead, "a malformed event"},
			{"ntf_nope", 404, notificationsrpc.CodeNotificationNotFound, "unknown"},
		} {
			if _, err := api.Retry(context.Background(), tt.id); !is(err, tt.code, tt.errID) {
				t.Errorf("Retry of %s (%s) = %v, want %d %s", tt.id, tt.reason, err, tt.code, tt.errID)
			}
		}
		if page, err := api.DeadLetters(context.Background(), notificationsrpc.PageRequest{}); err != nil ||
			len(page.Items) != 1 || page.Items[0].ID != malformed {
			t.Errorf("DeadLetters after the retry = %+v, %v; want only the malformed event", page, err)
		}
	})
	t.Run("bad requests are 400 and anonymous ones 401", func(t *testing.T) {
		if _, err := api.List(ada, notificationsrpc.PageRequest{PageToken: "garbage"}); !is(err, 400, "") {
			t.Errorf("List with a garbage token = %v, want 400", err)
		}
		if _, err := api.ForOrder(ada, ""); !is(err, 400, "") {
			t.Errorf("ForOrder without an order = %v, want 400", err)
		}
		if _, err := api.List(context.Background(), notificationsrpc.PageRequest{}); !is(err, 401, "") {
			t.Errorf("List without a caller = %v, want 401", err)
		}
		if _, err := api.ForOrder(context.Background(), "ord-1"); !is(err, 401, "") {
			t.Errorf("ForOrder without a caller = %v, want 401", err)
		}
	})
	t.Run("an event delivered over the wire queues its delivery once", func(t *testing.T) {
		ev, err := events.NewEvent("ev-wire", time.Now().UTC(), usersrpc.Service, usersrpc.TopicUserRegistered,
			usersrpc.UserRegistered{UserID: "u-new", Email: "new@example.com", Name: "New"})
		if err != nil {
			t.Fatal(err)
		}
		kicked := k.count()
		cl := agent.Caller(t, svcauth.Users) // the publisher of user.registered
		for i := range 2 {
			var ack events.Ack
			if err := cl.Call(context.Background(), cl.NewRequest(notificationsrpc.Service, events.Endpoint, &ev), &ack); err != nil {
				t.Fatalf("Deliver = %v", err)
			}
			if ack.Duplicate != (i == 1) {
				t.Errorf("delivery %d: duplicate = %v", i+1, ack.Duplicate)
			}
		}
		page, err := api.List(user("u-new"), notificationsrpc.PageRequest{})
		if err != nil || len(page.Items) != 1 || page.Items[0].Template != notificationsrpc.TemplateWelcome ||
			page.Items[0].Status != notificationsrpc.StatusQueued || page.Items[0].Channel != notificationsrpc.ChannelEmail {
			t.Errorf("List for u-new = %+v, %v; want the welcome email queued", page, err)
		}
		if k.count() != kicked+1 {
			t.Errorf("%d kicks, want %d", k.count(), kicked+1)
		}
	})
}

// is reports whether err is a go-micro error with status and, unless id is
// "", that ID.
func is(err error, status int32, id string) bool {
	c, gotID := code(err)
	return c == status && (id == "" || gotID == id)
}
