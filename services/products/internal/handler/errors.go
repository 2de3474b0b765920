package handler

import (
	"errors"
	"log/slog"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/services/products/internal/product"
	"github.com/marketmesh/marketmesh/services/products/internal/store"
)

const id = productsrpc.Service

// rpcError is the one place domain and store errors become RPC statuses.
func rpcError(err error, notFound string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, product.ErrInvalid):
		return merrors.New(id, err.Error(), 422)
	case errors.Is(err, store.ErrBadPageToken):
		return merrors.BadRequest(id, "%v", err)
	case errors.Is(err, product.ErrNotFound):
		return merrors.NotFound(id, "%s", notFound)
	case errors.Is(err, product.ErrForbidden):
		return merrors.Forbidden(id, "%v", err)
	default:
		slog.Error("products: unexpected error", "err", err)
		return merrors.InternalServerError(id, "internal error")
	}
}

var errNoCaller = merrors.Unauthorized(id, "authentication required")
