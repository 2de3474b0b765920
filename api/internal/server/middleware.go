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

// requestID echoes a sane X-Request-Id from the client or makes one, puts it
// in the context (and so in every RPC's metadata and log line) and in the response.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !rpcmeta.ValidRequestID(id) {
			id = ulid.Make().String()
		}
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(rpcmeta.WithRequestID(r.Context(), id)))
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
		if !strings.HasPrefix(route, "GET /healthz") && !strings.HasPrefix(route, "GET /metrics") {
			slog.InfoContext(r.Context(), "http", "route", route, "status", sw.status, "ms", float64(d.Microseconds())/1000)
		}
	})
}
