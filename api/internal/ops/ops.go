// Package ops is the api's operations listener: liveness, readiness,
// Prometheus metrics and pprof, on an address that is not published
// (API_OPS_ADDRESS, 127.0.0.1:9200 by default), the way every service has
// one (plugins/service). Consul and the container health check probe it.
//
// Readiness asks Consul about every backing service, which is not free: the
// answer is cached (one second by default) and concurrent probes share one
// check, so a flood of probes costs one check per period.
package ops

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/marketmesh/marketmesh/plugins/service"
)

// Options configure the ops handler.
type Options struct {
	// Instance is this api's registry node ID: a probe that names another
	// instance (a predecessor on the same port) fails (service.CheckURL).
	Instance string
	// Ready reports readiness: status code and JSON body; nil is always ready.
	Ready func(ctx context.Context) (int, any)
	// ReadyFor is how long a readiness answer is reused (default 1 s).
	ReadyFor time.Duration
	// ReadyTimeout bounds one readiness check (default 2 s).
	ReadyTimeout time.Duration
	// Metrics serves /metrics (default: the default Prometheus registry).
	Metrics http.Handler
	// Now replaces time.Now (tests).
	Now func() time.Time
}

// Ops serves /healthz, /readyz, /metrics and /debug/pprof/.
type Ops struct {
	opts Options
	mux  *http.ServeMux

	mu       sync.Mutex
	draining bool
	at       time.Time // when the cached answer was computed
	status   int
	body     any
	inflight chan struct{} // closed when the running check is done
}

// New returns the ops handler.
func New(o Options) *Ops {
	if o.ReadyFor <= 0 {
		o.ReadyFor = time.Second
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 2 * time.Second
	}
	if o.Metrics == nil {
		o.Metrics = promhttp.Handler()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Ops{opts: o, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", s.health)
	s.mux.HandleFunc("GET /readyz", s.ready)
	s.mux.Handle("GET /metrics", o.Metrics)
	s.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	s.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Ops) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Drain makes /healthz and /readyz fail from now on: the api is going away.
func (s *Ops) Drain() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.draining = true
}

func (s *Ops) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

type statusBody struct {
	Status string `json:"status"`
}

func (s *Ops) health(w http.ResponseWriter, r *http.Request) {
	switch {
	case service.StaleProbe(r, s.opts.Instance):
		writeJSON(w, http.StatusServiceUnavailable, statusBody{"stale instance"})
	case s.isDraining():
		writeJSON(w, http.StatusServiceUnavailable, statusBody{"draining"})
	default:
		writeJSON(w, http.StatusOK, statusBody{"ok"})
	}
}

func (s *Ops) ready(w http.ResponseWriter, r *http.Request) {
	switch {
	case service.StaleProbe(r, s.opts.Instance):
		writeJSON(w, http.StatusServiceUnavailable, statusBody{"stale instance"})
	case s.isDraining():
		writeJSON(w, http.StatusServiceUnavailable, statusBody{"draining"})
	default:
		status, body := s.Ready(r.Context())
		writeJSON(w, status, body)
	}
}

// Ready returns the readiness answer, from the cache while it is fresh.
// Concurrent callers share one check; a caller that gives up before it ends
// gets 503, and the check still completes for the next one.
func (s *Ops) Ready(ctx context.Context) (int, any) {
	if s.opts.Ready == nil {
		return http.StatusOK, statusBody{"ready"}
	}
	s.mu.Lock()
	if !s.at.IsZero() && s.opts.Now().Sub(s.at) < s.opts.ReadyFor {
		status, body := s.status, s.body
		s.mu.Unlock()
		return status, body
	}
	done := s.inflight
	if done == nil {
		done = make(chan struct{})
		s.inflight = done
		// Detached from this caller: others wait for the same answer. It
		// ends by its own deadline.
		checkCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ReadyTimeout)
		go func() {
			defer cancel()
			status, body := s.opts.Ready(checkCtx)
			s.mu.Lock()
			s.status, s.body, s.at = status, body, s.opts.Now()
			s.inflight = nil
			s.mu.Unlock()
			close(done)
		}()
	}
	s.mu.Unlock()
	select {
	case <-done:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.status, s.body
	case <-ctx.Done():
		return http.StatusServiceUnavailable, statusBody{"unready: the readiness check did not finish in time"}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
