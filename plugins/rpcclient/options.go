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
// (calls keep working on stale data if Consul is down), round robin from a
// random start so a retry goes to the next node.
//
// The cache is kept current by the watch (Consul blocking queries), so its
// entries live selectorTTL rather than go-micro's minute: past the TTL the
// next call reads the service from Consul before it is sent, once a minute
// per service per process otherwise, a Consul request and a slow call each
// time.
func NewSelector(reg registry.Registry) selector.Selector {
	return selector.NewSelector(selector.Registry(reg), selector.SetStrategy(selector.RoundRobin), func(o *selector.Options) {
		if o.Context == nil {
			o.Context = context.Background()
		}
		o.Context = context.WithValue(o.Context, selectorTTLKey, selectorTTL)
	})
}

// selectorTTL is how long a registry cache entry is trusted without a
// watch event; selectorTTLKey is the context key go-micro's selector reads.
const (
	selectorTTL    = 10 * time.Minute
	selectorTTLKey = "selector_ttl"
)

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

// readOption and readContext are Read's, made once: the option is the same
// for every read, and a call without options of its own gets a context that
// says "read" and nothing else, which may as well be shared.
var (
	readContext = context.WithValue(context.Background(), readKey{}, true)
	readOption  = client.CallOption(func(o *client.CallOptions) {
		if o.Context == nil {
			o.Context = readContext
			return
		}
		o.Context = context.WithValue(o.Context, readKey{}, true)
	})
)

// Read marks a call as a read: safe to retry on another node when the first
// attempt fails for infrastructure reasons. Calls without it are writes and
// are tried exactly once.
func Read() client.CallOption { return readOption }

// callKind reports, in one pass over a call's options, whether it is a read
// (Read) and its attempt deadline (Timeout's, else def).
func callKind(opts []client.CallOption, def time.Duration) (read bool, attempt time.Duration) {
	var o client.CallOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o.Context != nil && o.Context.Value(readKey{}) == true, attemptTimeout(o.Context, def)
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
