// Package openapi holds the OpenAPI 3.0 document of the marketmesh public
// REST API v1 and serves it, together with an offline Swagger UI.
package openapi

import (
	"bytes"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"sync"

	swaggerfiles "github.com/swaggo/files/v2"
)

//go:embed openapi.json
var document []byte

// ui holds our Swagger UI index page and initializer, which point at
// /openapi.json instead of the upstream petstore default.
//
//go:embed swaggerui
var ui embed.FS

// Document returns the OpenAPI 3.0.3 document (JSON). The caller owns the
// returned slice.
func Document() []byte {
	return bytes.Clone(document)
}

// methods are the OpenAPI path item keys that name operations.
var methods = map[string]bool{
	"get": true, "put": true, "post": true, "delete": true,
	"options": true, "head": true, "patch": true, "trace": true,
}

var paths = sync.OnceValue(func() map[string][]string {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(document, &doc); err != nil {
		panic("openapi: embedded document: " + err.Error())
	}
	out := make(map[string][]string, len(doc.Paths))
	for path, item := range doc.Paths {
		var ms []string
		for key := range item {
			if methods[key] {
				ms = append(ms, strings.ToUpper(key))
			}
		}
		slices.Sort(ms)
		out[path] = ms
	}
	return out
})

// Paths returns, for each path template in the document (such as
// "/v1/users/{id}"), the sorted upper-case HTTP methods documented for it.
// The caller owns the returned map.
func Paths() map[string][]string {
	out := make(map[string][]string)
	for p, ms := range paths() {
		out[p] = slices.Clone(ms)
	}
	return out
}

// Handler serves GET /openapi.json (the document) and Swagger UI at /docs,
// /docs/ and its static assets under /docs/, all from embedded files.
// connect names the other origins Swagger UI's "Try it out" may call (the
// api's allowed CORS origins); its own origin is always allowed.
func Handler(connect ...string) http.Handler {
	index, err := fs.ReadFile(ui, "swaggerui/index.html")
	if err != nil {
		panic("openapi: " + err.Error())
	}
	initializer, err := fs.ReadFile(ui, "swaggerui/swagger-initializer.js")
	if err != nil {
		panic("openapi: " + err.Error())
	}
	assets := http.StripPrefix("/docs/", http.FileServerFS(swaggerfiles.FS))

	mux := http.NewServeMux()
	mux.HandleFunc("GET /openapi.json", serve("application/json", document))
	mux.HandleFunc("GET /docs", serve("text/html; charset=utf-8", index))
	mux.HandleFunc("GET /docs/{$}", serve("text/html; charset=utf-8", index))
	mux.HandleFunc("GET /docs/swagger-initializer.js", serve("text/javascript; charset=utf-8", initializer))
	mux.HandleFunc("GET /docs/", func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/docs/")
		if st, err := fs.Stat(swaggerfiles.FS, name); err != nil || st.IsDir() || name == "index.html" {
			notFound(w, r)
			return
		}
		assets.ServeHTTP(w, r)
	})
	csp := ContentSecurityPolicy(connect...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/docs" || strings.HasPrefix(r.URL.Path, "/docs/") {
			h := w.Header()
			h.Set("Content-Security-Policy", csp)
			h.Set("X-Frame-Options", "DENY")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("X-Content-Type-Options", "nosniff")
		}
		mux.ServeHTTP(w, r)
	})
}

// ContentSecurityPolicy is the policy of the Swagger UI pages: scripts,
// styles and fonts from this origin only (the UI is bundled and has no
// inline script or style element: its initializer is a file), images also
// as data: URIs (the stylesheet's icons) and blob: URLs (image responses
// shown by "Try it out"), requests to this origin and the connect origins
// (the api's other allowed origins, for a server picked in the UI), no
// plugins, no framing, no <base> rewriting, forms posted nowhere else.
func ContentSecurityPolicy(connect ...string) string {
	connectSrc := "'self'"
	for _, o := range connect {
		if o = strings.TrimSpace(o); o != "" && !strings.ContainsAny(o, " ;,'\"") {
			connectSrc += " " + o
		}
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; font-src 'self'; " +
		"connect-src " + connectSrc + "; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}

// serve writes body with the given content type.
func serve(contentType string, body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(body)
	}
}

// notFound writes the API's standard not_found error body.
func notFound(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Error struct {
			Code      string `json:"code"`
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	body.Error.Code = "not_found"
	body.Error.Message = "no such file: " + r.URL.Path
	body.Error.RequestID = w.Header().Get("X-Request-Id")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNotFound)
	json.NewEncoder(w).Encode(body)
}
