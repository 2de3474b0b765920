package handler_test

import (
	"context"
	"slices"
	"testing"

	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
)

func TestRecipientAndRemoveDeviceTokenAreForNotificationsOnly(t *testing.T) {
	f := newFixture(t)
	u := f.register(t, "ada@example.com", "correct horse", "Ada")
	for _, tok := range []string{"tok-a", "tok-b"} {
		if err := f.h.AddDevice(as(u.ID), &usersrpc.AddDeviceRequest{Token: tok, Platform: "ios"}, &usersrpc.DeviceAdded{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.h.SetPreferences(as(u.ID), &usersrpc.Preferences{Email: false, Push: true}, &usersrpc.Preferences{}); err != nil {
		t.Fatal(err)
	}

	// Any user, any other service, or no credential at all: 403.
	for name, ctx := range map[string]context.Context{
		"the user themself": as(u.ID),
		"orders":            svcauth.WithCaller(as(u.ID), "marketmesh.orders"),
		"the api":           svcauth.WithCaller(context.Background(), "marketmesh.api"),
	} {
		t.Run(name, func(t *testing.T) {
			err := f.h.Recipient(ctx, &usersrpc.RecipientRequest{UserID: u.ID}, &usersrpc.Recipient{})
			microErr(t, err, 403)
			err = f.h.RemoveDeviceToken(ctx, &usersrpc.RemoveDeviceTokenRequest{UserID: u.ID, Token: "tok-a"}, &usersrpc.Empty{})
			microErr(t, err, 403)
		})
	}

	notifications := svcauth.WithCaller(context.Background(), "marketmesh.notifications")
	var r usersrpc.Recipient
	if err := f.h.Recipient(notifications, &usersrpc.RecipientRequest{UserID: u.ID}, &r); err != nil {
		t.Fatal(err)
	}
	var tokens []string
	for _, d := range r.Devices {
		tokens = append(tokens, d.Token)
	}
	slices.Sort(tokens)
	if r.UserID != u.ID || r.Email != "ada@example.com" || r.Name != "Ada" || r.Preferences.Email || !r.Preferences.Push ||
		!slices.Equal(tokens, []string{"tok-a", "tok-b"}) {
		t.Fatalf("recipient %+v", r)
	}
	microErr(t, f.h.Recipient(notifications, &usersrpc.RecipientRequest{UserID: "01NOSUCHUSER"}, &usersrpc.Recipient{}), 404)

	// A token FCM reported unregistered: gone; removing it again is fine.
	for range 2 {
		if err := f.h.RemoveDeviceToken(notifications, &usersrpc.RemoveDeviceTokenRequest{UserID: u.ID, Token: "tok-a"}, &usersrpc.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	microErr(t, f.h.RemoveDeviceToken(notifications, &usersrpc.RemoveDeviceTokenRequest{UserID: u.ID}, &usersrpc.Empty{}), 422)
	r = usersrpc.Recipient{}
	if err := f.h.Recipient(notifications, &usersrpc.RecipientRequest{UserID: u.ID}, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Devices) != 1 || r.Devices[0].Token != "tok-b" {
		t.Fatalf("devices after removing tok-a: %+v", r.Devices)
	}
}
