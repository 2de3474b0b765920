// Command api is marketmesh's public REST API: it authenticates callers,
// validates input and composes the services' answers over RPC.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/marketmesh/marketmesh/api/internal/server"
	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/contracts/notificationsrpc"
	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/auth"
	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/httperr"
	"github.com/marketmesh/marketmesh/plugins/logging"
	"github.com/marketmesh/marketmesh/plugins/rpcclient"
	"github.com/marketmesh/marketmesh/plugins/service"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
)

// version is stamped by the build (-ldflags "-X main.version=...").
var version = "dev"

// Config is the api section of config/<env>.yaml; env vars API_* override it.
type Config struct {
	config.Mesh `yaml:",inline"`
	API         struct {
		Address   string `yaml:"address" env:"ADDRESS"`
		Advertise string `yaml:"advertise" env:"ADVERTISE"`
		// JWTKeyFile holds the Ed25519 seed; AUTH_JWT_KEY overrides it.
		JWTKeyFile          string          `yaml:"jwt_key_file" env:"JWT_KEY_FILE"`
		TokenTTL            config.Duration `yaml:"token_ttl" env:"TOKEN_TTL"`
		MaxBodyBytes        int64           `yaml:"max_body_bytes" env:"MAX_BODY_BYTES"`
		LoginPerMinuteIP    int             `yaml:"login_per_minute_ip" env:"LOGIN_PER_MINUTE_IP"`
		LoginPerMinuteEmail int             `yaml:"login_per_minute_email" env:"LOGIN_PER_MINUTE_EMAIL"`
		DrainDelay          config.Duration `yaml:"drain_delay" env:"DRAIN_DELAY"`
		// PartTimeout bounds each optional part of an aggregated read.
		PartTimeout config.Duration `yaml:"part_timeout" env:"PART_TIMEOUT"`
		// AdminUsers are the user IDs (not emails: IDs are server-generated,
		// so nobody can register an admin's address first) granted the admin
		// role at login; API_ADMIN_USERS is comma-separated.
		AdminUsers []string `yaml:"admin_users" env:"ADMIN_USERS"`
	} `yaml:"api" env:"API_"`
}

func main() { service.Main("api", run) }

func run(ctx context.Context) error {
	started := time.Now()
	cfg := Config{Mesh: config.Defaults()}
	cfg.API.Address, cfg.API.JWTKeyFile = "127.0.0.1:8080", "keys/jwt-ed25519.key"
	cfg.API.TokenTTL, cfg.API.MaxBodyBytes = config.Duration(24*time.Hour), 1<<20
	cfg.API.LoginPerMinuteIP, cfg.API.LoginPerMinuteEmail = 60, 10
	cfg.API.DrainDelay, cfg.API.PartTimeout = config.Duration(time.Second), config.Duration(300*time.Millisecond)
	if err := service.Boot(&cfg, func() (string, string) { return cfg.API.Address, "/healthz" }); err != nil {
		return err
	}
	logging.Setup(service.FullName("api"), cfg.Log.Level)

	key, err := auth.LoadKey(cfg.Path(cfg.API.JWTKeyFile))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.API.Address)
	if err != nil {
		return fmt.Errorf("api: listen %s: %w", cfg.API.Address, err)
	}
	// The answers net/http writes itself to requests it cannot read (a bad
	// URI, header or version, headers too large) in the JSON error shape.
	ln = httperr.Listener(ln)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	// Consul probes the api's own /healthz: the api is alive even while a
	// service behind it is down (that shows in /readyz and on the service).
	nodeID := service.NewNodeID(service.FullName("api"))
	reg := service.NewRegistry(cfg.Consul, port, service.CheckURL("/healthz", nodeID))
	live := config.NewLive(cfg.RPC)
	// One watched registry cache serves the RPC clients and the blob client.
	sel := rpcclient.Selector(rpcclient.NewSelector(reg))
	meshKey, err := service.ServiceKey(cfg.Mesh)
	if err != nil {
		return err
	}
	signer, err := svcauth.NewSigner(service.FullName("api"), meshKey)
	if err != nil {
		return err
	}
	rpc := rpcclient.New(reg, live, sel, rpcclient.Sign(signer))
	// The services with an outbox, whose dead letters operators list and replay.
	deadLetters := map[string]*events.AdminClient{}
	for _, full := range []string{usersrpc.Service, productsrpc.Service, publicationsrpc.Service, ordersrpc.Service} {
		deadLetters[strings.TrimPrefix(full, service.Prefix)] = events.NewAdminClient(rpc, full)
	}
	admins := adminUsers(cfg.API.AdminUsers)
	if len(admins) > 0 {
		slog.Info("admin role granted at login", "users", admins)
	}

	api := server.New(server.Options{
		Users:               usersrpc.NewClient(rpc),
		Products:            productsrpc.NewClient(rpc),
		Publications:        publicationsrpc.NewClient(rpc),
		Images:              imagesrpc.NewClient(rpc),
		Orders:              ordersrpc.NewClient(rpc),
		Notifications:       notificationsrpc.NewClient(rpc),
		Events:              deadLetters,
		Blobs:               rpcclient.NewHTTP(reg, live, imagesrpc.HTTPAddressKey, sel),
		PartTimeout:         cfg.API.PartTimeout.D(),
		Signer:              auth.NewSigner(key, auth.TTL(cfg.API.TokenTTL.D())),
		Admins:              admins,
		MaxBody:             cfg.API.MaxBodyBytes,
		LoginPerMinuteIP:    cfg.API.LoginPerMinuteIP,
		LoginPerMinuteEmail: cfg.API.LoginPerMinuteEmail,
		Ready:               readiness(reg, usersrpc.Service, productsrpc.Service, publicationsrpc.Service, imagesrpc.Service, ordersrpc.Service, notificationsrpc.Service),
		InstanceID:          nodeID,
	})
	srv := &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	kv, kvErr := config.ConsulKV(cfg.Consul.Address)
	if kvErr == nil {
		go live.WatchConsul(ctx, kv, cfg.Consul.KVPrefix, cfg.RPC)
	}
	advertise := cfg.API.Advertise
	if advertise == "" {
		advertise = ln.Addr().String()
	}
	// The api serves whether or not Consul answers: Keep registers it as soon
	// as Consul does (logging until then), and again if Consul forgets it.
	ann := service.Announce(reg, service.FullName("api"), nodeID, version, advertise, map[string]string{"protocol": "http"})
	go ann.Keep(ctx)
	slog.Info("api started", "address", ln.Addr().String(), "version", version, "startup_ms", time.Since(started).Milliseconds())

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	slog.Info("shutting down: deregistering, then draining in-flight requests")
	// Final: neither Keep nor a register in flight puts the api back.
	if err := ann.Withdraw(); err != nil {
		slog.Error("deregister", "err", err)
	}
	time.Sleep(cfg.API.DrainDelay.D())
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	slog.Info("stopped")
	return nil
}

// adminUsers cleans the configured admin user IDs: the env form is split at
// commas as given, so spaces around IDs and empty entries are dropped.
func adminUsers(ids []string) []string {
	var out []string
	for _, id := range ids {
		if id = strings.TrimSpace(id); id != "" {
			out = append(out, id)
		}
	}
	return out
}
