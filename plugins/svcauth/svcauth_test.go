package svcauth

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	merrors "go-micro.dev/v4/errors"
)

func forbidden(t *testing.T, err error, what string) {
	t.Helper()
	var me *merrors.Error
	if !errors.As(err, &me) || me.Code != 403 {
		t.Errorf("%s: %v, want 403", what, err)
	}
}

func TestTheMeshCallTable(t *testing.T) {
	allowed := []struct{ caller, callee, endpoint string }{
		{API, Users, "Users.Authenticate"},
		{API, Users, "EventsAdmin.DeadLetters"},
		{Notifications, Users, "Users.Recipient"},
		{Notifications, Users, "Users.RemoveDeviceToken"},
		{Orders, Publications, "Publications.Reserve"},
		{Orders, Publications, "Publications.Get"},
		{Publications, Products, "Products.Get"},
		{Products, Publications, "Events.Deliver"},
		{Publications, Products, "Events.Deliver"},
		{Orders, Notifications, "Events.Deliver"},
		{Users, Notifications, "Events.Deliver"},
		{API, Images, HTTPEndpoint},
	}
	for _, c := range allowed {
		if err := Mesh.Allow(c.caller, c.callee, c.endpoint); err != nil {
			t.Errorf("%s -> %s %s: %v, want allowed", c.caller, c.callee, c.endpoint, err)
		}
	}
	refused := []struct{ caller, callee, endpoint string }{
		{Images, Users, "Users.Authenticate"}, // only the api authenticates users
		{API, Users, "Users.Recipient"},       // contact details: notifications only
		{Orders, Users, "Users.RemoveDeviceToken"},
		{API, Publications, "Publications.Reserve"}, // only orders moves stock
		{Products, Publications, "Publications.Commit"},
		{Orders, Images, HTTPEndpoint},
		{API, Notifications, "Events.Deliver"}, // events come from their publishers
		{Images, Products, "Events.Deliver"},
		{Orders, Users, "EventsAdmin.Replay"},
		{"", Users, "Users.Me"},                      // no certificate
		{"marketmesh.unknown", Users, "Users.Me"},    // not in the table
		{API, "marketmesh.unknown", "Anything.Goes"}, // a callee not in the table
		{API, Users, "Debug.Health"},                 // an endpoint no rule names
	}
	for _, c := range refused {
		err := Mesh.Allow(c.caller, c.callee, c.endpoint)
		forbidden(t, err, c.caller+" -> "+c.callee+" "+c.endpoint)
		if err != nil && c.caller != "" && !strings.Contains(err.Error(), c.caller) {
			t.Errorf("the refusal %q does not name the caller %s", err, c.caller)
		}
	}
	if !Mesh.MayActForUsers(API) || Mesh.MayActForUsers(Orders) || Mesh.MayActForUsers("") {
		t.Error("only the api may act for end users")
	}
	if AllowAll().Allow("", Users, "Users.Me") == nil {
		t.Error("AllowAll still needs a proven caller")
	}
	if got := Mesh.Callers(Users); !slices.Equal(got, []string{API, Notifications}) {
		t.Errorf("callers of users %v", got)
	}
}

func TestMayPublish(t *testing.T) {
	from := func(caller string) context.Context {
		return WithPolicy(WithCaller(context.Background(), caller), Mesh)
	}
	if err := MayPublish(from(Orders), "events", Orders, "order.paid"); err != nil {
		t.Errorf("orders publishing order.paid: %v", err)
	}
	forbidden(t, MayPublish(from(Orders), "events", Users, "user.registered"), "orders naming users as the source")
	forbidden(t, MayPublish(from(Users), "events", Users, "order.paid"), "users publishing order.paid")
	forbidden(t, MayPublish(WithPolicy(context.Background(), Mesh), "events", Orders, "order.paid"), "no proven caller")
	forbidden(t, MayPublish(WithCaller(context.Background(), Orders), "events", Orders, "order.paid"), "no policy in the context")
}

func TestRequire(t *testing.T) {
	ctx := WithCaller(context.Background(), Orders)
	if err := Require(ctx, "publications", "Publications.Reserve", Orders); err != nil {
		t.Fatal(err)
	}
	forbidden(t, Require(ctx, "publications", "Publications.Reserve", API), "orders where only the api may")
	forbidden(t, Require(context.Background(), "publications", "Publications.Reserve", Orders), "an unproven caller")
}
