package service

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether one dependency is usable; nil means ready.
type Check func(ctx context.Context) error

// Health answers /healthz (the process is alive and not draining) and
// /readyz (every registered check passes). Consul probes one of them.
type Health struct {
	instance string // node ID; probes naming another instance fail

	mu       sync.RWMutex
	checks   map[string]Check
	draining bool
}

// NewHealth returns an empty Health for the instance with node ID instance.
func NewHealth(instance string) *Health {
	return &Health{instance: instance, checks: map[string]Check{}}
}

// StaleProbe reports a probe meant for another instance that used to have
// this address (see CheckURL).
func StaleProbe(r *http.Request, instance string) bool {
	if r.URL.RawQuery == "" {
		return false // no query, no instance named (and no map parsed for it)
	}
	id := r.URL.Query().Get("instance")
	return id != "" && id != instance
}

// Add registers a readiness check.
func (h *Health) Add(name string, c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = c
}

// Drain makes both endpoints fail from now on: the instance is going away.
func (h *Health) Drain() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.draining = true
}

type healthBody struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks,omitempty"`
}

// Mount adds /healthz, /readyz, /metrics and /debug/pprof/ to mux: the
// ops listener's routes, never a public port's (pprof shows the process's
// memory, command line and stacks, and a profile costs CPU while it runs).
func (h *Health) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", h.serveHealth)
	mux.HandleFunc("GET /readyz", h.serveReady)
	mux.Handle("GET /metrics", promhttp.Handler())
	// The same handlers as the api's ops listener (api/internal/ops);
	// Index serves the named profiles (heap, goroutine, allocs, ...) too.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

func (h *Health) serveHealth(w http.ResponseWriter, r *http.Request) {
	if StaleProbe(r, h.instance) {
		writeJSON(w, http.StatusServiceUnavailable, healthBody{Status: "stale instance"})
		return
	}
	h.mu.RLock()
	draining := h.draining
	h.mu.RUnlock()
	if draining {
		writeJSON(w, http.StatusServiceUnavailable, healthBody{Status: "draining"})
		return
	}
	writeJSON(w, http.StatusOK, healthBody{Status: "ok"})
}

func (h *Health) serveReady(w http.ResponseWriter, r *http.Request) {
	if StaleProbe(r, h.instance) {
		writeJSON(w, http.StatusServiceUnavailable, healthBody{Status: "stale instance"})
		return
	}
	status, body := h.Ready(r.Context())
	writeJSON(w, status, body)
}

// Ready runs every check (in parallel, 2 s at most) and returns the status and report.
func (h *Health) Ready(ctx context.Context) (int, any) {
	h.mu.RLock()
	draining := h.draining
	names := make([]string, 0, len(h.checks))
	for n := range h.checks {
		names = append(names, n)
	}
	sort.Strings(names)
	checks := make([]Check, len(names))
	for i, n := range names {
		checks[i] = h.checks[n]
	}
	h.mu.RUnlock()

	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	results := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = c(ctx)
		}()
	}
	wg.Wait()

	body := healthBody{Status: "ready", Checks: map[string]string{}}
	status := http.StatusOK
	for i, n := range names {
		body.Checks[n] = "ok"
		if results[i] != nil {
			body.Checks[n] = results[i].Error()
			body.Status, status = "unready", http.StatusServiceUnavailable
		}
	}
	if draining {
		body.Status, status = "draining", http.StatusServiceUnavailable
	}
	return status, body
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
