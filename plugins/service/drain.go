package service

import (
	"sync"

	"go-micro.dev/v4/registry"
)

// drainingRegistry is the registry a registering process sees (the server,
// and the api's Announcement). The first Deregister (the start of shutdown)
// is final: a re-register timer or a retry loop may still fire during the
// drain delay and would put the instance back, and server.Stop deregisters a
// second time (Consul answers "Unknown service ID"). Both become no-ops. A
// Register already on its way to Consul when shutdown begins finishes before
// the Deregister is sent, so it cannot land after it. The service never
// deregisters otherwise: it sets no go-micro RegisterCheck.
type drainingRegistry struct {
	registry.Registry
	mu       sync.RWMutex // Register holds it shared, Deregister exclusively
	draining bool
}

func (d *drainingRegistry) Register(s *registry.Service, opts ...registry.RegisterOption) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.draining {
		return nil
	}
	return d.Registry.Register(s, opts...)
}

func (d *drainingRegistry) Deregister(s *registry.Service, opts ...registry.DeregisterOption) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.draining {
		return nil
	}
	d.draining = true
	return d.Registry.Deregister(s, opts...)
}

// Draining reports whether Deregister was called.
func (d *drainingRegistry) Draining() bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.draining
}
