// Package rpcclient builds the go-micro client every marketmesh process uses
// to call services: gRPC transport with the JSON codec (plain Go structs),
// the registry behind a caching selector (no Consul round trip per call), a
// deadline per call, retries for reads only, a circuit breaker per service,
// endpoint and node, request metadata propagation and Prometheus metrics.
// All tunables come from config.Live and may change while running.
package rpcclient

import (
	"context"
	"errors"
	"strings"
	"time"

	grpcclient "github.com/go-micro/plugins/v4/client/grpc"
	"go-micro.dev/v4/client"
	merrors "go-micro.dev/v4/errors"
	"go-micro.dev/v4/registry"
	"go-micro.dev/v4/selector"
	"google.golang.org/grpc"

	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
)

// ClientID is the go-micro error Id of failures raised on the calling side.
const ClientID = "go.micro.client"

// attemptSlack is added per attempt to a call's deadline, so an attempt's own
// timeout fires (and is counted by its node's breaker) before the call's.
const attemptSlack = 50 * time.Millisecond

// New returns the client stack over reg, tuned by live.
func New(reg registry.Registry, live *config.Live, opts ...Option) client.Client {
	o := newOptions(opts...)
	m := newMetrics(o.Metrics)
	b := newBreakers(live, m)
	cfg := live.Get()
	copts := []client.Option{
		client.Registry(reg),
		client.Selector(o.selector(reg)),
		client.ContentType("application/json"),
		client.Retries(0), // the stack decides per call; go-micro's default is 5
		client.RequestTimeout(cfg.RequestTimeout.D()),
		client.DialTimeout(cfg.DialTimeout.D()),
		client.WrapCall(b.wrapCall),
	}
	transport := &grpcTransport{}
	if o.Identity != nil {
		transport.tls = o.Identity.ClientConfig("")
		transport.dialOpts = []grpc.DialOption{o.Identity.CheckService()}
		copts = append(copts,
			grpcclient.AuthTLS(transport.tls),
			func(co *client.Options) { grpcclient.DialOptions(transport.dialOpts...)(&co.CallOptions) },
		)
	}
	for _, w := range o.Wrappers {
		copts = append(copts, client.Wrap(w))
	}
	copts = append(copts, client.Wrap(func(c client.Client) client.Client {
		co := c.Options()
		transport.pool = newPool(co.PoolSize, co.PoolTTL, grpcclient.DefaultPoolMaxIdle, grpcclient.DefaultPoolMaxStreams)
		return &stack{Client: c, live: live, breakers: b, metrics: m, transport: transport}
	}))
	return grpcclient.NewClient(copts...)
}

type stack struct {
	client.Client // the go-micro gRPC client: options, requests, streams
	live          *config.Live
	breakers      *breakers
	metrics       *metrics
	transport     *grpcTransport // what call dials with (see invoke.go)
}

// Init changes the go-micro client's options; the stack's connection pool
// follows its size and TTL, as the client's own pool did.
func (s *stack) Init(opts ...client.Option) error {
	err := s.Client.Init(opts...)
	co := s.Client.Options()
	s.transport.pool.resize(co.PoolSize, co.PoolTTL)
	return err
}

// Call applies the per-call policy, then normalizes calling-side failures
// into 503 "unavailable" errors that name the service.
func (s *stack) Call(ctx context.Context, req client.Request, rsp interface{}, opts ...client.CallOption) error {
	cfg := s.live.Get()
	start := time.Now()
	// Each attempt gets RequestTimeout (breakers.wrapCall enforces it), so a
	// read whose first node hangs still has time to try another one; the
	// call's own deadline covers every attempt it may make.
	read, attempt := callKind(opts, cfg.RequestTimeout.D())
	retries := 0
	if read {
		retries = cfg.ReadRetries
	}
	budget := time.Duration(retries+1) * (attempt + attemptSlack)
	ctx = rpcmeta.Outgoing(ctx)
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	var hidAll bool
	opts = append(opts[:len(opts):len(opts)],
		client.WithRetries(retries),
		retryOption,
		backoffOption,
		client.WithRequestTimeout(attempt),
		client.WithDialTimeout(cfg.DialTimeout.D()),
		client.WithSelectOption(selector.WithFilter(s.breakers.skipOpen(req.Endpoint(), &hidAll))),
	)
	var err error
	if viaGoMicro(req, rsp) {
		err = s.Client.Call(ctx, req, rsp, opts...)
	} else {
		err = s.call(ctx, req, rsp, opts...)
	}
	err = normalize(req.Service(), err, hidAll)
	s.metrics.observe(req.Service(), req.Endpoint(), start, err)
	return err
}

// The retry policy and backoff of every call: the same functions each time,
// so made once.
var (
	retryOption = client.WithRetry(func(ctx context.Context, _ client.Request, _ int, err error) (bool, error) {
		return ctx.Err() == nil && infraFailure(err) && !selectionFailure(err), nil
	})
	// go-micro's default backoff grows 10^n ms; a read retried on another
	// node should go at once, the next one shortly after.
	backoffOption = client.WithBackoff(func(_ context.Context, _ client.Request, attempt int) (time.Duration, error) {
		return time.Duration(attempt) * 10 * time.Millisecond, nil
	})
)

// selectionFailure reports go-micro's "no node to call" errors (no instance
// registered or passing, or all hidden by open breakers). Retrying them
// cannot help within one call. go-micro gives them no code of their own, so
// they are recognized by the wording of its client (grpc plugin v1.2.x).
func selectionFailure(err error) bool {
	var me *merrors.Error
	if !errors.As(err, &me) || me.Id != ClientID {
		return false
	}
	return strings.Contains(me.Detail, "error selecting") ||
		strings.Contains(me.Detail, selector.ErrNotFound.Error()) ||
		strings.Contains(me.Detail, selector.ErrNoneAvailable.Error())
}

// normalize maps the errors the calling side produces (no node, open
// breaker, connection refused, deadline) to 503, keeping service answers as they are.
func normalize(service string, err error, hidAll bool) error {
	if err == nil {
		return nil
	}
	if hidAll {
		return unavailable(service, "circuit open")
	}
	var me *merrors.Error
	if !errors.As(err, &me) {
		return unavailable(service, "transport error")
	}
	switch {
	case me.Id == ClientID && me.Code == 408:
		return unavailable(service, "timed out")
	case selectionFailure(err):
		return unavailable(service, "no passing instance")
	case me.Id == ClientID:
		return unavailable(service, "connection failed")
	case me.Code == 408 || me.Code == 502 || me.Code == 504:
		return unavailable(service, "timed out")
	}
	return err
}
