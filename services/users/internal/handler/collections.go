package handler

import (
	"context"

	"github.com/oklog/ulid/v2"

	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/services/users/internal/user"
)

func toWishlistItem(e user.WishlistEntry) usersrpc.WishlistItem {
	return usersrpc.WishlistItem{PublicationID: e.PublicationID, AddedAt: e.AddedAt}
}

// ListWishlist returns a page of the caller's wishlist.
func (h *Users) ListWishlist(ctx context.Context, req *usersrpc.PageRequest, rsp *usersrpc.WishlistPage) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	entries, next, err := h.store.ListWishlist(uid, user.PageSize(req.PageSize), req.PageToken)
	if err != nil {
		return rpcError(err, "")
	}
	rsp.Items = make([]usersrpc.WishlistItem, len(entries))
	for i, e := range entries {
		rsp.Items[i] = toWishlistItem(e)
	}
	rsp.NextPageToken = next
	return nil
}

// AddWishlist saves a publication; adding it again is not an error.
func (h *Users) AddWishlist(ctx context.Context, req *usersrpc.WishlistRequest, rsp *usersrpc.WishlistAdded) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	if err := user.CheckPublicationID(req.PublicationID); err != nil {
		return rpcError(err, "")
	}
	e, created, err := h.store.AddWishlist(uid, req.PublicationID, h.now())
	if err != nil {
		return rpcError(err, "")
	}
	*rsp = usersrpc.WishlistAdded{Item: toWishlistItem(e), Created: created}
	return nil
}

// RemoveWishlist removes a publication from the caller's wishlist.
func (h *Users) RemoveWishlist(ctx context.Context, req *usersrpc.WishlistRequest, _ *usersrpc.Empty) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	return rpcError(h.store.RemoveWishlist(uid, req.PublicationID), "publication "+req.PublicationID+" is not in the wishlist")
}

func toBankAccount(a user.BankAccount) usersrpc.BankAccount {
	return usersrpc.BankAccount{ID: a.ID, Holder: a.Holder, Bank: a.Bank, AccountNumber: a.MaskedNumber(), Currency: a.Currency, CreatedAt: a.CreatedAt}
}

// ListBankAccounts returns the caller's accounts, masked.
func (h *Users) ListBankAccounts(ctx context.Context, req *usersrpc.PageRequest, rsp *usersrpc.BankAccountPage) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	accts, next, err := h.store.ListBankAccounts(uid, user.PageSize(req.PageSize), req.PageToken)
	if err != nil {
		return rpcError(err, "")
	}
	rsp.Items = make([]usersrpc.BankAccount, len(accts))
	for i, a := range accts {
		rsp.Items[i] = toBankAccount(a)
	}
	rsp.NextPageToken = next
	return nil
}

// AddBankAccount seals the number (bound to owner and account ID) and keeps
// only its last four characters in the clear.
func (h *Users) AddBankAccount(ctx context.Context, req *usersrpc.AddBankAccountRequest, rsp *usersrpc.BankAccount) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	draft := user.BankAccountDraft{Holder: req.Holder, Bank: req.Bank, AccountNumber: req.AccountNumber, Currency: req.Currency}
	acct, err := user.NewBankAccount(ulid.Make().String(), uid, draft, h.now(), h.sealer)
	if err != nil {
		return rpcError(err, "")
	}
	if err := h.store.AddBankAccount(uid, acct); err != nil {
		return rpcError(err, "")
	}
	*rsp = toBankAccount(acct)
	return nil
}

// RemoveBankAccount deletes one of the caller's accounts; another user's
// account is "not found", so existence does not leak.
func (h *Users) RemoveBankAccount(ctx context.Context, req *usersrpc.IDRequest, _ *usersrpc.Empty) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	return rpcError(h.store.RemoveBankAccount(uid, req.ID), "bank account "+req.ID+" not found")
}

func toDevice(d user.Device) usersrpc.Device {
	return usersrpc.Device{Token: d.Token, Platform: d.Platform, CreatedAt: d.CreatedAt}
}

// ListDevices returns the caller's push devices.
func (h *Users) ListDevices(ctx context.Context, req *usersrpc.PageRequest, rsp *usersrpc.DevicePage) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	devs, next, err := h.store.ListDevices(uid, user.PageSize(req.PageSize), req.PageToken)
	if err != nil {
		return rpcError(err, "")
	}
	rsp.Items = make([]usersrpc.Device, len(devs))
	for i, d := range devs {
		rsp.Items[i] = toDevice(d)
	}
	rsp.NextPageToken = next
	return nil
}

// AddDevice registers a push token for the caller.
func (h *Users) AddDevice(ctx context.Context, req *usersrpc.AddDeviceRequest, rsp *usersrpc.DeviceAdded) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	dev, err := user.NewDevice(req.Token, req.Platform, h.now())
	if err != nil {
		return rpcError(err, "")
	}
	dev, created, err := h.store.AddDevice(uid, dev)
	if err != nil {
		return rpcError(err, "")
	}
	*rsp = usersrpc.DeviceAdded{Device: toDevice(dev), Created: created}
	return nil
}

// RemoveDevice unregisters one of the caller's tokens.
func (h *Users) RemoveDevice(ctx context.Context, req *usersrpc.DeviceRequest, _ *usersrpc.Empty) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	return rpcError(h.store.RemoveDevice(uid, req.Token), "device not found")
}

// GetPreferences returns the caller's notification preferences.
func (h *Users) GetPreferences(ctx context.Context, _ *usersrpc.Empty, rsp *usersrpc.Preferences) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	p, err := h.store.GetPreferences(uid)
	if err != nil {
		return rpcError(err, "")
	}
	*rsp = usersrpc.Preferences{Email: p.Email, Push: p.Push}
	return nil
}

// SetPreferences replaces the caller's notification preferences.
func (h *Users) SetPreferences(ctx context.Context, req *usersrpc.Preferences, rsp *usersrpc.Preferences) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	if err := h.store.SetPreferences(uid, user.Preferences{Email: req.Email, Push: req.Push}); err != nil {
		return rpcError(err, "")
	}
	*rsp = *req
	return nil
}
