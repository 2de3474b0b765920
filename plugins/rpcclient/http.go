package rpcclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/sony/gobreaker/v2"
	"go-micro.dev/v4/registry"
	"go-micro.dev/v4/selector"

	"github.com/marketmesh/marketmesh/plugins/config"
)

// HTTP reaches a service's plain HTTP endpoint, whose host:port the service
// publishes in its registry node metadata (the images service's blob
// endpoint): same cached registry, same per-node breakers as RPCs. Requests
// are not retried (their bodies are streams) and carry no deadline of their
// own: uploads take as long as the caller's context allows.
type HTTP struct {
	sel      selector.Selector
	breakers *breakers
	client   *http.Client
	metaKey  string
}

// NewHTTP returns an HTTP client for nodes publishing their address under metaKey.
func NewHTTP(reg registry.Registry, live *config.Live, metaKey string, opts ...Option) *HTTP {
	o := newOptions(opts...)
	return &HTTP{
		sel:      o.selector(reg),
		breakers: newBreakers(live, newMetrics(o.Metrics)),
		client:   &http.Client{Transport: http.DefaultTransport},
		metaKey:  metaKey,
	}
}

// Do sends req to a healthy node of service: req.URL's path and query are
// kept, scheme and host are the node's. A transport error or a 5xx answer
// counts against the node's breaker; the caller closes the response body.
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
	out.URL.Scheme, out.URL.Host, out.Host, out.RequestURI = "http", addr, addr, ""
	var resp *http.Response
	cb := h.breakers.get(service, endpoint, node.Id)
	_, err = cb.Execute(func() (struct{}, error) {
		var err error
		resp, err = h.client.Do(out)
		if err == nil && resp.StatusCode >= 500 {
			return struct{}{}, fmt.Errorf("%s answered %s", node.Id, resp.Status)
		}
		return struct{}{}, err
	})
	if resp != nil { // a 5xx is still handed back: its body says what happened
		return resp, nil
	}
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		return nil, unavailable(service, "circuit open")
	}
	return nil, unavailable(service, "connection failed")
}
