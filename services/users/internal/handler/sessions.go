package handler

import (
	"context"
	"errors"
	"log/slog"

	"github.com/oklog/ulid/v2"

	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
	"github.com/marketmesh/marketmesh/services/users/internal/session"
	"github.com/marketmesh/marketmesh/services/users/internal/user"
)

// gateway is the one service that may start, refresh and end sessions: it
// hands the tokens to clients.
const gateway = "marketmesh.api"

// Login checks credentials, as Authenticate does, and starts a session whose
// first refresh token the answer carries (only its hash is stored). Only
// the api may ask.
func (h *Users) Login(ctx context.Context, req *usersrpc.AuthenticateRequest, rsp *usersrpc.Session) error {
	if err := svcauth.Require(ctx, id, "Users.Login", gateway); err != nil {
		return err
	}
	var u usersrpc.User
	if err := h.Authenticate(ctx, req, &u); err != nil {
		return err
	}
	token, hash, err := session.NewToken()
	if err != nil {
		return rpcError(err, "")
	}
	now := h.now()
	sess, first, err := session.Start(ulid.Make().String(), u.ID, hash, now, h.refreshTTL)
	if err != nil {
		return rpcError(err, "")
	}
	if err := h.store.StartSession(sess, first, now); err != nil {
		return rpcError(err, "")
	}
	*rsp = usersrpc.Session{User: u, RefreshToken: token, RefreshExpiresAt: first.ExpiresAt}
	return nil
}

// Refresh exchanges a refresh token for the next one of its session and
// returns the account with it. A spent token revokes its session (reuse),
// and so does one whose account is gone. Only the api may ask.
func (h *Users) Refresh(ctx context.Context, req *usersrpc.RefreshRequest, rsp *usersrpc.Session) error {
	if err := svcauth.Require(ctx, id, "Users.Refresh", gateway); err != nil {
		return err
	}
	presented, err := session.Parse(req.RefreshToken)
	if err != nil {
		return rpcError(err, "")
	}
	token, hash, err := session.NewToken()
	if err != nil {
		return rpcError(err, "")
	}
	now := h.now()
	var (
		acct user.User
		next session.Token
	)
	err = h.store.UseToken(presented, now, func(u *user.User, s *session.Session, t *session.Token) (*session.Token, error) {
		if u == nil {
			return nil, s.AccountGone(now)
		}
		n, err := s.Rotate(t, hash, now, h.refreshTTL)
		if errors.Is(err, session.ErrReused) {
			logReuse(ctx, s, "refresh")
		}
		if err != nil {
			return nil, err
		}
		acct, next = *u, n
		return &next, nil
	})
	if err != nil {
		return rpcError(err, "")
	}
	*rsp = usersrpc.Session{User: toUser(acct), RefreshToken: token, RefreshExpiresAt: next.ExpiresAt}
	return nil
}

// Logout revokes the session of a refresh token. Only the api may ask.
func (h *Users) Logout(ctx context.Context, req *usersrpc.RefreshRequest, _ *usersrpc.Empty) error {
	if err := svcauth.Require(ctx, id, "Users.Logout", gateway); err != nil {
		return err
	}
	presented, err := session.Parse(req.RefreshToken)
	if err != nil {
		return rpcError(err, "")
	}
	now := h.now()
	err = h.store.UseToken(presented, now, func(_ *user.User, s *session.Session, t *session.Token) (*session.Token, error) {
		err := s.End(t, now)
		if errors.Is(err, session.ErrReused) {
			logReuse(ctx, s, "logout")
		}
		return nil, err
	})
	return rpcError(err, "")
}

// logReuse reports a spent refresh token presented again: a sign that it
// leaked. The session is revoked; operators may want to know whose.
func logReuse(ctx context.Context, s *session.Session, at string) {
	slog.WarnContext(ctx, "users: a spent refresh token was presented again: session revoked",
		"session", s.ID, "user", s.UserID, "endpoint", at)
}
