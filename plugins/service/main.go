package service

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/marketmesh/marketmesh/plugins/config"
)

// Main runs a command's composition root: run gets a context that ends on
// SIGTERM or SIGINT; an error is logged and the process exits with status 1.
func Main(name string, run func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx)
	stop()
	if err != nil {
		slog.Error(name+" stopped", "err", err)
		os.Exit(1)
	}
}

// Boot loads cfg (file, then env; see config.Load). When the binary was
// started as its own container health probe (`<svc> healthcheck`), it GETs
// path on the address probe returns (read after loading) and exits.
func Boot(cfg any, probe func() (addr, path string)) error {
	if err := config.Load(cfg); err != nil {
		return err
	}
	if IsHealthcheck() {
		addr, path := probe()
		os.Exit(Probe(addr, path))
	}
	return nil
}
