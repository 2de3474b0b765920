package handler

import (
	"errors"
	"log/slog"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/services/publications/internal/publication"
	"github.com/marketmesh/marketmesh/services/publications/internal/store"
)

const id = publicationsrpc.Service

// Machine codes (go-micro error Ids) of stock refusals, so the orders
// service can tell them apart: both are 409.
const (
	codeOutOfStock             = "out_of_stock"
	codePublicationUnavailable = "publication_unavailable"
)

// errUnavailable marks a dependency that could not answer (the products
// service): 503, so the caller may retry.
var errUnavailable = errors.New("unavailable")

// rpcError is the one place domain and store errors become RPC statuses.
func rpcError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, publication.ErrInvalid):
		return merrors.New(id, err.Error(), 422)
	case errors.Is(err, store.ErrBadPageToken):
		return merrors.BadRequest(id, "%v", err)
	case errors.Is(err, publication.ErrNotFound):
		return merrors.NotFound(id, "%v", err)
	case errors.Is(err, publication.ErrForbidden):
		return merrors.Forbidden(id, "%v", err)
	case errors.Is(err, publication.ErrOutOfStock):
		return merrors.New(codeOutOfStock, err.Error(), 409)
	case errors.Is(err, publication.ErrNotAvailable):
		return merrors.New(codePublicationUnavailable, err.Error(), 409)
	case errors.Is(err, publication.ErrConflict):
		return merrors.Conflict(id, "%v", err)
	case errors.Is(err, errUnavailable):
		return merrors.New(id, err.Error(), 503)
	default:
		slog.Error("publications: unexpected error", "err", err)
		return merrors.InternalServerError(id, "internal error")
	}
}

var errNoCaller = merrors.Unauthorized(id, "authentication required")
