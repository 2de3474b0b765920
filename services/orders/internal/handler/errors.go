package handler

import (
	"errors"
	"log/slog"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/plugins/validate"
	"github.com/marketmesh/marketmesh/services/orders/internal/order"
	"github.com/marketmesh/marketmesh/services/orders/internal/payment"
	"github.com/marketmesh/marketmesh/services/orders/internal/store"
)

const id = ordersrpc.Service

var errNoCaller = merrors.Unauthorized(id, "authentication required")

// errUnavailable marks a dependency that could not answer: 503, retry later.
var errUnavailable = errors.New("unavailable")

func unavailable(service string, err error) error {
	var me *merrors.Error
	if errors.As(err, &me) && me.Code >= 400 && me.Code < 500 && me.Code != 408 {
		// The dependency refused the request itself: say so.
		return merrors.New(id, me.Detail, me.Code)
	}
	slog.Warn("orders: dependency unavailable", "service", service, "err", err)
	return validate.Kind(errUnavailable, "the %s service is unavailable; nothing was done, try again", service)
}

// rpcError is the one place domain, store and payment errors become RPC statuses.
func rpcError(err error) error {
	var me *merrors.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &me):
		return me
	case errors.Is(err, order.ErrMixedCurrency):
		return merrors.New(ordersrpc.ReasonMixedCurrency, err.Error(), 422)
	case errors.Is(err, order.ErrInvalid):
		return merrors.New(id, err.Error(), 422)
	case errors.Is(err, store.ErrBadPageToken):
		return merrors.BadRequest(id, "%v", err)
	case errors.Is(err, order.ErrNotFound):
		return merrors.NotFound(id, "%v", err)
	case errors.Is(err, order.ErrForbidden):
		return merrors.Forbidden(id, "%v", err)
	case errors.Is(err, order.ErrConflict):
		return merrors.Conflict(id, "%v", err)
	case errors.Is(err, payment.ErrNoSignature), errors.Is(err, payment.ErrBadSignature), errors.Is(err, payment.ErrStale):
		return merrors.Unauthorized(id, "%v", err)
	case errors.Is(err, errUnavailable):
		return merrors.New(id, err.Error(), 503)
	default:
		slog.Error("orders: unexpected error", "err", err)
		return merrors.InternalServerError(id, "internal error")
	}
}
