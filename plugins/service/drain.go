package service

import (
	"sync/atomic"

	"go-micro.dev/v4/registry"
)

// drainingRegistry is the registry the server sees. The first Deregister
// (the start of shutdown) is final: go-micro's re-register timer may still
// fire during the drain delay and would put the instance back, and
// server.Stop deregisters a second time (Consul answers "Unknown service
// ID"). Both become no-ops. The service never deregisters otherwise: it sets
// no go-micro RegisterCheck.
type drainingRegistry struct {
	registry.Registry
	draining atomic.Bool
}

func (d *drainingRegistry) Register(s *registry.Service, opts ...registry.RegisterOption) error {
	if d.draining.Load() {
		return nil
	}
	return d.Registry.Register(s, opts...)
}

func (d *drainingRegistry) Deregister(s *registry.Service, opts ...registry.DeregisterOption) error {
	if d.draining.Swap(true) {
		return nil
	}
	return d.Registry.Deregister(s, opts...)
}
