package server

import (
	"context"
	"log/slog"
	"maps"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
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

// dispatchWriter is the writer route hands the mux. Until a registered
// route's handler claims it (instrument does, first thing), it is a probe:
// it records what the mux's own handlers (404, 405 with Allow, redirects)
// would answer and writes nothing, so that route can answer in the error
// shape instead. Once claimed, it passes everything to the real writer and
// records the status for the metrics and the request log. One writer does
// both so a request is matched by the mux once and costs one allocation.
type dispatchWriter struct {
	http.ResponseWriter
	claimed bool
	status  int // claimed: the status written (0: none yet)

	probeHeader http.Header // unclaimed: what the mux's handler set
	probeStatus int
}

func (s *dispatchWriter) Header() http.Header {
	if !s.claimed {
		if s.probeHeader == nil {
			s.probeHeader = http.Header{}
		}
		return s.probeHeader
	}
	return s.ResponseWriter.Header()
}

func (s *dispatchWriter) WriteHeader(code int) {
	if !s.claimed {
		s.probeStatus = code
		return
	}
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *dispatchWriter) Write(b []byte) (int, error) {
	if !s.claimed {
		return len(b), nil
	}
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *dispatchWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

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

// routeMetrics are one route's series, looked up once: the histogram child
// on the route's first request, the counter child on the first request
// answered with each status. (Looked up lazily, as WithLabelValues on every
// request did, so a route never requested has no series.)
type routeMetrics struct {
	m        *httpMetrics
	route    string
	duration func() prometheus.Observer

	mu       sync.Mutex                                 // serializes additions to requests
	requests atomic.Pointer[map[int]prometheus.Counter] // copied on write
}

func (rm *routeMetrics) requestsFor(status int) prometheus.Counter {
	if byStatus := rm.requests.Load(); byStatus != nil {
		if c, ok := (*byStatus)[status]; ok {
			return c
		}
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	next := map[int]prometheus.Counter{}
	if byStatus := rm.requests.Load(); byStatus != nil {
		maps.Copy(next, *byStatus)
	}
	c, ok := next[status]
	if !ok {
		c = rm.m.requests.WithLabelValues(rm.route, http.StatusText(status))
		next[status] = c
		rm.requests.Store(&next)
	}
	return c
}

// instrument logs and measures one route.
func (m *httpMetrics) instrument(route string, next http.Handler) http.Handler {
	rm := &routeMetrics{m: m, route: route}
	rm.duration = sync.OnceValue(func() prometheus.Observer { return m.duration.WithLabelValues(route) })
	logged := !strings.HasPrefix(route, "GET /healthz")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw, ok := w.(*dispatchWriter)
		if !ok || sw.claimed { // not reached through route
			sw = &dispatchWriter{ResponseWriter: w}
		}
		sw.claimed = true
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		end := time.Now()
		d := end.Sub(start)
		rm.requestsFor(sw.status).Inc()
		rm.duration().Observe(d.Seconds())
		if logged {
			logRequest(r.Context(), end, route, sw.status, d)
		}
	})
}

// logRequest writes the request log line: what slog.InfoContext(ctx, "http",
// "route", route, "status", status, "ms", ...) wrote, without boxing the
// values or capturing the caller's PC, which the JSON handler (no
// AddSource) never reads.
func logRequest(ctx context.Context, at time.Time, route string, status int, d time.Duration) {
	h := slog.Default().Handler()
	if !h.Enabled(ctx, slog.LevelInfo) {
		return
	}
	rec := slog.NewRecord(at, slog.LevelInfo, "http", 0)
	rec.AddAttrs(slog.String("route", route), slog.Int("status", status), slog.Float64("ms", float64(d.Microseconds())/1000))
	_ = h.Handle(ctx, rec)
}
