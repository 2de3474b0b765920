package handler

import (
	"errors"
	"log/slog"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/services/users/internal/session"
	"github.com/marketmesh/marketmesh/services/users/internal/store"
	"github.com/marketmesh/marketmesh/services/users/internal/user"
)

const id = usersrpc.Service

// rpcError is the one place domain and store errors become RPC statuses.
func rpcError(err error, notFound string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, user.ErrInvalid):
		return merrors.New(id, err.Error(), 422)
	case errors.Is(err, store.ErrBadPageToken):
		return merrors.BadRequest(id, "%v", err)
	case errors.Is(err, user.ErrNotFound):
		return merrors.NotFound(id, "%s", notFound)
	case errors.Is(err, user.ErrEmailTaken):
		return merrors.Conflict(id, "%v", err)
	case errors.Is(err, user.ErrBadCredentials):
		return merrors.Unauthorized(id, "%v", err)
	case errors.Is(err, session.ErrUnknown), errors.Is(err, session.ErrExpired), errors.Is(err, session.ErrReused),
		errors.Is(err, session.ErrRevoked), errors.Is(err, session.ErrAccountGone):
		return merrors.Unauthorized(id, "%v: log in again", err)
	case errors.Is(err, user.ErrBusy):
		return merrors.New(id, err.Error(), 503) // the api adds Retry-After
	default:
		slog.Error("users: unexpected error", "err", err)
		return merrors.InternalServerError(id, "internal error")
	}
}

var errNoCaller = merrors.Unauthorized(id, "authentication required")
