package service

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/keyfile"
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
//
// For a cfg holding config.Mesh it then sets the process's policies: secret
// keys are generated only in env local (keyfile.Generate), and a Consul
// token file that cannot be read stops the start, naming it.
func Boot(cfg any, probe func() (addr, path string)) error {
	if err := config.Load(cfg); err != nil {
		return err
	}
	if IsHealthcheck() {
		addr, path := probe()
		os.Exit(Probe(addr, path))
	}
	if m, ok := config.MeshOf(cfg); ok {
		keyfile.Generate(m.IsLocal())
		if _, err := m.Consul.APIConfig(); err != nil {
			return err
		}
	}
	return nil
}
