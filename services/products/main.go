// Command products runs the products service: the catalog, its full-text
// search and category tree, prices kept from publication events, view
// counts batched in memory, and product.deleted events through its outbox.
package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/service"
	"github.com/marketmesh/marketmesh/services/products/internal/handler"
	"github.com/marketmesh/marketmesh/services/products/internal/store"
)

// version is stamped by the build (-ldflags "-X main.version=...").
var version = "dev"

// Config is the products section of config/<env>.yaml; env vars PRODUCTS_* override it.
type Config struct {
	config.Mesh `yaml:",inline"`
	Products    struct {
		config.Server `yaml:",inline"`
		DBPath        string `yaml:"db_path" env:"DB_PATH"`
		// ViewFlush is how often view counts batched in memory are written.
		ViewFlush config.Duration `yaml:"view_flush" env:"VIEW_FLUSH"`
	} `yaml:"products" env:"PRODUCTS_"`
}

func main() { service.Main("products", run) }

func run(ctx context.Context) error {
	cfg := Config{Mesh: config.Defaults()}
	cfg.Products.DBPath, cfg.Products.ViewFlush = "products/products.db", config.Duration(2*time.Second)
	if err := service.Boot(&cfg, func() (string, string) { return cfg.Products.OpsAddress, "/readyz" }); err != nil {
		return err
	}
	flush := cfg.Products.ViewFlush.D()
	if flush <= 0 {
		flush = 2 * time.Second
	}
	svc, err := service.New("products", cfg.Mesh, cfg.Products.Server, service.Version(version))
	if err != nil {
		return err
	}
	db, err := store.Open(cfg.Path(cfg.Products.DBPath))
	if err != nil {
		return err
	}
	// Close writes the view counts still pending (the flusher also flushes
	// once more when Run stops it, after in-flight calls have drained).
	defer func() {
		if err := db.Close(); err != nil {
			slog.Error("products: close database", "err", err)
		}
	}()

	// The relay delivers the outbox (product.deleted) to its subscribers.
	relay := events.NewRelay(db.Bolt(), svc.Client(), svc.Registry())
	if err := svc.Handle(events.NewAdmin(relay)); err != nil {
		return err
	}
	if err := svc.Handle(handler.New(db, relay)); err != nil {
		return err
	}
	consumer := events.NewConsumer(db.Bolt())
	consumer.On(publicationsrpc.TopicPublicationChanged, handler.PublicationChanged)
	if err := consumer.Attach(svc); err != nil {
		return err
	}
	svc.Health().Add("bbolt", db.Check)
	// One instance serves this data (see service.Exclusive and the README).
	if err := svc.Exclusive(db.Bolt()); err != nil {
		return err
	}
	svc.Go(db.ViewFlusher(flush))
	svc.Go(relay.Run)

	return svc.Run(ctx)
}
