// Package meshtest gives tests across the repository a real mesh to run
// against: a Consul agent started for the test (the `consul` binary from
// `make consul` / scripts/consul.sh must be on PATH), free addresses, and
// polling helpers that wait for registry states instead of sleeping.
package meshtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-micro/plugins/v4/registry/consul"
	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/consul/sdk/freeport"
	"github.com/hashicorp/consul/sdk/testutil"
	"github.com/prometheus/client_golang/prometheus"
	"go-micro.dev/v4/client"
	"go-micro.dev/v4/registry"

	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/meshtls"
	"github.com/marketmesh/marketmesh/plugins/rpcclient"
)

// pollEvery is how often the Wait helpers and Eventually look again.
const pollEvery = 50 * time.Millisecond

// Agent is a running Consul agent (server mode, single node) owned by one test.
type Agent struct {
	// Addr is the HTTP API address, "127.0.0.1:port": give it to
	// config.Consul.Address or registry.Addrs.
	Addr string
	// Client talks to the agent's HTTP API.
	Client *api.Client
	// DataDir is a temporary directory of the test, for the data (and mesh
	// key) of services registered with this agent.
	DataDir string
}

// Consul starts a Consul agent bound to 127.0.0.1 on free ports, waits until
// it has elected itself leader and registered its node, and stops it when the
// test ends. Its logs are printed only if the test fails or runs verbose.
// Without a consul binary on PATH the test fails: it never skips.
func Consul(t testing.TB, opts ...Option) *Agent {
	t.Helper()
	if _, err := exec.LookPath("consul"); err != nil {
		t.Fatalf("meshtest: no consul binary on PATH (%v); build it once with `make consul` "+
			"or scripts/consul.sh, then run tests with PATH=$(dirname $(scripts/consul.sh)):$PATH", err)
	}
	srv, err := testutil.NewTestServerConfigT(t, func(c *testutil.TestServerConfig) {
		c.LogLevel = "info"
		c.Bind = "127.0.0.1"
		for _, o := range opts {
			o(c)
		}
		// The mesh's service identities are Connect certificates (plugins/meshtls).
		c.Connect = map[string]any{"enabled": true}
	})
	if err != nil {
		t.Fatalf("meshtest: start consul: %v", err)
	}
	t.Cleanup(func() {
		// Consul exits with status 1 on SIGINT; only other failures matter.
		var exit *exec.ExitError
		if err := srv.Stop(); err != nil && !errors.As(err, &exit) {
			t.Logf("meshtest: stop consul: %v", err)
		}
	})
	srv.WaitForLeader(t)
	srv.WaitForSerfCheck(t)
	srv.WaitForActiveCARoot(t)

	cfg := api.DefaultConfig()
	cfg.Address = srv.HTTPAddr
	cfg.Token = srv.Config.ACL.Tokens.InitialManagement // WithACL
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatalf("meshtest: consul client: %v", err)
	}
	return &Agent{Addr: srv.HTTPAddr, Client: client, DataDir: t.TempDir()}
}

// Identity returns a started identity for service ("marketmesh.orders")
// from the agent's Connect CA: a test's client proves it is that service
// with rpcclient.Identity(id). It stops when the test ends.
func (a *Agent) Identity(t testing.TB, service string) *meshtls.Identity {
	t.Helper()
	id := meshtls.New(a.Client, service)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	wait, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	if err := id.Start(wait, ctx); err != nil {
		t.Fatalf("meshtest: identity %s: %v", service, err)
	}
	return id
}

// Caller returns a client stack (plugins/rpcclient) that proves service
// ("marketmesh.api") with a certificate from the agent's Connect CA: what a
// test calls a real server with, as that service.
func (a *Agent) Caller(t testing.TB, service string) client.Client {
	t.Helper()
	reg := consul.NewRegistry(registry.Addrs(a.Addr))
	return rpcclient.New(reg, config.NewLive(config.Defaults().RPC),
		rpcclient.Identity(a.Identity(t, service)), rpcclient.Metrics(prometheus.NewRegistry()))
}

// Passing returns the instances of service whose checks all pass.
func (a *Agent) Passing(service string) ([]*api.ServiceEntry, error) {
	entries, _, err := a.Client.Health().Service(service, "", true, nil)
	return entries, err
}

// all returns every registered instance of service, whatever its health.
func (a *Agent) all(service string) ([]*api.ServiceEntry, error) {
	entries, _, err := a.Client.Health().Service(service, "", false, nil)
	return entries, err
}

// WaitPassing waits until exactly n instances of service pass their checks
// and returns them; on timeout it fails the test with what it saw last.
func (a *Agent) WaitPassing(t testing.TB, service string, n int, timeout time.Duration) []*api.ServiceEntry {
	t.Helper()
	var passing []*api.ServiceEntry
	a.wait(t, service, timeout, fmt.Sprintf("exactly %d passing", n), func(entries []*api.ServiceEntry) bool {
		passing = passing[:0]
		for _, e := range entries {
			if e.Checks.AggregatedStatus() == api.HealthPassing {
				passing = append(passing, e)
			}
		}
		return len(passing) == n
	})
	return passing
}

// WaitGone waits until no instance of service is registered at all.
func (a *Agent) WaitGone(t testing.TB, service string, timeout time.Duration) {
	t.Helper()
	a.wait(t, service, timeout, "no instance registered", func(entries []*api.ServiceEntry) bool {
		return len(entries) == 0
	})
}

// WaitCritical waits until service has at least one instance and none passes.
func (a *Agent) WaitCritical(t testing.TB, service string, timeout time.Duration) {
	t.Helper()
	a.wait(t, service, timeout, "registered, none passing", func(entries []*api.ServiceEntry) bool {
		for _, e := range entries {
			if e.Checks.AggregatedStatus() == api.HealthPassing {
				return false
			}
		}
		return len(entries) > 0
	})
}

// wait polls every registered instance of service until done accepts them.
func (a *Agent) wait(t testing.TB, service string, timeout time.Duration, want string, done func([]*api.ServiceEntry) bool) {
	t.Helper()
	var last string
	deadline := time.Now().Add(timeout)
	for {
		entries, err := a.all(service)
		if err == nil && done(entries) {
			return
		}
		last = describe(entries, err)
		if time.Now().After(deadline) {
			t.Fatalf("meshtest: %s: wanted %s within %v; last seen: %s", service, want, timeout, last)
		}
		time.Sleep(pollEvery)
	}
}

// describe renders instances and their check states for failure messages.
func describe(entries []*api.ServiceEntry, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	if len(entries) == 0 {
		return "no instances"
	}
	parts := make([]string, 0, len(entries))
	for _, e := range entries {
		checks := make([]string, 0, len(e.Checks))
		for _, c := range e.Checks {
			s := c.CheckID + "=" + c.Status
			if c.Status != api.HealthPassing && c.Output != "" {
				s += fmt.Sprintf(" (%s)", strings.TrimSpace(c.Output))
			}
			checks = append(checks, s)
		}
		parts = append(parts, fmt.Sprintf("%s@%s:%d [%s]", e.Service.ID, e.Service.Address, e.Service.Port, strings.Join(checks, ", ")))
	}
	return strings.Join(parts, "; ")
}

// FreeAddr returns "127.0.0.1:port" for a port that is free now and kept
// for this test (returned to the pool when it ends).
func FreeAddr(t testing.TB) string {
	t.Helper()
	// Consul's freeport hands out ports from a block below the kernel's
	// ephemeral range, held for this test: a port picked by listening on :0
	// and closing can be taken by another process's :0 listener (or an
	// outgoing connection) before it is used.
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freeport.GetOne(t)))
}

// Eventually calls cond every 50 ms until it returns nil, and fails the test
// with cond's last error if that has not happened within timeout.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("meshtest: condition not met within %v: %v", timeout, err)
		}
		time.Sleep(pollEvery)
	}
}
