package rpcclient

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go-micro.dev/v4/client"
	"go-micro.dev/v4/registry"
	"go-micro.dev/v4/selector"

	"github.com/marketmesh/marketmesh/plugins/meshtls"
)

// Options configure the client stack.
type Options struct {
	// Metrics receives the client's collectors (default: prometheus.DefaultRegisterer).
	Metrics prometheus.Registerer
	// Wrappers are extra go-micro client wrappers, outermost first.
	Wrappers []client.Wrapper
	// Selector picks nodes from a watched cache of the registry; clients of
	// one process should share one, so Consul is watched once.
	Selector selector.Selector
	// Identity is the certificate the client proves its service with, and
	// the CA it checks servers against (mutual TLS). Without it the client
	// dials in plain text, which no marketmesh server accepts: only tests of
	// the stack itself against bare go-micro servers go without.
	Identity *meshtls.Identity
}

// Option changes Options.
type Option func(*Options)

// Metrics sets where the client's Prometheus collectors are registered.
func Metrics(r prometheus.Registerer) Option { return func(o *Options) { o.Metrics = r } }

// Wrap adds go-micro client wrappers outside the stack.
func Wrap(w ...client.Wrapper) Option {
	return func(o *Options) { o.Wrappers = append(o.Wrappers, w...) }
}

// Identity makes every call go over mutual TLS as id's service, to a server
// that proves the service called (see meshtls.Identity.CheckService).
func Identity(id *meshtls.Identity) Option { return func(o *Options) { o.Identity = id } }

// Selector shares a node selector (see NewSelector) between clients.
func Selector(sel selector.Selector) Option { return func(o *Options) { o.Selector = sel } }

// NewSelector returns the selector the stack uses: a watched cache of reg
// (calls never wait on Consul, and keep working on stale data if it is
// down), round robin from a random start so a retry goes to the next node.
func NewSelector(reg registry.Registry) selector.Selector {
	return selector.NewSelector(selector.Registry(reg), selector.SetStrategy(selector.RoundRobin))
}

func (o Options) selector(reg registry.Registry) selector.Selector {
	if o.Selector != nil {
		return o.Selector
	}
	return NewSelector(reg)
}

func newOptions(opts ...Option) Options {
	o := Options{Metrics: prometheus.DefaultRegisterer}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

type readKey struct{}

// Read marks a call as a read: safe to retry on another node when the first
// attempt fails for infrastructure reasons. Calls without it are writes and
// are tried exactly once.
func Read() client.CallOption {
	return func(o *client.CallOptions) {
		if o.Context == nil {
			o.Context = context.Background()
		}
		o.Context = context.WithValue(o.Context, readKey{}, true)
	}
}

func isRead(opts []client.CallOption) bool {
	var o client.CallOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o.Context != nil && o.Context.Value(readKey{}) == true
}

type timeoutKey struct{}

// Timeout gives one call a longer (or shorter) attempt deadline than the
// live request_timeout: for a write that does several steps of its own
// before answering (the checkout saga). It is not retried either way.
func Timeout(d time.Duration) client.CallOption {
	return func(o *client.CallOptions) {
		if o.Context == nil {
			o.Context = context.Background()
		}
		o.Context = context.WithValue(o.Context, timeoutKey{}, d)
	}
}

// callTimeout is the attempt deadline of a call: Timeout's, else def.
func callTimeout(opts []client.CallOption, def time.Duration) time.Duration {
	var o client.CallOptions
	for _, opt := range opts {
		opt(&o)
	}
	return attemptTimeout(o.Context, def)
}

// attemptTimeout is the Timeout carried by call options' context, else def.
func attemptTimeout(ctx context.Context, def time.Duration) time.Duration {
	if ctx != nil {
		if d, ok := ctx.Value(timeoutKey{}).(time.Duration); ok && d > 0 {
			return d
		}
	}
	return def
}

// Call makes one typed RPC: the contract packages' clients are one line per
// endpoint on top of it.
func Call[Rsp any](ctx context.Context, c client.Client, service, endpoint string, req any, opts ...client.CallOption) (*Rsp, error) {
	rsp := new(Rsp)
	if err := c.Call(ctx, c.NewRequest(service, endpoint, req), rsp, opts...); err != nil {
		return nil, err
	}
	return rsp, nil
}
