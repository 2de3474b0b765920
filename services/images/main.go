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
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"go-micro.dev/v4/util/addr"

	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/service"
	"github.com/marketmesh/marketmesh/services/images/internal/budget"
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
		// MaxDecodeBytes is the most memory one upload may need to decode
		// and thumbnail, worked out from its header; larger ones get 422.
		MaxDecodeBytes int64 `yaml:"max_decode_bytes" env:"MAX_DECODE_BYTES"`
		// DecodeMemory is the memory every decode of the process shares:
		// uploads wait for their part of it.
		DecodeMemory int64 `yaml:"decode_memory" env:"DECODE_MEMORY"`
		// DecodeWait is the longest an upload waits for its part, then 503.
		DecodeWait config.Duration `yaml:"decode_wait" env:"DECODE_WAIT"`
	} `yaml:"images" env:"IMAGES_"`
}

// memoryHeadroom is what the process needs besides decoding (go-micro,
// gRPC, the Consul client, bbolt, the buffers of uploads in flight): with
// the decode memory, the soft limit given to the runtime when GOMEMLIMIT
// is not set.
const memoryHeadroom = 64 << 20

// After a burst of decodes that held giveBackBurst bytes at once, once the
// budget has been empty for giveBackAfter, the heap is returned to the
// system (see decodeBudget).
const (
	giveBackBurst = 64 << 20
	giveBackAfter = time.Second
)

// shutdownGrace is how long in-flight uploads and downloads get to finish.
const shutdownGrace = 30 * time.Second

func main() { service.Main("images", run) }

func run(ctx context.Context) error {
	cfg := Config{Mesh: config.Defaults()}
	cfg.Images.HTTPAddress = "127.0.0.1:0"
	cfg.Images.DBPath, cfg.Images.BlobDir = "images/images.db", "images/blobs"
	cfg.Images.MaxDecodeBytes, cfg.Images.DecodeMemory = handler.DefaultMaxDecodeBytes, handler.DefaultDecodeMemory
	cfg.Images.DecodeWait = config.Duration(handler.DefaultDecodeWait)
	if err := service.Boot(&cfg, func() (string, string) { return cfg.Images.OpsAddress, "/readyz" }); err != nil {
		return err
	}
	decoding, err := decodeBudget(cfg.Images.MaxDecodeBytes, cfg.Images.DecodeMemory, cfg.Images.DecodeWait.D())
	if err != nil {
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
		// Mutual TLS, and only the callers the call table allows (the api).
		Handler:           svc.GuardHTTP(handler.NewHTTP(db, handler.HTTPOptions{MaxDecodeBytes: cfg.Images.MaxDecodeBytes, Decoding: decoding})),
		TLSConfig:         svc.TLSConfig(),
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
	go func() { done <- srv.ServeTLS(ln, "", "") }() // certificates from srv.TLSConfig
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

// decodeBudget checks the decode limits and returns the memory budget
// every decode shares, and sets how the process holds memory around it:
//   - a soft memory limit for the runtime, so garbage from finished decodes
//     is collected before the heap outgrows the container: GOMEMLIMIT when
//     set (docker-compose sets it to 90% of the container's limit; the
//     runtime has applied it already), else the decode memory plus headroom;
//   - once a burst of large decodes is over (a second without any), the
//     memory goes back to the system: under the limit alone the runtime
//     kept 333 MiB resident for over two minutes after eight 125 MiB
//     decodes; one debug.FreeOSMemory (44 ms) brought it back to 26 MiB.
func decodeBudget(perImage, total int64, wait time.Duration) (*budget.Budget, error) {
	switch {
	case perImage <= 0 || total <= 0 || wait <= 0:
		return nil, fmt.Errorf("images: IMAGES_MAX_DECODE_BYTES (%d), IMAGES_DECODE_MEMORY (%d) and IMAGES_DECODE_WAIT (%v) must be positive", perImage, total, wait)
	case perImage > total:
		return nil, fmt.Errorf("images: IMAGES_MAX_DECODE_BYTES (%d) exceeds IMAGES_DECODE_MEMORY (%d): such an upload could never be decoded", perImage, total)
	}
	limit, source := total+memoryHeadroom, "decode memory plus headroom"
	if os.Getenv("GOMEMLIMIT") != "" {
		limit, source = debug.SetMemoryLimit(-1), "GOMEMLIMIT"
		if limit < total+memoryHeadroom/2 {
			slog.Warn("images: GOMEMLIMIT leaves little room besides the decode memory; the GC will work hard under load",
				"gomemlimit", limit, "decode_memory", total)
		}
	} else {
		debug.SetMemoryLimit(limit)
	}
	slog.Info("images: decode memory", "per_image", perImage, "total", total, "wait", wait, "memory_limit", limit, "memory_limit_from", source)
	decoding := budget.New(total, wait)
	decoding.WhenIdle(giveBackAfter, giveBackBurst, debug.FreeOSMemory)
	return decoding, nil
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
