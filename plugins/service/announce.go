package service

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"go-micro.dev/v4/registry"
)

// Announcement is the registration of a process that is not a go-micro
// server (the api's HTTP listener), so it shows in Consul with its health.
type Announcement struct {
	reg     registry.Registry
	service *registry.Service
}

// NewNodeID returns a fresh node ID for name, to build the check URL with
// (CheckURL) before announcing.
func NewNodeID(name string) string { return name + "-" + uuid.NewString() }

// Announce registers node nodeID of name at address (host:port that Consul can probe).
func Announce(reg registry.Registry, name, nodeID, version, address string, md map[string]string) (*Announcement, error) {
	s := &registry.Service{
		Name:    name,
		Version: version,
		Nodes:   []*registry.Node{{Id: nodeID, Address: address, Metadata: md}},
	}
	if err := reg.Register(s); err != nil {
		return nil, fmt.Errorf("announce %s: %w", name, err)
	}
	return &Announcement{reg: reg, service: s}, nil
}

// Keep re-registers periodically (a restarted Consul agent forgets services)
// until ctx ends.
func (a *Announcement) Keep(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.reg.Register(a.service); err != nil {
				slog.Warn("re-register failed", "service", a.service.Name, "err", err)
			}
		}
	}
}

// Withdraw deregisters; call first on shutdown.
func (a *Announcement) Withdraw() error { return a.reg.Deregister(a.service) }
