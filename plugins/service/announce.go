package service

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go-micro.dev/v4/registry"
)

// Announcement is the registration of a process that is not a go-micro
// server (the api's HTTP listener), so it shows in Consul with its health.
type Announcement struct {
	reg        *drainingRegistry // Withdraw is final, as for the services
	service    *registry.Service
	registered atomic.Bool // a Register succeeded once
	// every is the re-register period once registered; retry is the first
	// delay after a failed attempt, doubling up to maxRetry.
	every, retry, maxRetry time.Duration
}

// NewNodeID returns a fresh node ID for name, to build the check URL with
// (CheckURL) before announcing.
func NewNodeID(name string) string { return name + "-" + uuid.NewString() }

// Announce prepares the registration of node nodeID of name at address
// (host:port that Consul can probe). Nothing is sent to Consul until Keep
// runs, so a process can serve while Consul is unreachable.
func Announce(reg registry.Registry, name, nodeID, version, address string, md map[string]string) *Announcement {
	return &Announcement{
		reg: &drainingRegistry{Registry: reg},
		service: &registry.Service{
			Name:    name,
			Version: version,
			Nodes:   []*registry.Node{{Id: nodeID, Address: address, Metadata: md}},
		},
		every:    10 * time.Second,
		retry:    250 * time.Millisecond,
		maxRetry: 5 * time.Second,
	}
}

// Keep registers at once, retries with backoff while Consul is unreachable,
// then re-registers periodically (a restarted Consul agent forgets services;
// the registry re-checks a registration it made at most every 65 s). It
// returns when ctx ends or once Withdraw was called.
func (a *Announcement) Keep(ctx context.Context) {
	id := a.service.Nodes[0].Id
	var delay time.Duration // the first attempt is immediate
	failures := 0
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := a.reg.Register(a.service)
		if a.reg.Draining() {
			return
		}
		switch {
		case err != nil && failures == 0:
			slog.Warn("not registered in Consul; retrying", "id", id, "err", err)
		case err != nil:
			slog.Debug("register failed; retrying", "id", id, "attempt", failures+1, "err", err)
		case failures > 0 || !a.registered.Load():
			slog.Info("registered in Consul", "id", id, "failed_attempts", failures)
		}
		if err != nil {
			delay = min(a.retry<<min(failures, 16), a.maxRetry)
			failures++
		} else {
			a.registered.Store(true)
			delay, failures = a.every, 0
		}
		t.Reset(delay)
	}
}

// Withdraw deregisters; call first on shutdown. It is final: neither Keep
// nor a register on its way to Consul puts the instance back afterwards.
func (a *Announcement) Withdraw() error {
	err := a.reg.Deregister(a.service)
	if err != nil && !a.registered.Load() {
		return nil // never made it into Consul: there is nothing to withdraw
	}
	return err
}
