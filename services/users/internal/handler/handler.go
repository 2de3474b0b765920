// Package handler serves the users RPC endpoints: decode, apply the domain
// rules, store, encode. Endpoints about "me" act on the caller from RPC
// metadata.
package handler

import (
	"context"
	"errors"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/services/users/internal/sealer"
	"github.com/marketmesh/marketmesh/services/users/internal/session"
	"github.com/marketmesh/marketmesh/services/users/internal/store"
	"github.com/marketmesh/marketmesh/services/users/internal/user"
)

// Notifier is told when new events are in the outbox.
type Notifier interface{ Notify() }

// Users is the RPC handler; its type name makes endpoints "Users.<Method>".
type Users struct {
	store      *store.Store
	sealer     *sealer.Sealer
	relay      Notifier
	now        func() time.Time
	refreshTTL time.Duration
}

// Option changes a handler setting.
type Option func(*Users)

// RefreshTTL sets how long a refresh token lives unless used
// (session.DefaultTTL).
func RefreshTTL(d time.Duration) Option { return func(h *Users) { h.refreshTTL = d } }

// Clock replaces the handler's clock (tests).
func Clock(now func() time.Time) Option { return func(h *Users) { h.now = now } }

// New returns the handler.
func New(s *store.Store, seal *sealer.Sealer, relay Notifier, opts ...Option) *Users {
	h := &Users{store: s, sealer: seal, relay: relay, now: func() time.Time { return time.Now().UTC() }, refreshTTL: session.DefaultTTL}
	for _, opt := range opts {
		opt(h)
	}
	return h
}

func caller(ctx context.Context) (string, error) {
	if id := rpcmeta.Caller(ctx); id != "" {
		return id, nil
	}
	return "", errNoCaller
}

func notFound(id string) string { return "user " + id + " not found" }

func toUser(u user.User) usersrpc.User {
	return usersrpc.User{ID: u.ID, Email: u.Email, Name: u.Name, Phone: u.Phone, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
}

// Register creates an account and emits user.registered in the same
// transaction. The event's ID and time are decided here, before the store's
// transaction: the time is the account's creation time.
func (h *Users) Register(ctx context.Context, req *usersrpc.RegisterRequest, rsp *usersrpc.User) error {
	u, err := user.New(ulid.Make().String(), user.Draft{Email: req.Email, Name: req.Name, Password: req.Password}, h.now())
	if err != nil {
		return rpcError(err, "")
	}
	registered, err := events.NewEvent(ulid.Make().String(), u.CreatedAt, usersrpc.Service, usersrpc.TopicUserRegistered,
		usersrpc.UserRegistered{UserID: u.ID, Email: u.Email, Name: u.Name})
	if err != nil {
		return rpcError(err, "")
	}
	if err := h.store.CreateUser(u, registered); err != nil {
		return rpcError(err, "")
	}
	h.relay.Notify()
	*rsp = toUser(u)
	return nil
}

// Authenticate checks credentials; an unknown email and a wrong password
// give the same answer after the same work.
func (h *Users) Authenticate(ctx context.Context, req *usersrpc.AuthenticateRequest, rsp *usersrpc.User) error {
	email, err := user.LoginEmail(req.Email, req.Password)
	if err != nil {
		return rpcError(err, "")
	}
	u, err := h.store.UserByEmail(email)
	if errors.Is(err, user.ErrNotFound) {
		return rpcError(user.NoAccount(req.Password), "")
	}
	if err != nil {
		return rpcError(err, "")
	}
	if err := u.Authenticate(req.Password); err != nil {
		return rpcError(err, "")
	}
	*rsp = toUser(u)
	return nil
}

// Me returns the caller's account.
func (h *Users) Me(ctx context.Context, _ *usersrpc.Empty, rsp *usersrpc.User) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	u, err := h.store.UserByID(uid)
	if err != nil {
		return rpcError(err, notFound(uid))
	}
	*rsp = toUser(u)
	return nil
}

// Update changes the caller's name and/or phone.
func (h *Users) Update(ctx context.Context, req *usersrpc.UpdateRequest, rsp *usersrpc.User) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	// A bad patch is refused before the account is loaded: 422 even for a
	// caller whose account is gone.
	patch, err := user.Patch{Name: req.Name, Phone: req.Phone}.Normalize()
	if err != nil {
		return rpcError(err, "")
	}
	u, err := h.store.UpdateUser(uid, func(u *user.User) error { return u.Apply(patch, h.now()) })
	if err != nil {
		return rpcError(err, notFound(uid))
	}
	*rsp = toUser(u)
	return nil
}

// Profile returns anyone's public profile.
func (h *Users) Profile(ctx context.Context, req *usersrpc.ProfileRequest, rsp *usersrpc.PublicProfile) error {
	u, err := h.store.UserByID(req.ID)
	if err != nil {
		return rpcError(err, notFound(req.ID))
	}
	*rsp = usersrpc.PublicProfile{ID: u.ID, Name: u.Name, MemberSince: u.CreatedAt}
	return nil
}
