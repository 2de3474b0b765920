// Package handler serves the users RPC endpoints: decode, apply the domain
// rules, store, encode. Endpoints about "me" act on the caller from RPC
// metadata.
package handler

import (
	"context"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/services/users/internal/sealer"
	"github.com/marketmesh/marketmesh/services/users/internal/store"
	"github.com/marketmesh/marketmesh/services/users/internal/user"
)

// Notifier is told when new events are in the outbox.
type Notifier interface{ Notify() }

// Users is the RPC handler; its type name makes endpoints "Users.<Method>".
type Users struct {
	store  *store.Store
	sealer *sealer.Sealer
	relay  Notifier
	now    func() time.Time
}

// New returns the handler.
func New(s *store.Store, seal *sealer.Sealer, relay Notifier) *Users {
	return &Users{store: s, sealer: seal, relay: relay, now: func() time.Time { return time.Now().UTC() }}
}

func caller(ctx context.Context) (string, error) {
	if id := rpcmeta.Caller(ctx); id != "" {
		return id, nil
	}
	return "", errNoCaller
}

func pageSize(n int) int {
	switch {
	case n <= 0:
		return 20
	case n > 100:
		return 100
	}
	return n
}

func toUser(r store.UserRecord) usersrpc.User {
	return usersrpc.User{ID: r.ID, Email: r.Email, Name: r.Name, Phone: r.Phone, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

// Register creates an account and emits user.registered in the same transaction.
func (h *Users) Register(ctx context.Context, req *usersrpc.RegisterRequest, rsp *usersrpc.User) error {
	email, err := user.NormalizeEmail(req.Email)
	if err != nil {
		return rpcError(err, "")
	}
	name, err := user.CleanText("name", req.Name, user.MaxName)
	if err != nil {
		return rpcError(err, "")
	}
	if err := user.CheckPassword(req.Password); err != nil {
		return rpcError(err, "")
	}
	hash, err := user.HashPassword(req.Password)
	if err != nil {
		return rpcError(err, "")
	}
	now := h.now()
	rec := store.UserRecord{ID: ulid.Make().String(), Email: email, Name: name, PasswordHash: hash, CreatedAt: now, UpdatedAt: now}
	err = h.store.CreateUser(rec, func(tx *bolt.Tx) error {
		_, err := events.Append(tx, usersrpc.Service, usersrpc.TopicUserRegistered,
			usersrpc.UserRegistered{UserID: rec.ID, Email: rec.Email, Name: rec.Name})
		return err
	})
	if err != nil {
		return rpcError(err, "")
	}
	h.relay.Notify()
	*rsp = toUser(rec)
	return nil
}

// Authenticate checks credentials; an unknown email and a wrong password
// give the same answer after the same work.
func (h *Users) Authenticate(ctx context.Context, req *usersrpc.AuthenticateRequest, rsp *usersrpc.User) error {
	email, err := user.NormalizeEmail(req.Email)
	if err != nil || req.Password == "" || len(req.Password) > user.MaxPassword {
		user.VerifyNobody(req.Password)
		return rpcError(user.ErrBadCredentials, "")
	}
	rec, err := h.store.UserByEmail(email)
	if err == user.ErrNotFound {
		user.VerifyNobody(req.Password)
		return rpcError(user.ErrBadCredentials, "")
	}
	if err != nil {
		return rpcError(err, "")
	}
	if !user.VerifyPassword(rec.PasswordHash, req.Password) {
		return rpcError(user.ErrBadCredentials, "")
	}
	*rsp = toUser(rec)
	return nil
}

// Me returns the caller's account.
func (h *Users) Me(ctx context.Context, _ *usersrpc.Empty, rsp *usersrpc.User) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	rec, err := h.store.UserByID(uid)
	if err != nil {
		return rpcError(err, "user "+uid+" not found")
	}
	*rsp = toUser(rec)
	return nil
}

// Update changes the caller's name and/or phone.
func (h *Users) Update(ctx context.Context, req *usersrpc.UpdateRequest, rsp *usersrpc.User) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	var name, phone string
	if req.Name != nil {
		if name, err = user.CleanText("name", *req.Name, user.MaxName); err != nil {
			return rpcError(err, "")
		}
	}
	if req.Phone != nil {
		if phone, err = user.NormalizePhone(*req.Phone); err != nil {
			return rpcError(err, "")
		}
	}
	rec, err := h.store.UpdateUser(uid, func(r *store.UserRecord) error {
		if req.Name != nil {
			r.Name = name
		}
		if req.Phone != nil {
			r.Phone = phone
		}
		r.UpdatedAt = h.now()
		return nil
	})
	if err != nil {
		return rpcError(err, "user "+uid+" not found")
	}
	*rsp = toUser(rec)
	return nil
}

// Profile returns anyone's public profile.
func (h *Users) Profile(ctx context.Context, req *usersrpc.ProfileRequest, rsp *usersrpc.PublicProfile) error {
	rec, err := h.store.UserByID(req.ID)
	if err != nil {
		return rpcError(err, "user "+req.ID+" not found")
	}
	*rsp = usersrpc.PublicProfile{ID: rec.ID, Name: rec.Name, MemberSince: rec.CreatedAt}
	return nil
}
