package service_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/meshtest"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/plugins/service"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
)

// Users stands in for the users service's handler: it reports who the
// server says is calling.
type Users struct{}

// Seen is what a handler saw of its caller.
type Seen struct{ Service, User string }

// Empty is an empty request.
type Empty struct{}

func seen(ctx context.Context, rsp *Seen) error {
	rsp.Service, rsp.User = svcauth.Caller(ctx), rpcmeta.Caller(ctx)
	return nil
}

// Me is an endpoint of the api's (the table: Users.* from the api).
func (Users) Me(ctx context.Context, _ *Empty, rsp *Seen) error { return seen(ctx, rsp) }

// Recipient is notifications' (the table: Users.Recipient from notifications).
func (Users) Recipient(ctx context.Context, _ *Empty, rsp *Seen) error { return seen(ctx, rsp) }

// The server wrapper enforces svcauth.Mesh with the identity proven by the
// TLS handshake, and drops an end user's identity from callers that may not
// act for users.
func TestTheServerEnforcesTheCallTable(t *testing.T) {
	agent := meshtest.Consul(t)
	svc, err := service.New("users", mesh(agent), config.Server{Address: "127.0.0.1:0"}, service.DrainDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Handle(Users{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("Run did not return")
		}
	})
	agent.WaitPassing(t, svc.Name(), 1, 15*time.Second)

	call := func(as, endpoint string) (Seen, error) {
		c := agent.Caller(t, as)
		var rsp Seen
		err := c.Call(rpcmeta.WithCaller(context.Background(), "u-1"), c.NewRequest(svc.Name(), endpoint, &Empty{}), &rsp)
		return rsp, err
	}
	if got, err := call(svcauth.API, "Users.Me"); err != nil || got != (Seen{svcauth.API, "u-1"}) {
		t.Errorf("the api: %+v, %v; want the api acting for u-1", got, err)
	}
	if got, err := call(svcauth.Notifications, "Users.Recipient"); err != nil || got != (Seen{svcauth.Notifications, ""}) {
		t.Errorf("notifications: %+v, %v; want notifications, the user claim dropped", got, err)
	}
	for _, c := range []struct{ as, endpoint string }{
		{svcauth.Orders, "Users.Me"},
		{svcauth.API, "Users.Recipient"},
		{"marketmesh.users", "Users.Me"}, // not even itself
	} {
		_, err := call(c.as, c.endpoint)
		var me *merrors.Error
		if !errors.As(err, &me) || me.Code != 403 || !strings.Contains(me.Detail, c.as) || !strings.Contains(me.Detail, c.endpoint) {
			t.Errorf("%s calling %s: %v, want 403 naming both", c.as, c.endpoint, err)
		}
	}
}
