package rpcclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"go-micro.dev/v4/registry"
	"go-micro.dev/v4/selector"

	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/meshtls"
)

// HTTP reaches a service's plain HTTP endpoint, whose host:port the service
// publishes in its registry node metadata (the images service's blob
// endpoint): same cached registry, same per-node breakers as RPCs. Requests
// are not retried (their bodies are streams). Each has the live dial timeout
// to connect and the live request timeout for the response headers, counted
// from when the request body has been sent: a hung node fails the attempt
// (and counts against its breaker), while uploads and downloads stream for
// as long as the caller's context allows. A request with a body (an upload)
// gives the node WriteResponseTimeout instead, for the work it does on the
// whole body before it answers (the images service decodes and thumbnails).
type HTTP struct {
	sel      selector.Selector
	breakers *breakers
	live     *config.Live
	metaKey  string
	identity *meshtls.Identity

	mu      sync.Mutex
	version uint64
	clients map[string]*httpClients // per service, for live version; rebuilt when the configuration changes
}

// WriteResponseTimeout is how long a node may take to answer after the
// body of a request with one (an upload) has been sent.
const WriteResponseTimeout = 30 * time.Second

// NewHTTP returns an HTTP client for nodes publishing their address under metaKey.
func NewHTTP(reg registry.Registry, live *config.Live, metaKey string, opts ...Option) *HTTP {
	o := newOptions(opts...)
	return &HTTP{
		sel:      o.selector(reg),
		breakers: newBreakers(live, newMetrics(o.Metrics)),
		live:     live,
		metaKey:  metaKey,
		identity: o.Identity,
	}
}

// httpClients are the clients of one service: one for requests without a
// body and one for requests with one (uploads), which wait longer for the
// answer. Each service has its own connections: over mutual TLS a connection
// is checked, at its handshake, to reach the service it was dialed for, and
// is then never used for another.
type httpClients struct{ reads, writes *http.Client }

// httpClient returns the client for service in the current live
// configuration: the dial and response header timeouts are transport
// fields, so a change of either builds new transports (requests in flight
// finish on the old ones).
func (h *HTTP) httpClient(service string, write bool) *http.Client {
	h.mu.Lock()
	defer h.mu.Unlock()
	if v := h.live.Version(); h.clients == nil || v != h.version {
		for _, c := range h.clients {
			c.reads.CloseIdleConnections()
			c.writes.CloseIdleConnections()
		}
		h.clients, h.version = map[string]*httpClients{}, v
	}
	c := h.clients[service]
	if c == nil {
		cfg := h.live.Get()
		transport := func(header time.Duration) *http.Client {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.DialContext = (&net.Dialer{Timeout: cfg.DialTimeout.D(), KeepAlive: 30 * time.Second}).DialContext
			t.ResponseHeaderTimeout = header
			if h.identity != nil {
				t.TLSClientConfig = h.identity.ClientConfig(service)
			}
			return &http.Client{Transport: t}
		}
		c = &httpClients{reads: transport(cfg.RequestTimeout.D()), writes: transport(max(WriteResponseTimeout, cfg.RequestTimeout.D()))}
		h.clients[service] = c
	}
	if write {
		return c.writes
	}
	return c.reads
}

// Do sends req to a healthy node of service: req.URL's path and query are
// kept, scheme and host are the node's. A transport error (refused, dial or
// header timeout, reset) or a 5xx answer counts against the node's breaker,
// unless ctx ended first or the answer is a 503 with Retry-After (the node
// is up and pacing its clients); the caller closes the response body.
func (h *HTTP) Do(ctx context.Context, service string, req *http.Request) (*http.Response, error) {
	const endpoint = "HTTP"
	var hidAll bool
	var node *registry.Node
	next, err := h.sel.Select(service, selector.WithFilter(h.breakers.skipOpen(endpoint, &hidAll)))
	if err == nil {
		node, err = next()
	}
	if err != nil {
		if hidAll {
			return nil, unavailable(service, "circuit open")
		}
		return nil, unavailable(service, "no passing instance")
	}
	addr := node.Metadata[h.metaKey]
	if addr == "" {
		return nil, unavailable(service, fmt.Sprintf("node %s publishes no %q address", node.Id, h.metaKey))
	}
	out := req.Clone(ctx)
	scheme := "http"
	if h.identity != nil {
		scheme = "https"
	}
	out.URL.Scheme, out.URL.Host, out.Host, out.RequestURI = scheme, addr, addr, ""
	var resp *http.Response
	c := h.httpClient(service, req.Body != nil && req.Body != http.NoBody)
	err = h.breakers.run(service, endpoint, node.Id, func() error {
		var err error
		resp, err = c.Do(out)
		if err == nil && resp.StatusCode >= 500 {
			return fmt.Errorf("%s answered %s", node.Id, resp.Status)
		}
		return err
	}, func(error) verdict {
		switch {
		case resp == nil && ctx.Err() != nil:
			return callerGaveUp
		case resp != nil && resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
			// Busy and saying when to come back (images' decode queue is
			// full): an answer, not a failure; its breaker stays closed for
			// the downloads and uploads it can still take.
			return nodeOK
		}
		return nodeFailed
	})
	if resp != nil { // a 5xx is still handed back: its body says what happened
		return resp, nil
	}
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case err == errRejected:
		return nil, unavailable(service, "circuit open")
	case errors.As(err, &ne) && ne.Timeout():
		return nil, unavailable(service, "timed out")
	}
	return nil, unavailable(service, "connection failed")
}
