package server

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/marketmesh/marketmesh/api/internal/ratelimit"
	"github.com/marketmesh/marketmesh/plugins/apierror"
)

// tooMany turns a limiter's refusal into a 429 with Retry-After, and counts
// it; any other error is returned as it is.
func (a *API) tooMany(w http.ResponseWriter, err error, what string) error {
	var ref *ratelimit.Refused
	if !errors.As(err, &ref) {
		return err
	}
	a.metrics.limited.WithLabelValues(ref.Limit).Inc()
	secs := strconv.Itoa(ref.RetryAfterSeconds())
	w.Header().Set("Retry-After", secs)
	return apierror.New(http.StatusTooManyRequests, "too many "+what+"; retry after "+secs+" s")
}
