package handler_test

import (
	"context"
	"testing"

	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/rpcfake"
	"github.com/marketmesh/marketmesh/services/users/internal/handler"
)

// TestClientMatchesTheHandler checks that every typed client method calls an
// endpoint the handler serves, with the request and response types it takes.
func TestClientMatchesTheHandler(t *testing.T) {
	rc := &rpcfake.Client{}
	c := usersrpc.NewClient(rc)
	ctx := context.Background()
	calls := map[string]func() error{
		"Register":          func() error { _, err := c.Register(ctx, usersrpc.RegisterRequest{}); return err },
		"Authenticate":      func() error { _, err := c.Authenticate(ctx, usersrpc.AuthenticateRequest{}); return err },
		"Login":             func() error { _, err := c.Login(ctx, usersrpc.AuthenticateRequest{}); return err },
		"Refresh":           func() error { _, err := c.Refresh(ctx, "tok"); return err },
		"Logout":            func() error { return c.Logout(ctx, "tok") },
		"Me":                func() error { _, err := c.Me(ctx); return err },
		"Update":            func() error { _, err := c.Update(ctx, usersrpc.UpdateRequest{}); return err },
		"Profile":           func() error { _, err := c.Profile(ctx, "id"); return err },
		"ListWishlist":      func() error { _, err := c.ListWishlist(ctx, usersrpc.PageRequest{}); return err },
		"AddWishlist":       func() error { _, err := c.AddWishlist(ctx, "pub"); return err },
		"RemoveWishlist":    func() error { return c.RemoveWishlist(ctx, "pub") },
		"ListBankAccounts":  func() error { _, err := c.ListBankAccounts(ctx, usersrpc.PageRequest{}); return err },
		"AddBankAccount":    func() error { _, err := c.AddBankAccount(ctx, usersrpc.AddBankAccountRequest{}); return err },
		"RemoveBankAccount": func() error { return c.RemoveBankAccount(ctx, "id") },
		"ListDevices":       func() error { _, err := c.ListDevices(ctx, usersrpc.PageRequest{}); return err },
		"AddDevice":         func() error { _, err := c.AddDevice(ctx, usersrpc.AddDeviceRequest{}); return err },
		"RemoveDevice":      func() error { return c.RemoveDevice(ctx, "tok") },
		"Preferences":       func() error { _, err := c.Preferences(ctx); return err },
		"SetPreferences":    func() error { _, err := c.SetPreferences(ctx, usersrpc.Preferences{}); return err },
	}
	rpcfake.CheckContract(t, usersrpc.Service, "Users.", &handler.Users{}, rc, calls)
}
