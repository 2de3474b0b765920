package handler

import (
	"context"

	"github.com/oklog/ulid/v2"

	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/services/users/internal/store"
	"github.com/marketmesh/marketmesh/services/users/internal/user"
)

// ListWishlist returns a page of the caller's wishlist.
func (h *Users) ListWishlist(ctx context.Context, req *usersrpc.PageRequest, rsp *usersrpc.WishlistPage) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	entries, next, err := h.store.ListWishlist(uid, pageSize(req.PageSize), req.PageToken)
	if err != nil {
		return rpcError(err, "")
	}
	rsp.Items = make([]usersrpc.WishlistItem, len(entries))
	for i, e := range entries {
		rsp.Items[i] = usersrpc.WishlistItem{PublicationID: e.PublicationID, AddedAt: e.AddedAt}
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
	*rsp = usersrpc.WishlistAdded{Item: usersrpc.WishlistItem{PublicationID: e.PublicationID, AddedAt: e.AddedAt}, Created: created}
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

func toBankAccount(r store.BankRecord) usersrpc.BankAccount {
	return usersrpc.BankAccount{ID: r.ID, Holder: r.Holder, Bank: r.Bank, AccountNumber: "****" + r.Last4, Currency: r.Currency, CreatedAt: r.CreatedAt}
}

// ListBankAccounts returns the caller's accounts, masked.
func (h *Users) ListBankAccounts(ctx context.Context, req *usersrpc.PageRequest, rsp *usersrpc.BankAccountPage) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	recs, next, err := h.store.ListBankAccounts(uid, pageSize(req.PageSize), req.PageToken)
	if err != nil {
		return rpcError(err, "")
	}
	rsp.Items = make([]usersrpc.BankAccount, len(recs))
	for i, r := range recs {
		rsp.Items[i] = toBankAccount(r)
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
	in, err := user.NewBankAccount(req.Holder, req.Bank, req.AccountNumber, req.Currency)
	if err != nil {
		return rpcError(err, "")
	}
	rec := store.BankRecord{ID: ulid.Make().String(), Holder: in.Holder, Bank: in.Bank, Currency: in.Currency, CreatedAt: h.now()}
	rec.Last4 = user.Mask(in.AccountNumber)[4:]
	if rec.SealedNumber, err = h.sealer.Seal([]byte(in.AccountNumber), []byte(uid+"/"+rec.ID)); err != nil {
		return rpcError(err, "")
	}
	if err := h.store.AddBankAccount(uid, rec); err != nil {
		return rpcError(err, "")
	}
	*rsp = toBankAccount(rec)
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

func toDevice(r store.DeviceRecord) usersrpc.Device {
	return usersrpc.Device{Token: r.Token, Platform: r.Platform, CreatedAt: r.CreatedAt}
}

// ListDevices returns the caller's push devices.
func (h *Users) ListDevices(ctx context.Context, req *usersrpc.PageRequest, rsp *usersrpc.DevicePage) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	recs, next, err := h.store.ListDevices(uid, pageSize(req.PageSize), req.PageToken)
	if err != nil {
		return rpcError(err, "")
	}
	rsp.Items = make([]usersrpc.Device, len(recs))
	for i, r := range recs {
		rsp.Items[i] = toDevice(r)
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
	if err := user.CheckDevice(req.Token, req.Platform); err != nil {
		return rpcError(err, "")
	}
	rec, created, err := h.store.AddDevice(uid, store.DeviceRecord{Token: req.Token, Platform: req.Platform, CreatedAt: h.now()})
	if err != nil {
		return rpcError(err, "")
	}
	*rsp = usersrpc.DeviceAdded{Device: toDevice(rec), Created: created}
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
	if err := h.store.SetPreferences(uid, store.Preferences{Email: req.Email, Push: req.Push}); err != nil {
		return rpcError(err, "")
	}
	*rsp = *req
	return nil
}
