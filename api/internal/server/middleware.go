package server

import (
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketmesh/marketmesh/plugins/apierror"
	promreg "github.com/marketmesh/marketmesh/plugins/metrics"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
)

// requestID echoes the client's X-Request-Id when it is a plain token
// (validRequestID) or makes one, puts it in the context (and so in every
// RPC's metadata and log line) and in the response.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = ulid.Make().String()
		}
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(rpcmeta.WithRequestID(r.Context(), id)))
	})
}

// validRequestID reports whether a client's request ID may be kept: it
// matches ^[A-Za-z0-9._-]{1,64}$, so it cannot inject anything into logs,
// headers or the log search of whoever reads them.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := range len(id) {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// securityHeaders marks every answer as what its Content-Type says it is
// (no sniffing a JSON error into HTML).
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

// recoverer turns a panic into a 500 in the error shape.
func recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				slog.ErrorContext(r.Context(), "panic", "panic", v, "stack", string(debug.Stack()))
				apierror.WriteStatus(w, r, http.StatusInternalServerError, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	limited  *prometheus.CounterVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	return &httpMetrics{
		requests: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marketmesh_http_requests_total",
			Help: "HTTP requests served by the api, by route and status.",
		}, []string{"route", "status"})),
		duration: promreg.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "marketmesh_http_request_duration_seconds",
			Help:    "HTTP request latency at the api, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"})),
		limited: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marketmesh_api_rate_limited_total",
			Help: "Requests the api refused with 429, by abuse limit (login_client, login_client_account, login_account, register_client).",
		}, []string{"limit"})),
	}
}

// instrument logs and measures one route.
func (m *httpMetrics) instrument(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		d := time.Since(start)
		m.requests.WithLabelValues(route, http.StatusText(sw.status)).Inc()
		m.duration.WithLabelValues(route).Observe(d.Seconds())
		if !strings.HasPrefix(route, "GET /healthz") {
			slog.InfoContext(r.Context(), "http", "route", route, "status", sw.status, "ms", float64(d.Microseconds())/1000)
		}
	})
}
