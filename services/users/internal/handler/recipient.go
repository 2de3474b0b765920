package handler

import (
	"context"
	"errors"

	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/paging"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
	"github.com/marketmesh/marketmesh/plugins/validate"
	"github.com/marketmesh/marketmesh/services/users/internal/user"
)

// notifier is the one service that may read how to reach any user.
const notifier = "marketmesh.notifications"

// maxRecipientDevices bounds the devices one Recipient answer carries.
const maxRecipientDevices = 10 * paging.MaxSize

// Recipient returns how to reach a user: address, preferences, device
// tokens. Only the notifications service may ask, whoever it acts for.
func (h *Users) Recipient(ctx context.Context, req *usersrpc.RecipientRequest, rsp *usersrpc.Recipient) error {
	if err := svcauth.Require(ctx, id, "Users.Recipient", notifier); err != nil {
		return err
	}
	u, err := h.store.UserByID(req.UserID)
	if err != nil {
		return rpcError(err, "user not found")
	}
	prefs, err := h.store.GetPreferences(u.ID)
	if err != nil {
		return rpcError(err, "")
	}
	*rsp = usersrpc.Recipient{
		UserID: u.ID, Email: u.Email, Name: u.Name,
		Preferences: usersrpc.Preferences{Email: prefs.Email, Push: prefs.Push},
		Devices:     []usersrpc.Device{},
	}
	token := ""
	for len(rsp.Devices) < maxRecipientDevices {
		devs, next, err := h.store.ListDevices(u.ID, paging.MaxSize, token)
		if err != nil {
			return rpcError(err, "")
		}
		for _, d := range devs {
			rsp.Devices = append(rsp.Devices, toDevice(d))
		}
		if next == "" {
			break
		}
		token = next
	}
	return nil
}

// RemoveDeviceToken drops a token the push provider reported invalid. Only
// the notifications service may ask; a token already gone is not an error.
func (h *Users) RemoveDeviceToken(ctx context.Context, req *usersrpc.RemoveDeviceTokenRequest, _ *usersrpc.Empty) error {
	if err := svcauth.Require(ctx, id, "Users.RemoveDeviceToken", notifier); err != nil {
		return err
	}
	if req.UserID == "" || req.Token == "" {
		return rpcError(validate.Errorf("user_id and token are required"), "")
	}
	if err := h.store.RemoveDevice(req.UserID, req.Token); err != nil && !errors.Is(err, user.ErrNotFound) {
		return rpcError(err, "")
	}
	return nil
}
