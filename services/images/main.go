// Command images runs the images service: image metadata over RPC, and the
// bytes (uploads, originals, thumbnails) over its own internal HTTP endpoint,
// whose address it publishes in its registry node metadata.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"go-micro.dev/v4/util/addr"

	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/service"
	"github.com/marketmesh/marketmesh/services/images/internal/handler"
	"github.com/marketmesh/marketmesh/services/images/internal/store"
)

// version is stamped by the build (-ldflags "-X main.version=...").
var version = "dev"

// Config is the images section of config/<env>.yaml; env vars IMAGES_* override it.
type Config struct {
	config.Mesh `yaml:",inline"`
	Images      struct {
		config.Server `yaml:",inline"`
		// HTTPAddress is where the blob endpoint listens (":0" picks a port).
		HTTPAddress string `yaml:"http_address" env:"HTTP_ADDRESS"`
		// HTTPAdvertise is the host:port others use (default: the listener's).
		HTTPAdvertise string `yaml:"http_advertise" env:"HTTP_ADVERTISE"`
		DBPath        string `yaml:"db_path" env:"DB_PATH"`
		BlobDir       string `yaml:"blob_dir" env:"BLOB_DIR"`
	} `yaml:"images" env:"IMAGES_"`
}

// shutdownGrace is how long in-flight uploads and downloads get to finish.
const shutdownGrace = 30 * time.Second

func main() { service.Main("images", run) }

func run(ctx context.Context) error {
	cfg := Config{Mesh: config.Defaults()}
	cfg.Images.HTTPAddress = "127.0.0.1:0"
	cfg.Images.DBPath, cfg.Images.BlobDir = "images/images.db", "images/blobs"
	if err := service.Boot(&cfg, func() (string, string) { return cfg.Images.OpsAddress, "/readyz" }); err != nil {
		return err
	}
	svc, err := service.New("images", cfg.Mesh, cfg.Images.Server, service.Version(version))
	if err != nil {
		return err
	}
	db, err := store.Open(cfg.Path(cfg.Images.DBPath), cfg.Path(cfg.Images.BlobDir))
	if err != nil {
		return err
	}
	defer db.Close()
	if err := svc.Handle(handler.New(db)); err != nil {
		return err
	}
	svc.Health().Add("bbolt", db.Check)
	// One instance serves this data (see service.Exclusive and the README).
	if err := svc.Exclusive(db.Bolt()); err != nil {
		return err
	}

	// Listen before registering, so ":0" works and the advertised address is real.
	ln, err := net.Listen("tcp", cfg.Images.HTTPAddress)
	if err != nil {
		return fmt.Errorf("images: blob endpoint: %w", err)
	}
	advertised, err := advertise(cfg.Images.HTTPAdvertise, ln.Addr().String())
	if err != nil {
		ln.Close()
		return err
	}
	svc.SetMetadata(imagesrpc.HTTPAddressKey, advertised)
	srv := &http.Server{
		Handler:           handler.NewHTTP(db, handler.HTTPOptions{}),
		ReadHeaderTimeout: 5 * time.Second,
		// Each handler sets its own, tighter deadlines; these bound the rest.
		ReadTimeout:    2 * time.Minute,
		WriteTimeout:   2 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
	}
	var serveErr atomic.Pointer[error]
	svc.Health().Add("http", func(context.Context) error {
		if p := serveErr.Load(); p != nil {
			return *p
		}
		return nil
	})
	svc.Go(func(ctx context.Context) { serveBlobs(ctx, srv, ln, &serveErr) })
	slog.Info("blob endpoint listening", "address", ln.Addr().String(), "advertised", advertised)

	return svc.Run(ctx)
}

// serveBlobs serves until ctx ends (after the RPC server has drained), then
// lets in-flight transfers finish for up to shutdownGrace.
func serveBlobs(ctx context.Context, srv *http.Server, ln net.Listener, failed *atomic.Pointer[error]) {
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		if !errors.Is(err, http.ErrServerClosed) {
			err = fmt.Errorf("blob endpoint stopped: %w", err)
			failed.Store(&err)
			slog.Error("images: blob endpoint stopped", "err", err)
		}
		return
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		slog.Warn("images: blob endpoint did not drain in time", "err", err)
		_ = srv.Close()
	}
	<-done
}

// advertise returns the host:port to publish: the configured one, or the
// listener's, with a wildcard host replaced by this machine's private IP.
func advertise(configured, listening string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	host, port, err := net.SplitHostPort(listening)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if host, err = addr.Extract(""); err != nil {
			return "", fmt.Errorf("images: cannot find an address to advertise (set IMAGES_HTTP_ADVERTISE): %w", err)
		}
	}
	return net.JoinHostPort(host, port), nil
}
