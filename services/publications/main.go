// Command publications runs the publications service: sellers' listings of
// products, their search, and the stock reservations the orders service
// makes (reserve with an ID and expiry, commit, release, restock). It
// closes the publications of a product when product.deleted arrives.
package main

import (
	"context"
	"errors"
	"time"

	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/service"
	"github.com/marketmesh/marketmesh/services/publications/internal/handler"
	"github.com/marketmesh/marketmesh/services/publications/internal/store"
)

// version is stamped by the build (-ldflags "-X main.version=...").
var version = "dev"

// Config is the publications section of config/<env>.yaml; env vars
// PUBLICATIONS_* override it.
type Config struct {
	config.Mesh  `yaml:",inline"`
	Publications struct {
		config.Server `yaml:",inline"`
		DBPath        string `yaml:"db_path" env:"DB_PATH"`
		// MaxReservationTTL bounds Reserve's ttl_seconds.
		MaxReservationTTL config.Duration `yaml:"max_reservation_ttl" env:"MAX_RESERVATION_TTL"`
		// ExpirySweep is how often expired reservations are released.
		ExpirySweep config.Duration `yaml:"expiry_sweep" env:"EXPIRY_SWEEP"`
	} `yaml:"publications" env:"PUBLICATIONS_"`
}

func main() { service.Main("publications", run) }

func run(ctx context.Context) error {
	cfg := Config{Mesh: config.Defaults()}
	cfg.Publications.DBPath = "publications/publications.db"
	cfg.Publications.MaxReservationTTL = config.Duration(30 * time.Minute)
	cfg.Publications.ExpirySweep = config.Duration(time.Second)
	if err := service.Boot(&cfg, func() (string, string) { return cfg.Publications.OpsAddress, "/readyz" }); err != nil {
		return err
	}
	return serve(ctx, cfg)
}

// serve runs the service until ctx ends.
func serve(ctx context.Context, cfg Config) error {
	if cfg.Publications.MaxReservationTTL.D() < time.Second {
		return errors.New("publications.max_reservation_ttl must be at least 1s")
	}
	if cfg.Publications.ExpirySweep.D() <= 0 {
		return errors.New("publications.expiry_sweep must be positive")
	}
	svc, err := service.New("publications", cfg.Mesh, cfg.Publications.Server, service.Version(version))
	if err != nil {
		return err
	}
	db, err := store.Open(cfg.Path(cfg.Publications.DBPath))
	if err != nil {
		return err
	}
	defer db.Close()
	relay := events.NewRelay(db.Bolt(), svc.Client(), svc.Registry())
	if err := svc.Handle(events.NewAdmin(relay)); err != nil {
		return err
	}
	products := handler.Products(productsrpc.NewClient(svc.Client()))
	if err := svc.Handle(handler.New(db, products, relay, cfg.Publications.MaxReservationTTL.D())); err != nil {
		return err
	}
	// product.deleted closes the deleted product's publications.
	consumer := events.NewConsumer(db.Bolt())
	consumer.On(productsrpc.TopicProductDeleted, handler.ProductDeleted(db, relay))
	if err := consumer.Attach(svc); err != nil {
		return err
	}
	svc.Health().Add("bbolt", db.Check)
	// One instance serves this data (see service.Exclusive and the README).
	if err := svc.Exclusive(db.Bolt()); err != nil {
		return err
	}
	svc.Go(relay.Run)
	svc.Go(handler.NewSweeper(db, relay, cfg.Publications.ExpirySweep.D()).Run)
	return svc.Run(ctx)
}
