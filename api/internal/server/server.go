// Package server is the api's public HTTP layer: the route table,
// middleware (request IDs, security headers, CORS, recovery, metrics, auth,
// body limits, abuse limits) and the handlers that turn REST calls into
// RPCs on the services. Readiness and metrics are not here: they live on
// the ops listener (api/internal/ops), which is not published.
package server

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketmesh/marketmesh/api/internal/clientaddr"
	"github.com/marketmesh/marketmesh/api/internal/openapi"
	"github.com/marketmesh/marketmesh/api/internal/ratelimit"
	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/contracts/notificationsrpc"
	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/apierror"
	"github.com/marketmesh/marketmesh/plugins/auth"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/plugins/service"
)

// Options configure the api.
type Options struct {
	Users        *usersrpc.Client
	Products     *productsrpc.Client
	Publications *publicationsrpc.Client
	Images       *imagesrpc.Client
	Orders       *ordersrpc.Client
	// Notifications reaches the notifications service: the caller's
	// deliveries, and for operators its dead letters.
	Notifications *notificationsrpc.Client
	// Events reaches the dead-letter administration (events.EventsAdmin) of
	// each producing service, by short name ("orders"): the services the
	// admin dead-letter routes know.
	Events map[string]*events.AdminClient
	// Blobs reaches the images service's HTTP endpoint (uploads and bytes):
	// rpcclient.HTTP in production.
	Blobs BlobClient
	// PartTimeout bounds each optional part of an aggregated read.
	PartTimeout time.Duration
	Signer      *auth.Signer
	// Admins are the user IDs granted the admin role when they log in.
	Admins  []string
	MaxBody int64 // request body limit in bytes
	// TrustedProxies are the peers whose X-Forwarded-For is believed when
	// finding a client's address (see clientaddr); none by default: the
	// peer is the client.
	TrustedProxies []netip.Prefix
	// Login limits (see ratelimit): every attempt per client address a
	// minute (LoginPerMinuteIP, default 60); failed attempts per account and
	// client address a minute (LoginPerMinuteEmail, default 10); failed
	// attempts per account from everywhere an hour before the account is
	// guarded (LoginFailuresPerHourAccount, default 100). Zero means the
	// default, not "refuse every login".
	LoginPerMinuteIP, LoginPerMinuteEmail, LoginFailuresPerHourAccount int
	// RegisterPerHourIP bounds sign-ups per client address an hour (default 20).
	RegisterPerHourIP int
	// RefreshPerMinuteIP bounds token refreshes and logouts per client
	// address a minute (default 60): a client refreshes once per access
	// token lifetime, so this leaves room for many clients behind one NAT.
	RefreshPerMinuteIP int
	// CORSOrigins are the browser origins allowed to call the api from
	// another origin ("*": any); none means DefaultCORSOrigins.
	CORSOrigins []string
	// InstanceID is this api's registry node ID; health probes for another
	// instance (a predecessor on the same port) fail.
	InstanceID string
	// Metrics is where HTTP metrics are registered (default registry if nil).
	Metrics prometheus.Registerer
}

// API is the public HTTP handler.
type API struct {
	opts          Options
	users         *usersrpc.Client
	products      *productsrpc.Client
	publications  *publicationsrpc.Client
	images        *imagesrpc.Client
	orders        *ordersrpc.Client
	notifications *notificationsrpc.Client
	events        map[string]*events.AdminClient
	blobs         BlobClient
	signer        *auth.Signer
	admins        map[string]bool
	clients       *clientaddr.Resolver
	logins        *ratelimit.Login
	registrations *ratelimit.PerClient
	refreshes     *ratelimit.PerClient // refresh and logout
	cors          corsPolicy
	metrics       *httpMetrics
	mux           *http.ServeMux
	routes        []route
}

// BlobClient sends a request to a healthy node of service's HTTP endpoint.
type BlobClient interface {
	Do(ctx context.Context, service string, req *http.Request) (*http.Response, error)
}

// handlerFunc is a route handler; a returned error is written in the error shape.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

type route struct {
	method, path string
	auth         bool // requires a bearer token; the caller is in rpcmeta, its roles in withRoles
	h            handlerFunc
}

// New builds the api.
func New(o Options) *API {
	if o.MaxBody <= 0 {
		o.MaxBody = 1 << 20
	}
	// A zero-burst token bucket never grants a token: every login would be
	// refused with a Retry-After of centuries.
	if o.LoginPerMinuteIP <= 0 {
		o.LoginPerMinuteIP = 60
	}
	if o.LoginPerMinuteEmail <= 0 {
		o.LoginPerMinuteEmail = 10
	}
	if o.LoginFailuresPerHourAccount <= 0 {
		o.LoginFailuresPerHourAccount = 100
	}
	if o.RegisterPerHourIP <= 0 {
		o.RegisterPerHourIP = 20
	}
	if o.RefreshPerMinuteIP <= 0 {
		o.RefreshPerMinuteIP = 60
	}
	if len(o.CORSOrigins) == 0 {
		o.CORSOrigins = DefaultCORSOrigins
	}
	if o.Metrics == nil {
		o.Metrics = prometheus.DefaultRegisterer
	}
	if o.PartTimeout <= 0 {
		o.PartTimeout = 300 * time.Millisecond
	}
	a := &API{
		opts:          o,
		users:         o.Users,
		products:      o.Products,
		publications:  o.Publications,
		images:        o.Images,
		orders:        o.Orders,
		notifications: o.Notifications,
		events:        o.Events,
		blobs:         o.Blobs,
		signer:        o.Signer,
		admins:        map[string]bool{},
		clients:       clientaddr.New(o.TrustedProxies),
		logins: ratelimit.NewLogin(ratelimit.LoginOptions{
			PerClient:        o.LoginPerMinuteIP,
			PerClientAccount: o.LoginPerMinuteEmail,
			PerAccount:       o.LoginFailuresPerHourAccount,
		}),
		registrations: ratelimit.NewPerClient(ratelimit.LimitRegisterClient, o.RegisterPerHourIP, time.Hour, 0, nil),
		refreshes:     ratelimit.NewPerClient(ratelimit.LimitRefreshClient, o.RefreshPerMinuteIP, time.Minute, 0, nil),
		cors:          newCORSPolicy(o.CORSOrigins),
		metrics:       newHTTPMetrics(o.Metrics),
		mux:           http.NewServeMux(),
	}
	for _, id := range o.Admins {
		a.admins[id] = true
	}
	a.routes = []route{
		{"POST", "/v1/auth/register", false, a.register},
		{"POST", "/v1/auth/login", false, a.login},
		{"POST", "/v1/auth/refresh", false, a.refresh},
		{"POST", "/v1/auth/logout", false, a.logout},
		{"GET", "/v1/users/me", true, a.me},
		{"PATCH", "/v1/users/me", true, a.updateMe},
		{"GET", "/v1/users/{id}", false, a.profile},
		{"GET", "/v1/users/me/wishlist", true, a.listWishlist},
		{"POST", "/v1/users/me/wishlist", true, a.addWishlist},
		{"DELETE", "/v1/users/me/wishlist/{publication_id}", true, a.removeWishlist},
		{"GET", "/v1/users/me/bank-accounts", true, a.listBankAccounts},
		{"POST", "/v1/users/me/bank-accounts", true, a.addBankAccount},
		{"DELETE", "/v1/users/me/bank-accounts/{id}", true, a.removeBankAccount},
		{"GET", "/v1/users/me/devices", true, a.listDevices},
		{"POST", "/v1/users/me/devices", true, a.addDevice},
		{"DELETE", "/v1/users/me/devices/{token}", true, a.removeDevice},
		{"GET", "/v1/users/me/notification-preferences", true, a.preferences},
		{"PUT", "/v1/users/me/notification-preferences", true, a.setPreferences},
		{"POST", "/v1/products", true, a.createProduct},
		{"GET", "/v1/products", false, a.searchProducts},
		{"GET", "/v1/products/{id}", false, a.getProduct},
		{"PATCH", "/v1/products/{id}", true, a.updateProduct},
		{"DELETE", "/v1/products/{id}", true, a.deleteProduct},
		{"GET", "/v1/categories", false, a.categories},
		{"POST", "/v1/publications", true, a.createPublication},
		{"GET", "/v1/publications", false, a.searchPublications},
		{"GET", "/v1/publications/{id}", false, a.getPublication},
		{"PATCH", "/v1/publications/{id}", true, a.updatePublication},
		{"POST", "/v1/images", true, a.uploadImage},
		{"GET", "/v1/images", false, a.listImages},
		{"GET", "/v1/images/{id}", false, a.imageBytes},
		{"GET", "/v1/images/{id}/thumbnail", false, a.thumbnailBytes},
		{"DELETE", "/v1/images/{id}", true, a.deleteImage},
		{"GET", "/v1/cart", true, a.getCart},
		{"POST", "/v1/cart/items", true, a.setCartItem},
		{"DELETE", "/v1/cart/items/{publication_id}", true, a.removeCartItem},
		{"POST", "/v1/cart/checkout", true, a.checkout},
		{"POST", "/v1/orders", true, a.createOrder},
		{"GET", "/v1/orders", true, a.listOrders},
		{"GET", "/v1/orders/{id}", true, a.getOrder},
		{"POST", "/v1/orders/{id}/cancel", true, a.cancelOrder},
		{"POST", "/v1/orders/{id}/ship", true, a.shipOrder},
		{"POST", "/v1/orders/{id}/deliver", true, a.deliverOrder},
		{"POST", "/v1/payments/webhook", false, a.paymentWebhook},
		{"GET", "/v1/notifications", true, a.listNotifications},
		{"GET", "/v1/admin/events/dead-letters", true, a.requireAdmin(a.listDeadLetters)},
		{"POST", "/v1/admin/events/dead-letters/{service}/{subscriber}/{seq}/replay", true, a.requireAdmin(a.replayDeadLetter)},
		{"GET", "/v1/admin/notifications/dead-letters", true, a.requireAdmin(a.listNotificationDeadLetters)},
		{"POST", "/v1/admin/notifications/dead-letters/{id}/retry", true, a.requireAdmin(a.retryNotification)},
		{"GET", "/healthz", false, a.healthz},
	}
	for _, rt := range a.routes {
		pattern := rt.method + " " + rt.path
		a.mux.Handle(pattern, a.metrics.instrument(pattern, a.adapt(rt)))
	}
	// Swagger UI's "Try it out" may call the api at any origin it is allowed from.
	docs := openapi.Handler(a.cors.origins()...)
	for _, p := range []string{"GET /openapi.json", "GET /docs", "GET /docs/"} {
		a.mux.Handle(p, a.metrics.instrument(p, docs))
	}
	return a
}

// Routes lists "METHOD /path" of every JSON route (for the OpenAPI check).
func (a *API) Routes() []string {
	out := make([]string, 0, len(a.routes)+4)
	for _, rt := range a.routes {
		out = append(out, rt.method+" "+rt.path)
	}
	return append(out, "GET /openapi.json", "GET /docs")
}

// Handler is the complete HTTP handler with middleware.
func (a *API) Handler() http.Handler {
	return requestID(securityHeaders(a.cors.handle(recoverer(http.HandlerFunc(a.route)))))
}

// route dispatches through the mux, but answers unknown paths and methods in
// the JSON error shape instead of ServeMux's plain text. ServeMux would
// redirect a path that is not canonical ("/v1/products/..", "//v1/cart",
// "/v1/./cart") to its cleaned form, and "/tree" to a registered "/tree/",
// with an HTML body; routes here are exact, so each of those is a 404 in
// the error shape, never a redirect.
func (a *API) route(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect && !isCleanPath(r.URL.EscapedPath()) {
		apierror.WriteStatus(w, r, http.StatusNotFound, notFound(r)+": a path must not have empty, '.' or '..' segments")
		return
	}
	// Every registered handler claims the writer (instrument): a request
	// for a route is matched once, by ServeHTTP, which also sets its
	// pattern and path values.
	sw := &dispatchWriter{ResponseWriter: w}
	a.mux.ServeHTTP(sw, r)
	if sw.claimed {
		return
	}
	// No route took it: one of the mux's own handlers answered the probe
	// (404, 405 with Allow, or a redirect).
	_, pattern := a.mux.Handler(r)
	if pattern != "" {
		// A subtree pattern ("GET /docs/") matches a path one segment
		// shorter (the path without the trailing slash) only to redirect.
		if _, pp, _ := strings.Cut(pattern, " "); strings.HasSuffix(pp, "/") &&
			strings.Count(pp, "/") == strings.Count(r.URL.EscapedPath(), "/")+1 {
			apierror.WriteStatus(w, r, http.StatusNotFound, notFound(r)+" (did you mean "+r.URL.Path+"/?)")
			return
		}
		a.mux.ServeHTTP(w, r)
		return
	}
	if sw.probeStatus == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", sw.probeHeader.Get("Allow"))
		apierror.WriteStatus(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed on "+r.URL.Path)
		return
	}
	apierror.WriteStatus(w, r, http.StatusNotFound, notFound(r))
}

// notFound is the start of the message for a request no route serves.
func notFound(r *http.Request) string { return "no route for " + r.Method + " " + r.URL.Path }

// isCleanPath reports whether ServeMux would serve p as it is rather than
// redirect to a cleaned form: rooted, with no empty, "." or ".." segments
// (a trailing slash is kept, as ServeMux keeps it).
func isCleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean == p
}

// adapt applies auth and turns a returned error into the error document.
// Answers about an account (every authenticated route, and registration and
// login, which return the account and a token) are never stored by a cache.
func (a *API) adapt(rt route) http.Handler {
	private := rt.auth || strings.HasPrefix(rt.path, "/v1/auth/")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if private {
			w.Header().Set("Cache-Control", "no-store")
		}
		if rt.auth {
			claims, err := a.authenticate(r)
			if err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="marketmesh"`)
				apierror.Write(w, r, err)
				return
			}
			r = r.WithContext(withRoles(rpcmeta.WithCaller(r.Context(), claims.Subject), claims.Roles))
		}
		if err := rt.h(w, r); err != nil {
			apierror.Write(w, r, err)
		}
	})
}

func (a *API) authenticate(r *http.Request) (auth.Claims, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return auth.Claims{}, apierror.New(http.StatusUnauthorized, "missing bearer token: send Authorization: Bearer <token> from /v1/auth/login")
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return auth.Claims{}, apierror.New(http.StatusUnauthorized, "Authorization header must be 'Bearer <token>'")
	}
	claims, err := a.signer.VerifyClaims(strings.TrimSpace(token))
	if errors.Is(err, auth.ErrExpired) {
		return auth.Claims{}, apierror.New(http.StatusUnauthorized, "token expired: get a new one from POST /v1/auth/refresh with the refresh token")
	}
	if err != nil {
		return auth.Claims{}, apierror.New(http.StatusUnauthorized, "invalid or expired token")
	}
	return claims, nil
}

// healthz is the public liveness answer: cheap, no dependency is asked.
// Readiness is on the ops listener only.
func (a *API) healthz(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	if service.StaleProbe(r, a.opts.InstanceID) {
		writeJSONBytes(w, http.StatusServiceUnavailable, healthStale)
		return nil
	}
	writeJSONBytes(w, http.StatusOK, healthOK)
	return nil
}

// The bodies of healthz, as writeJSON would encode map[string]string{"status": ...}
// (TestHealthzBodies checks they still are): a probe answered many times a
// second need not encode a map each time.
var (
	healthOK    = []byte(`{"status":"ok"}` + "\n")
	healthStale = []byte(`{"status":"stale instance"}` + "\n")
)

// clientAddr is the address of the client behind r (see clientaddr).
func (a *API) clientAddr(r *http.Request) netip.Addr { return a.clients.Addr(r) }
