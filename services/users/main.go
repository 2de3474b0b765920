// Command users runs the users service: accounts, credentials, wishlist,
// bank accounts, devices and notification preferences.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/keyfile"
	"github.com/marketmesh/marketmesh/plugins/service"
	"github.com/marketmesh/marketmesh/services/users/internal/handler"
	"github.com/marketmesh/marketmesh/services/users/internal/sealer"
	"github.com/marketmesh/marketmesh/services/users/internal/store"
)

// version is stamped by the build (-ldflags "-X main.version=...").
var version = "dev"

// Config is the users section of config/<env>.yaml; env vars USERS_* override it.
type Config struct {
	config.Mesh `yaml:",inline"`
	Users       struct {
		config.Server `yaml:",inline"`
		DBPath        string `yaml:"db_path" env:"DB_PATH"`
		BankKeyFile   string `yaml:"bank_key_file" env:"BANK_KEY_FILE"`
	} `yaml:"users" env:"USERS_"`
}

func main() {
	if err := run(); err != nil {
		slog.Error("users stopped", "err", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := Config{Mesh: config.Defaults()}
	cfg.Users.DBPath, cfg.Users.BankKeyFile = "users/users.db", "keys/users-bank.key"
	if err := config.Load(&cfg); err != nil {
		return err
	}
	if service.IsHealthcheck() {
		os.Exit(service.Probe(cfg.Users.OpsAddress, "/readyz"))
	}
	svc, err := service.New("users", cfg.Mesh, cfg.Users.Server, service.Version(version))
	if err != nil {
		return err
	}
	db, err := store.Open(cfg.Path(cfg.Users.DBPath))
	if err != nil {
		return err
	}
	defer db.Close()
	// USERS_BANK_KEY (base64, 32 bytes) in production; a generated file in development.
	key, err := keyfile.Load("USERS_BANK_KEY", cfg.Path(cfg.Users.BankKeyFile), sealer.NewKey)
	if err != nil {
		return err
	}
	seal, err := sealer.New(key)
	if err != nil {
		return fmt.Errorf("bank account key: %w", err)
	}
	relay := events.NewRelay(db.Bolt(), svc.Client(), svc.Registry())
	if err := svc.Handle(handler.New(db, seal, relay)); err != nil {
		return err
	}
	svc.Health().Add("bbolt", db.Check)
	svc.Go(relay.Run)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return svc.Run(ctx)
}
