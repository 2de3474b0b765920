// Command users runs the users service: accounts, credentials, wishlist,
// bank accounts, devices and notification preferences.
package main

import (
	"context"
	"fmt"
	"time"

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
		// RefreshTTL is how long an unused refresh token stays valid.
		RefreshTTL config.Duration `yaml:"refresh_ttl" env:"REFRESH_TTL"`
	} `yaml:"users" env:"USERS_"`
}

func main() { service.Main("users", run) }

func run(ctx context.Context) error {
	cfg := Config{Mesh: config.Defaults()}
	cfg.Users.DBPath, cfg.Users.BankKeyFile = "users/users.db", "keys/users-bank.key"
	cfg.Users.RefreshTTL = config.Duration(30 * 24 * time.Hour)
	if err := service.Boot(&cfg, func() (string, string) { return cfg.Users.OpsAddress, "/readyz" }); err != nil {
		return err
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
	if err := svc.Handle(events.NewAdmin(relay)); err != nil {
		return err
	}
	if d := cfg.Users.RefreshTTL.D(); d < time.Minute || d > 365*24*time.Hour {
		return fmt.Errorf("users: USERS_REFRESH_TTL %v is outside 1m..8760h", d)
	}
	if err := svc.Handle(handler.New(db, seal, relay, handler.RefreshTTL(cfg.Users.RefreshTTL.D()))); err != nil {
		return err
	}
	svc.Health().Add("bbolt", db.Check)
	// One instance serves this data (see service.Exclusive and the README).
	if err := svc.Exclusive(db.Bolt()); err != nil {
		return err
	}
	svc.Go(relay.Run)

	return svc.Run(ctx)
}
