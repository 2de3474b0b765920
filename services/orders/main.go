// Command orders runs the orders service: carts, the checkout saga (reserve
// stock, charge, commit; undo on failure; recover after a crash), shipments,
// and the built-in sandbox payment provider with its signed webhooks.
package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/keyfile"
	"github.com/marketmesh/marketmesh/plugins/service"
	"github.com/marketmesh/marketmesh/services/orders/internal/handler"
	"github.com/marketmesh/marketmesh/services/orders/internal/payment"
	"github.com/marketmesh/marketmesh/services/orders/internal/saga"
	"github.com/marketmesh/marketmesh/services/orders/internal/store"
)

// version is stamped by the build (-ldflags "-X main.version=...").
var version = "dev"

// Config is the orders and payments sections of config/<env>.yaml; env vars
// ORDERS_* and PAYMENTS_* override them.
type Config struct {
	config.Mesh `yaml:",inline"`
	Orders      struct {
		config.Server `yaml:",inline"`
		DBPath        string `yaml:"db_path" env:"DB_PATH"`
		// ReservationTTL is how long stock is held for an order not yet paid.
		ReservationTTL config.Duration `yaml:"reservation_ttl" env:"RESERVATION_TTL"`
		// RecoverEvery is how often orders left mid-way are driven on.
		RecoverEvery config.Duration `yaml:"recover_every" env:"RECOVER_EVERY"`
		// IdempotencyTTL is how long Idempotency-Keys are kept (at least 24 h).
		IdempotencyTTL config.Duration `yaml:"idempotency_ttl" env:"IDEMPOTENCY_TTL"`
	} `yaml:"orders" env:"ORDERS_"`
	Payments struct {
		Provider string `yaml:"provider" env:"PROVIDER"`
		// WebhookSecretFile signs and verifies webhooks; PAYMENTS_WEBHOOK_SECRET
		// (base64) overrides it. Generated on first run in development.
		WebhookSecretFile string `yaml:"webhook_secret_file" env:"WEBHOOK_SECRET_FILE"`
		// WebhookURL is where the sandbox posts its webhooks (the api).
		WebhookURL string `yaml:"webhook_url" env:"WEBHOOK_URL"`
		// ConfirmAfter is how long a tok_pending charge stays pending.
		ConfirmAfter config.Duration `yaml:"confirm_after" env:"CONFIRM_AFTER"`
	} `yaml:"payments" env:"PAYMENTS_"`
}

func main() { service.Main("orders", run) }

func run(ctx context.Context) error {
	cfg := Config{Mesh: config.Defaults()}
	cfg.Orders.DBPath = "orders/orders.db"
	cfg.Orders.ReservationTTL = config.Duration(15 * time.Minute)
	cfg.Orders.RecoverEvery = config.Duration(5 * time.Second)
	cfg.Orders.IdempotencyTTL = config.Duration(48 * time.Hour)
	cfg.Payments.Provider = "sandbox"
	cfg.Payments.WebhookSecretFile = "keys/payments-webhook.key"
	cfg.Payments.WebhookURL = "http://127.0.0.1:8080/v1/payments/webhook"
	cfg.Payments.ConfirmAfter = config.Duration(2 * time.Second)
	if err := service.Boot(&cfg, func() (string, string) { return cfg.Orders.OpsAddress, "/readyz" }); err != nil {
		return err
	}
	switch {
	case cfg.Payments.Provider != "sandbox":
		return errors.New("payments.provider: only \"sandbox\" is built in")
	case cfg.Orders.IdempotencyTTL.D() < 24*time.Hour:
		return errors.New("orders.idempotency_ttl must be at least 24h")
	case cfg.Orders.ReservationTTL.D() < 10*time.Second:
		return errors.New("orders.reservation_ttl must be at least 10s")
	}
	svc, err := service.New("orders", cfg.Mesh, cfg.Orders.Server, service.Version(version))
	if err != nil {
		return err
	}
	db, err := store.Open(cfg.Path(cfg.Orders.DBPath))
	if err != nil {
		return err
	}
	defer db.Close()
	secret, err := keyfile.Load("PAYMENTS_WEBHOOK_SECRET", cfg.Path(cfg.Payments.WebhookSecretFile), payment.NewSecret)
	if err != nil {
		return err
	}
	sandbox, err := payment.NewSandbox(db.Bolt(), payment.SandboxOptions{
		Secret: secret, WebhookURL: cfg.Payments.WebhookURL, ConfirmAfter: cfg.Payments.ConfirmAfter.D(),
	})
	if err != nil {
		return err
	}
	relay := events.NewRelay(db.Bolt(), svc.Client(), svc.Registry())
	if err := svc.Handle(events.NewAdmin(relay)); err != nil {
		return err
	}
	publications := publicationsrpc.NewClient(svc.Client())
	sg := saga.New(db, publications, sandbox, relay, saga.Options{
		ReservationTTL: cfg.Orders.ReservationTTL.D(), RecoverEvery: cfg.Orders.RecoverEvery.D(),
	})
	if err := svc.Handle(handler.New(db, sg, publications)); err != nil {
		return err
	}
	svc.Health().Add("bbolt", db.Check)
	// One instance serves this data (see service.Exclusive and the README).
	if err := svc.Exclusive(db.Bolt()); err != nil {
		return err
	}
	svc.Go(relay.Run)
	svc.Go(sg.Run)
	svc.Go(sandbox.Run)
	svc.Go(func(ctx context.Context) { pruneIdempotency(ctx, db, cfg.Orders.IdempotencyTTL.D()) })
	return svc.Run(ctx)
}

// pruneIdempotency forgets Idempotency-Keys older than ttl, hourly.
func pruneIdempotency(ctx context.Context, db *store.Store, ttl time.Duration) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := db.PruneIdempotency(time.Now().Add(-ttl)); err != nil {
			slog.Error("orders: prune idempotency keys", "err", err)
		} else if n > 0 {
			slog.Info("orders: pruned idempotency keys", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
