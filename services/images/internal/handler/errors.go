package handler

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/plugins/apierror"
	"github.com/marketmesh/marketmesh/services/images/internal/budget"
	"github.com/marketmesh/marketmesh/services/images/internal/image"
	"github.com/marketmesh/marketmesh/services/images/internal/store"
)

const id = imagesrpc.Service

var errNoCaller = errors.New("authentication required")

// statusClientClosedRequest is the status of a request whose client went
// away before the answer (nginx's 499).
const statusClientClosedRequest = 499

// bodyError is a failure to read an upload's body (the client went away or
// was too slow).
type bodyError struct{ err error }

func (e bodyError) Error() string { return "reading the request body: " + e.err.Error() }
func (e bodyError) Unwrap() error { return e.err }

// status is the one place domain, store and transport errors become
// statuses; the RPC endpoints (rpcError) and the HTTP endpoint (writeError)
// both use it. notFound is the message for image.ErrNotFound.
func status(ctx context.Context, err error, notFound string) (int, string) {
	var be bodyError
	switch {
	case errors.Is(err, image.ErrInvalid):
		return http.StatusUnprocessableEntity, err.Error()
	case errors.Is(err, store.ErrBadPageToken):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, image.ErrNotFound):
		return http.StatusNotFound, notFound
	case errors.Is(err, image.ErrForbidden):
		return http.StatusForbidden, err.Error()
	case errors.Is(err, errNoCaller):
		return http.StatusUnauthorized, err.Error()
	case errors.Is(err, image.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, err.Error()
	case errors.Is(err, image.ErrUnsupported):
		return http.StatusUnsupportedMediaType, err.Error()
	case errors.As(err, &be) && errors.Is(err, os.ErrDeadlineExceeded):
		return http.StatusRequestTimeout, "the upload took too long"
	case errors.As(err, &be):
		return http.StatusBadRequest, "the request body could not be read"
	case errors.Is(err, budget.ErrBusy):
		return http.StatusServiceUnavailable, "too many images are being decoded; retry later"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "the request took too long"
	case errors.Is(err, context.Canceled):
		// The client gave up (while waiting for decode memory, say): nobody
		// reads this, and it is not ours to log. 499 as nginx's.
		return statusClientClosedRequest, "the client closed the request"
	default:
		slog.ErrorContext(ctx, "images: unexpected error", "err", err)
		return http.StatusInternalServerError, "internal error"
	}
}

// rpcError turns err into a go-micro error whose code is the status.
func rpcError(ctx context.Context, err error, notFound string) error {
	if err == nil {
		return nil
	}
	code, msg := status(ctx, err, notFound)
	return merrors.New(id, msg, int32(code))
}

// writeError sends err in the public error shape.
func writeError(w http.ResponseWriter, r *http.Request, err error, notFound string) {
	code, msg := status(r.Context(), err, notFound)
	apierror.WriteStatus(w, r, code, msg)
}
