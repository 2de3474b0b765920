// Package service bootstraps a marketmesh service: a go-micro gRPC server
// (JSON codec, plain Go structs) registered in Consul as marketmesh.<name>
// with its version and an HTTP health check that Consul probes, the shared
// client stack for calling other services, slog JSON logs carrying request
// IDs, Prometheus metrics, live configuration from Consul KV, and a graceful
// shutdown: fail health, deregister, wait, drain in-flight calls, stop.
package service

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/go-micro/plugins/v4/registry/consul"
	grpcserver "github.com/go-micro/plugins/v4/server/grpc"
	"github.com/google/uuid"
	"github.com/hashicorp/consul/api"
	"go-micro.dev/v4/broker"
	"go-micro.dev/v4/client"
	merrors "go-micro.dev/v4/errors"
	"go-micro.dev/v4/registry"
	"go-micro.dev/v4/server"

	"github.com/marketmesh/marketmesh/plugins/apierror"
	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/logging"
	"github.com/marketmesh/marketmesh/plugins/meshtls"
	"github.com/marketmesh/marketmesh/plugins/rpcclient"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
)

// Prefix groups every marketmesh service in Consul.
const Prefix = "marketmesh."

// FullName returns the registry name of a short service name.
func FullName(name string) string { return Prefix + name }

// Service is one running marketmesh service process.
type Service struct {
	opts     Options
	name     string
	reg      registry.Registry
	live     *config.Live
	client   client.Client
	server   server.Server
	health   *Health
	opsLn    net.Listener
	metrics  *serverMetrics
	metadata map[string]string
	identity *meshtls.Identity
	consul   *api.Client
	lock     *serviceLock // set by Exclusive

	mu      sync.Mutex
	workers []func(context.Context)
}

// New prepares the service; nothing is registered until Run.
func New(name string, mesh config.Mesh, srv config.Server, opts ...Option) (*Service, error) {
	o := newOptions(name, mesh, srv, opts...)
	full := FullName(name)
	logging.Setup(full, mesh.Log.Level)

	opsAddr := o.Server.OpsAddress
	if opsAddr == "" {
		opsAddr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", opsAddr)
	if err != nil {
		return nil, fmt.Errorf("%s: ops listener: %w", full, err)
	}
	_, opsPort, _ := net.SplitHostPort(ln.Addr().String())
	instance := uuid.NewString()
	nodeID := full + "-" + instance // go-micro's node ID: <name>-<server id>
	reg := NewRegistry(mesh.Consul, opsPort, CheckURL(o.CheckPath, nodeID))
	live := config.NewLive(mesh.RPC)
	cc, err := config.ConsulClient(mesh.Consul)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("%s: %w", full, err)
	}
	identity := meshtls.New(cc, full)
	s := &Service{
		consul:   cc,
		identity: identity,
		opts:     o,
		name:     full,
		reg:      reg,
		live:     live,
		client:   rpcclient.New(reg, live, rpcclient.Identity(identity)),
		health:   NewHealth(nodeID),
		opsLn:    ln,
		metrics:  newServerMetrics(),
		metadata: map[string]string{},
	}
	s.server = grpcserver.NewServer(
		server.Name(full),
		server.Id(instance),
		server.Version(o.Version),
		server.Address(o.Server.Address),
		server.Advertise(o.Server.Advertise),
		server.Registry(&drainingRegistry{Registry: reg}),
		// No TTL: Consul's HTTP probe is the health signal. The interval
		// re-registers the instance if Consul lost it (a restarted dev agent).
		server.RegisterTTL(0),
		server.RegisterInterval(10*time.Second),
		// Events travel over RPC with acknowledgements (see plugins/events);
		// the in-memory broker keeps go-micro from opening an HTTP broker port.
		server.Broker(broker.NewMemoryBroker()),
		server.Wait(nil), // track in-flight calls so Stop drains them
		server.WrapHandler(s.wrapHandler),
		// Mutual TLS: callers prove their service with a Connect certificate.
		grpcserver.AuthTLS(identity.ServerConfig()),
	)
	s.health.Add("identity", func(context.Context) error {
		if !identity.Ready() {
			return errors.New("no certificate from Consul Connect yet")
		}
		return nil
	})
	return s, nil
}

// CheckURL is the path Consul probes for one instance. It names the instance
// so that a crashed instance's check cannot be answered by its successor on
// the same port: the successor refuses the old ID, the old registration goes
// critical and Consul reaps it.
func CheckURL(path, nodeID string) string {
	return path + "?instance=" + url.QueryEscape(nodeID)
}

// NewRegistry returns the Consul registry; instances registered through it
// get an HTTP check on http://<advertised host>:<opsPort><checkPath>.
// DeregisterCriticalServiceAfter (Consul's minimum, one minute) removes a
// crashed instance from the catalog by itself; callers stop using it as soon
// as its check turns critical. Consul shows the version and node metadata in
// the service Meta (see readableRegistry).
//
// The registry's Consul client carries c's ACL token (config.Consul.APIConfig).
// A token file that cannot be read is logged here and the client goes
// anonymous; service.Boot has already refused to start in that case.
func NewRegistry(c config.Consul, opsPort, checkPath string) registry.Registry {
	// The address travels in the client config, not registry.Addrs: given
	// Addrs, the plugin first probes /v1/agent/host, which needs
	// operator:read (a 403 in Consul's log for every process).
	var opts []registry.Option
	if cfg, err := c.APIConfig(); err != nil {
		slog.Error("consul registry without a token", "err", err)
		opts = append(opts, registry.Addrs(c.Address))
	} else {
		opts = append(opts, consul.Config(cfg))
	}
	if opsPort != "" {
		interval := c.CheckInterval.D()
		if interval <= 0 {
			interval = 2 * time.Second
		}
		opts = append(opts, consul.HTTPCheck("http", opsPort, checkPath, interval, interval))
	}
	return readableRegistry{consul.NewRegistry(opts...)}
}

// Name is the registry name, e.g. "marketmesh.users".
func (s *Service) Name() string { return s.name }

// Client is the client stack for calling other services.
func (s *Service) Client() client.Client { return s.client }

// Registry is the Consul registry.
func (s *Service) Registry() registry.Registry { return s.reg }

// Health lets the service add readiness checks.
func (s *Service) Health() *Health { return s.health }

// Live is the live RPC configuration.
func (s *Service) Live() *config.Live { return s.live }

// Handle registers an RPC handler (a struct whose methods are endpoints).
func (s *Service) Handle(h any) error {
	return s.server.Handle(s.server.NewHandler(h))
}

// SetMetadata adds node metadata visible in the registry; call before Run.
func (s *Service) SetMetadata(key, value string) {
	s.metadata[key] = value
}

// Go runs fn in the background from Run until shutdown; fn must return when its context ends.
func (s *Service) Go(fn func(context.Context)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.workers = append(s.workers, fn)
}

// OpsAddr is where /healthz, /readyz and /metrics are served.
func (s *Service) OpsAddr() string { return s.opsLn.Addr().String() }

// Run starts serving and registers in Consul, then blocks until ctx ends
// (SIGTERM in main) and shuts down gracefully.
func (s *Service) Run(ctx context.Context) error {
	started := time.Now()
	mux := http.NewServeMux()
	s.health.Mount(mux)
	ops := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := ops.Serve(s.opsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("ops server stopped", "err", err)
		}
	}()

	if len(s.metadata) > 0 {
		if err := s.server.Init(server.Metadata(s.metadata)); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	if kv, err := config.ConsulKV(s.opts.Mesh.Consul); err == nil {
		wg.Go(func() { s.live.WatchConsul(workCtx, kv, s.opts.Mesh.Consul.KVPrefix, s.opts.Mesh.RPC) })
	}
	// The certificate comes first: without it no caller could reach us.
	wg.Go(func() { _ = s.identity.Run(workCtx) })
	if err := s.identity.Wait(ctx); err != nil { // stopped while waiting
		stopWork()
		wg.Wait()
		_ = ops.Close()
		slog.Info("stopped before getting a certificate", "err", err)
		return nil
	}
	wg.Go(func() {
		if err := publishIntentions(s.consul, s.name, s.opts.Policy); err != nil {
			slog.Warn("call table not shown in Consul's intentions", "err", err)
		}
	})
	lost := make(chan error, 1)
	if s.lock != nil {
		if err := s.lock.acquire(ctx); err != nil { // stopped while waiting
			stopWork()
			wg.Wait()
			_ = ops.Close()
			s.lock.release()
			slog.Info("stopped before taking the single-instance lock")
			return nil
		}
		wg.Go(func() {
			if err := s.lock.hold(workCtx); err != nil {
				lost <- err
			}
		})
	}
	if err := s.server.Start(); err != nil {
		stopWork()
		_ = ops.Close()
		return fmt.Errorf("%s: start: %w", s.name, err)
	}
	s.mu.Lock()
	for _, w := range s.workers {
		wg.Go(func() { w(workCtx) })
	}
	s.mu.Unlock()
	slog.Info("service started", "address", s.server.Options().Address, "ops", s.OpsAddr(),
		"version", s.opts.Version, "startup_ms", time.Since(started).Milliseconds())
	// Start-up garbage (configuration, certificates, descriptors, clients
	// built once) goes back to the operating system now, not minutes later
	// when the runtime's scavenger gets to it: an idle service's resident
	// memory is what it needs to serve (README "Performance").
	debug.FreeOSMemory()

	var lockErr error
	select {
	case <-ctx.Done():
	case lockErr = <-lost:
		slog.Error("single-instance lock lost", "err", lockErr)
	}
	slog.Info("shutting down: deregistering, then draining in-flight calls")
	s.health.Drain()
	if d, ok := s.server.(interface{ Deregister() error }); ok {
		if err := d.Deregister(); err != nil {
			slog.Error("deregister", "err", err)
		}
	}
	time.Sleep(s.opts.DrainDelay)
	err := s.server.Stop() // waits for in-flight calls, then stops gRPC
	stopWork()
	wg.Wait()
	shutCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = ops.Shutdown(shutCtx)
	if s.lock != nil && lockErr == nil {
		s.lock.release()
	}
	slog.Info("stopped")
	return errors.Join(lockErr, err)
}

// wrapHandler lifts request metadata into the context, recovers panics,
// hides unexpected errors behind a 500, and records metrics.
func (s *Service) wrapHandler(next server.HandlerFunc) server.HandlerFunc {
	return func(ctx context.Context, req server.Request, rsp interface{}) (err error) {
		ctx = rpcmeta.Incoming(ctx)
		caller, cerr := s.identity.CallerOf(ctx)
		if cerr == nil {
			ctx = svcauth.WithCaller(ctx, caller)
		}
		policy := s.opts.Policy
		ctx = svcauth.WithPolicy(ctx, policy)
		if rpcmeta.Caller(ctx) != "" && !policy.MayActForUsers(caller) {
			// Only a service that authenticates end users may say which one a
			// call acts for; from any other caller the claim is dropped.
			ctx = rpcmeta.WithCaller(ctx, "")
		}
		start := time.Now()
		defer func() {
			if r := recover(); r != nil {
				slog.ErrorContext(ctx, "handler panic", "endpoint", req.Endpoint(), "panic", r, "stack", string(debug.Stack()))
				err = merrors.InternalServerError(s.name, "internal error")
			}
			var me *merrors.Error
			if err != nil && !errors.As(err, &me) {
				slog.ErrorContext(ctx, "handler error", "endpoint", req.Endpoint(), "err", err)
				err = merrors.InternalServerError(s.name, "internal error")
			} else if me != nil && me.Id == "go.micro.server" && me.Code == http.StatusInternalServerError {
				// go-micro's server recovers handler panics itself, inside this
				// wrapper (it logs the stack), and names the panic value in the error.
				err = merrors.InternalServerError(s.name, "internal error")
			}
			code := 0
			if errors.As(err, &me) { // the final error: a replaced one counts as 500
				code = int(me.Code)
			}
			s.metrics.observe(req.Endpoint(), strconv.Itoa(code), start)
		}()
		if err := s.authorize(ctx, caller, cerr, req.Endpoint()); err != nil {
			return err
		}
		return next(ctx, req, rsp)
	}
}

// authorize checks the call table for a call from caller (proven by its
// certificate; cerr says why there is none) to endpoint, and logs a refusal.
func (s *Service) authorize(ctx context.Context, caller string, cerr error, endpoint string) error {
	err := s.opts.Policy.Allow(caller, s.name, endpoint)
	if err != nil {
		slog.WarnContext(ctx, "call refused by the call table", "caller", caller, "endpoint", endpoint, "identity_err", cerr)
	}
	return err
}

// Identity is the service's certificate identity (mutual TLS, Consul Connect).
func (s *Service) Identity() *meshtls.Identity { return s.identity }

// Policy is the call table the server enforces.
func (s *Service) Policy() svcauth.Policy { return s.opts.Policy }

// GuardHTTP serves h over the service's mutual TLS identity for the callers
// the call table allows on svcauth.HTTPEndpoint (the images blob endpoint):
// others get 403 with a JSON error. Use with TLSConfig.
func (s *Service) GuardHTTP(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, cerr := s.identity.CallerOfHTTP(r)
		if err := s.authorize(r.Context(), caller, cerr, svcauth.HTTPEndpoint); err != nil {
			apierror.WriteStatus(w, r, http.StatusForbidden, err.(*merrors.Error).Detail)
			return
		}
		ctx := svcauth.WithPolicy(svcauth.WithCaller(r.Context(), caller), s.opts.Policy)
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// TLSConfig is the server TLS configuration for the service's HTTP endpoints.
func (s *Service) TLSConfig() *tls.Config { return s.identity.ServerConfig() }
