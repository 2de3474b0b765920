// Command api is marketmesh's public REST API: it authenticates callers,
// validates input and composes the services' answers over RPC.
package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/marketmesh/marketmesh/api/internal/clientaddr"
	"github.com/marketmesh/marketmesh/api/internal/ops"
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
	"github.com/marketmesh/marketmesh/plugins/meshtls"
	"github.com/marketmesh/marketmesh/plugins/rpcclient"
	"github.com/marketmesh/marketmesh/plugins/service"
)

// version is stamped by the build (-ldflags "-X main.version=...").
var version = "dev"

// Config is the api section of config/<env>.yaml; env vars API_* override it.
type Config struct {
	config.Mesh `yaml:",inline"`
	API         struct {
		Address   string `yaml:"address" env:"ADDRESS"`
		Advertise string `yaml:"advertise" env:"ADVERTISE"`
		// OpsAddress serves /healthz, /readyz, /metrics and /debug/pprof/
		// for Consul, the container health check and operators: never
		// publish it.
		OpsAddress string `yaml:"ops_address" env:"OPS_ADDRESS"`
		// JWTKeyFile holds the Ed25519 seed; AUTH_JWT_KEY overrides it.
		JWTKeyFile string `yaml:"jwt_key_file" env:"JWT_KEY_FILE"`
		// JWTOldPublicKeys are the public keys (base64) of signing keys
		// rotated out: their tokens verify until they expire. The api logs
		// its own key's at start. API_JWT_OLD_PUBLIC_KEYS is comma-separated.
		JWTOldPublicKeys []string `yaml:"jwt_old_public_keys" env:"JWT_OLD_PUBLIC_KEYS"`
		// TokenTTL is the access tokens' lifetime; TokenLeeway the clock
		// skew accepted on them (0..5m).
		TokenTTL     config.Duration `yaml:"token_ttl" env:"TOKEN_TTL"`
		TokenLeeway  config.Duration `yaml:"token_leeway" env:"TOKEN_LEEWAY"`
		MaxBodyBytes int64           `yaml:"max_body_bytes" env:"MAX_BODY_BYTES"`
		// Abuse limits (api/internal/ratelimit): login attempts per client
		// address a minute; failed logins per account and client address a
		// minute; failed logins per account from everywhere an hour before
		// the account is guarded; sign-ups per client address an hour.
		LoginPerMinuteIP            int `yaml:"login_per_minute_ip" env:"LOGIN_PER_MINUTE_IP"`
		LoginPerMinuteEmail         int `yaml:"login_per_minute_email" env:"LOGIN_PER_MINUTE_EMAIL"`
		LoginFailuresPerHourAccount int `yaml:"login_failures_per_hour_account" env:"LOGIN_FAILURES_PER_HOUR_ACCOUNT"`
		RegisterPerHourIP           int `yaml:"register_per_hour_ip" env:"REGISTER_PER_HOUR_IP"`
		// RefreshPerMinuteIP bounds token refreshes and logouts per client
		// address a minute.
		RefreshPerMinuteIP int `yaml:"refresh_per_minute_ip" env:"REFRESH_PER_MINUTE_IP"`
		// TrustedProxies are the CIDRs (or addresses) of the reverse proxies
		// in front of the api, whose X-Forwarded-For names the client; none
		// by default: the peer is the client. API_TRUSTED_PROXIES is
		// comma-separated.
		TrustedProxies []string `yaml:"trusted_proxies" env:"TRUSTED_PROXIES"`
		// CORSOrigins may call the api from a browser page of another
		// origin ("*": any); empty means the api's own development origins.
		// API_CORS_ORIGINS is comma-separated.
		CORSOrigins []string        `yaml:"cors_origins" env:"CORS_ORIGINS"`
		DrainDelay  config.Duration `yaml:"drain_delay" env:"DRAIN_DELAY"`
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
	cfg.API.Address, cfg.API.OpsAddress, cfg.API.JWTKeyFile = "127.0.0.1:8080", "127.0.0.1:9200", "keys/jwt-ed25519.key"
	cfg.API.TokenTTL, cfg.API.TokenLeeway, cfg.API.MaxBodyBytes = config.Duration(auth.DefaultTTL), config.Duration(auth.DefaultLeeway), 1<<20
	cfg.API.RefreshPerMinuteIP = 60
	cfg.API.LoginPerMinuteIP, cfg.API.LoginPerMinuteEmail = 60, 10
	cfg.API.LoginFailuresPerHourAccount, cfg.API.RegisterPerHourIP = 100, 20
	cfg.API.DrainDelay, cfg.API.PartTimeout = config.Duration(time.Second), config.Duration(300*time.Millisecond)
	// The container health check probes the ops listener, as Consul does.
	if err := service.Boot(&cfg, func() (string, string) { return cfg.API.OpsAddress, "/healthz" }); err != nil {
		return err
	}
	logging.Setup(service.FullName("api"), cfg.Log.Level)

	key, err := auth.LoadKey(cfg.Path(cfg.API.JWTKeyFile))
	if err != nil {
		return err
	}
	tokens, err := tokenSigner(key, cfg.API.JWTOldPublicKeys, cfg.API.TokenTTL.D(), cfg.API.TokenLeeway.D())
	if err != nil {
		return err
	}
	trusted, err := clientaddr.ParseTrusted(cfg.API.TrustedProxies)
	if err != nil {
		return fmt.Errorf("api: API_TRUSTED_PROXIES: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.API.Address)
	if err != nil {
		return fmt.Errorf("api: listen %s: %w", cfg.API.Address, err)
	}
	// The answers net/http writes itself to requests it cannot read (a bad
	// URI, header or version, headers too large) in the JSON error shape.
	ln = httperr.Listener(ln)
	opsLn, err := net.Listen("tcp", cfg.API.OpsAddress)
	if err != nil {
		ln.Close()
		return fmt.Errorf("api: ops listener %s: %w", cfg.API.OpsAddress, err)
	}
	_, opsPort, _ := net.SplitHostPort(opsLn.Addr().String())
	// Consul probes /healthz on the ops listener: the api is alive even while
	// a service behind it is down (that shows in /readyz and on the service).
	nodeID := service.NewNodeID(service.FullName("api"))
	reg := service.NewRegistry(cfg.Consul, opsPort, service.CheckURL("/healthz", nodeID))
	live := config.NewLive(cfg.RPC)
	// One watched registry cache serves the RPC clients and the blob client.
	sel := rpcclient.Selector(rpcclient.NewSelector(reg))
	// The api's identity toward the services: a Connect certificate for
	// marketmesh.api, fetched and renewed in the background (calls fail
	// with 503 until the first one arrives; /readyz says so).
	consulClient, err := config.ConsulClient(cfg.Consul)
	if err != nil {
		return err
	}
	identity := meshtls.New(consulClient, service.FullName("api"))
	go func() { _ = identity.Run(ctx) }()
	tlsOpt := rpcclient.Identity(identity)
	rpc := rpcclient.New(reg, live, sel, tlsOpt)
	// The services with an outbox, whose dead letters operators list and replay.
	deadLetters := map[string]*events.AdminClient{}
	for _, full := range []string{usersrpc.Service, productsrpc.Service, publicationsrpc.Service, ordersrpc.Service} {
		deadLetters[strings.TrimPrefix(full, service.Prefix)] = events.NewAdminClient(rpc, full)
	}
	admins := adminUsers(cfg.API.AdminUsers)
	if len(admins) > 0 {
		slog.Info("admin role granted at login", "users", admins)
	}
	if len(trusted) > 0 {
		slog.Info("client addresses taken from X-Forwarded-For behind", "trusted_proxies", trusted)
	}

	api := server.New(server.Options{
		Users:                       usersrpc.NewClient(rpc),
		Products:                    productsrpc.NewClient(rpc),
		Publications:                publicationsrpc.NewClient(rpc),
		Images:                      imagesrpc.NewClient(rpc),
		Orders:                      ordersrpc.NewClient(rpc),
		Notifications:               notificationsrpc.NewClient(rpc),
		Events:                      deadLetters,
		Blobs:                       rpcclient.NewHTTP(reg, live, imagesrpc.HTTPAddressKey, sel, tlsOpt),
		PartTimeout:                 cfg.API.PartTimeout.D(),
		Signer:                      tokens,
		Admins:                      admins,
		MaxBody:                     cfg.API.MaxBodyBytes,
		TrustedProxies:              trusted,
		LoginPerMinuteIP:            cfg.API.LoginPerMinuteIP,
		LoginPerMinuteEmail:         cfg.API.LoginPerMinuteEmail,
		LoginFailuresPerHourAccount: cfg.API.LoginFailuresPerHourAccount,
		RegisterPerHourIP:           cfg.API.RegisterPerHourIP,
		RefreshPerMinuteIP:          cfg.API.RefreshPerMinuteIP,
		CORSOrigins:                 cleanList(cfg.API.CORSOrigins),
		InstanceID:                  nodeID,
	})
	srv := &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	opsHandler := ops.New(ops.Options{
		Instance: nodeID,
		Ready:    readiness(reg, identity, usersrpc.Service, productsrpc.Service, publicationsrpc.Service, imagesrpc.Service, ordersrpc.Service, notificationsrpc.Service),
	})
	// No write timeout: /debug/pprof/profile streams for as long as asked.
	opsSrv := &http.Server{Handler: opsHandler, ReadHeaderTimeout: 5 * time.Second}
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(ln) }()
	go func() { serveErr <- opsSrv.Serve(opsLn) }()

	kv, kvErr := config.ConsulKV(cfg.Consul)
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
	slog.Info("api started", "address", ln.Addr().String(), "ops", opsLn.Addr().String(), "version", version, "startup_ms", time.Since(started).Milliseconds())

	select {
	case err := <-serveErr:
		_ = srv.Close()
		_ = opsSrv.Close()
		return err
	case <-ctx.Done():
	}
	slog.Info("shutting down: deregistering, then draining in-flight requests")
	opsHandler.Drain()
	// Final: neither Keep nor a register in flight puts the api back.
	if err := ann.Withdraw(); err != nil {
		slog.Error("deregister", "err", err)
	}
	time.Sleep(cfg.API.DrainDelay.D())
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(shutCtx)
	_ = opsSrv.Shutdown(shutCtx)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	slog.Info("stopped")
	return nil
}

// tokenSigner returns the signer of access tokens: key signs, it and the
// old public keys verify. It logs the key's ID and public half, which is
// what API_JWT_OLD_PUBLIC_KEYS takes once the key is rotated out.
func tokenSigner(key ed25519.PrivateKey, old []string, ttl, leeway time.Duration) (*auth.Signer, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("api: API_TOKEN_TTL must be positive, got %v", ttl)
	}
	if leeway < 0 || leeway > auth.MaxLeeway {
		return nil, fmt.Errorf("api: API_TOKEN_LEEWAY must be within 0..%v, got %v", auth.MaxLeeway, leeway)
	}
	oldKeys, err := auth.ParsePublicKeys(cleanList(old))
	if err != nil {
		return nil, fmt.Errorf("api: API_JWT_OLD_PUBLIC_KEYS: %w", err)
	}
	s := auth.NewSigner(key, auth.TTL(ttl), auth.Leeway(leeway), auth.OldKeys(oldKeys...))
	slog.Info("access tokens", "kid", s.KeyID(), "public_key", auth.EncodePublicKey(s.PublicKey()),
		"old_keys", len(oldKeys), "ttl", ttl.String())
	return s, nil
}

// adminUsers cleans the configured admin user IDs (see cleanList).
func adminUsers(ids []string) []string { return cleanList(ids) }

// cleanList cleans a configured list: the env form is split at commas as
// given, so spaces around entries and empty entries are dropped.
func cleanList(entries []string) []string {
	var out []string
	for _, e := range entries {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}
