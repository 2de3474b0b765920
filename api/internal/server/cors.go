package server

import (
	"net/http"
	"slices"
	"strings"
)

// DefaultCORSOrigins are the api's own origins in development: Swagger UI
// opened at one of them may call the other.
var DefaultCORSOrigins = []string{"http://localhost:8080", "http://127.0.0.1:8080"}

// CORS: what a browser page from an allowed origin may send. The api
// authenticates with bearer tokens, never cookies, so credentials are not
// allowed (no Access-Control-Allow-Credentials).
const (
	corsMethods = "GET, POST, PUT, PATCH, DELETE"
	corsHeaders = "Authorization, Content-Type, Idempotency-Key, If-None-Match, X-Request-Id"
	corsExpose  = "X-Request-Id, Retry-After, Location, ETag"
	corsMaxAge  = "600" // seconds a browser may reuse a preflight answer
)

// corsPolicy answers cross-origin requests from the configured origins only.
type corsPolicy struct {
	any     bool // "*" was configured
	allowed []string
}

// newCORSPolicy takes origins as configured ("https://shop.example",
// trailing slashes and spaces ignored, "*" for any).
func newCORSPolicy(origins []string) corsPolicy {
	var p corsPolicy
	for _, o := range origins {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		switch {
		case o == "*":
			p.any = true
		case o != "":
			p.allowed = append(p.allowed, strings.ToLower(o))
		}
	}
	return p
}

// origins are the allowed origins, for Swagger UI's connect-src.
func (p corsPolicy) origins() []string { return slices.Clone(p.allowed) }

func (p corsPolicy) allows(origin string) bool {
	return origin != "" && (p.any || slices.Contains(p.allowed, strings.ToLower(origin)))
}

// handle answers preflights itself (204: with the allowed methods and
// headers for an allowed origin, without any CORS header otherwise, which a
// browser takes as a refusal) and marks answers to allowed origins readable.
func (p corsPolicy) handle(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		allowed := p.allows(origin)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			if allowed {
				h.Set("Access-Control-Allow-Origin", p.allowOrigin(origin))
				h.Set("Access-Control-Allow-Methods", corsMethods)
				h.Set("Access-Control-Allow-Headers", corsHeaders)
				h.Set("Access-Control-Max-Age", corsMaxAge)
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if allowed {
			h.Set("Access-Control-Allow-Origin", p.allowOrigin(origin))
			h.Set("Access-Control-Expose-Headers", corsExpose)
		}
		next.ServeHTTP(w, r)
	})
}

func (p corsPolicy) allowOrigin(origin string) string {
	if p.any {
		return "*"
	}
	return origin
}
