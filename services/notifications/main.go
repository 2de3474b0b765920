// Command notifications runs the notifications service: it turns events
// (user.registered, order.*) into emails through SendGrid and pushes through
// Firebase Cloud Messaging, records each delivery, and retries what the
// providers could not take yet.
package main

import (
	"context"
	"errors"
	"time"

	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/service"
	"github.com/marketmesh/marketmesh/services/notifications/internal/delivery"
	"github.com/marketmesh/marketmesh/services/notifications/internal/handler"
	"github.com/marketmesh/marketmesh/services/notifications/internal/provider"
	"github.com/marketmesh/marketmesh/services/notifications/internal/sender"
	"github.com/marketmesh/marketmesh/services/notifications/internal/store"
)

// version is stamped by the build (-ldflags "-X main.version=...").
var version = "dev"

// Config is the notifications section of config/<env>.yaml; env vars
// NOTIFICATIONS_* override it.
type Config struct {
	config.Mesh   `yaml:",inline"`
	Notifications struct {
		config.Server `yaml:",inline"`
		DBPath        string `yaml:"db_path" env:"DB_PATH"`
		// SendGrid: with no API key, email goes to the log sink.
		SendGridAPIKey   string `yaml:"sendgrid_api_key" env:"SENDGRID_API_KEY"`
		SendGridEndpoint string `yaml:"sendgrid_endpoint" env:"SENDGRID_ENDPOINT"`
		EmailFrom        string `yaml:"email_from" env:"EMAIL_FROM"`
		// FCM: with no credentials file, push goes to the log sink.
		FCMCredentialsFile string `yaml:"fcm_credentials_file" env:"FCM_CREDENTIALS_FILE"`
		FCMEndpoint        string `yaml:"fcm_endpoint" env:"FCM_ENDPOINT"`
		// Retries of what a provider could not take yet.
		MaxAttempts int             `yaml:"max_attempts" env:"MAX_ATTEMPTS"`
		RetryBase   config.Duration `yaml:"retry_base" env:"RETRY_BASE"`
		RetryMax    config.Duration `yaml:"retry_max" env:"RETRY_MAX"`
		Workers     int             `yaml:"workers" env:"WORKERS"`
	} `yaml:"notifications" env:"NOTIFICATIONS_"`
}

func main() { service.Main("notifications", run) }

func run(ctx context.Context) error {
	cfg := Config{Mesh: config.Defaults()}
	n := &cfg.Notifications
	n.DBPath = "notifications/notifications.db"
	n.SendGridEndpoint = "https://api.sendgrid.com"
	n.EmailFrom = "marketmesh <no-reply@marketmesh.local>"
	n.FCMEndpoint = "https://fcm.googleapis.com/v1"
	n.MaxAttempts = 8
	n.RetryBase = config.Duration(2 * time.Second)
	n.RetryMax = config.Duration(10 * time.Minute)
	n.Workers = 8
	if err := service.Boot(&cfg, func() (string, string) { return n.OpsAddress, "/readyz" }); err != nil {
		return err
	}
	switch {
	case n.MaxAttempts < 1:
		return errors.New("notifications.max_attempts must be at least 1")
	case n.RetryBase.D() <= 0 || n.RetryMax.D() < n.RetryBase.D():
		return errors.New("notifications.retry_base must be positive and at most retry_max")
	case n.Workers < 1 || n.Workers > 256:
		return errors.New("notifications.workers must be between 1 and 256")
	}
	// Providers first: a missing or unreadable credentials file stops the
	// service at start, naming the file.
	email, push, err := providers(ctx, cfg)
	if err != nil {
		return err
	}
	svc, err := service.New("notifications", cfg.Mesh, n.Server, service.Version(version))
	if err != nil {
		return err
	}
	db, err := store.Open(cfg.Path(n.DBPath))
	if err != nil {
		return err
	}
	defer db.Close()

	send := sender.New(db, usersrpc.NewClient(svc.Client()), email, push, sender.Options{
		Policy:  delivery.Policy{MaxAttempts: n.MaxAttempts, Base: n.RetryBase.D(), Max: n.RetryMax.D()},
		Workers: n.Workers,
	})
	h := handler.New(db, send.Kick)
	if err := svc.Handle(h); err != nil {
		return err
	}
	// Only events appended after notifications first subscribes: a new
	// deployment must not mail everyone who registered before it existed.
	consumer := events.NewConsumer(db.Bolt())
	handler.Subscribe(consumer, send.Kick)
	if err := consumer.Attach(svc, events.FromLatest()); err != nil {
		return err
	}
	svc.Health().Add("bbolt", db.Check)
	if err := svc.Exclusive(db.Bolt()); err != nil {
		return err
	}
	svc.Go(send.Run)
	return svc.Run(ctx)
}

// providers builds the channels' senders; a channel with no credentials
// uses the log sink.
func providers(ctx context.Context, cfg Config) (provider.EmailSender, provider.PushSender, error) {
	n := cfg.Notifications
	var email provider.EmailSender = provider.NewLogEmail()
	if n.SendGridAPIKey != "" {
		sg, err := provider.NewSendGrid(n.SendGridAPIKey, n.SendGridEndpoint, n.EmailFrom)
		if err != nil {
			return nil, nil, err
		}
		email = sg
	}
	var push provider.PushSender = provider.NewLogPush()
	if n.FCMCredentialsFile != "" {
		fcm, err := provider.NewFCM(ctx, n.FCMCredentialsFile, n.FCMEndpoint)
		if err != nil {
			return nil, nil, err
		}
		push = fcm
	}
	return email, push, nil
}
