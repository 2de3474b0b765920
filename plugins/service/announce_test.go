package service

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/consul/sdk/testutil"
	"go-micro.dev/v4/registry"

	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/meshtest"
)

// consulAt starts a Consul agent whose HTTP API listens on addr (reserved
// with meshtest.FreeAddr): a test can first run against an address where
// Consul is down, then bring it up there. It stops when the test ends.
func consulAt(t *testing.T, addr string) *meshtest.Agent {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := testutil.NewTestServerConfigT(t, func(c *testutil.TestServerConfig) {
		c.Bind = "127.0.0.1"
		c.Connect = nil
		c.Ports.HTTP = p
	})
	if err != nil {
		t.Fatalf("start consul at %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = srv.Stop() }) // it exits with status 1 on SIGINT
	srv.WaitForLeader(t)
	srv.WaitForSerfCheck(t)
	cfg := api.DefaultConfig()
	cfg.Address = addr
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &meshtest.Agent{Addr: addr, Client: client, DataDir: t.TempDir()}
}

// announced is an HTTP process (its /healthz passes) announced through the
// Consul registry at consulAddr, with fast re-register and retry periods.
type announced struct {
	*Announcement
	name, id string
	keeping  chan struct{} // closed when Keep returned
	failed   chan struct{} // closed at the first failed Register
}

// Keep runs until the test ends (or Withdraw).
func announce(t *testing.T, consulAddr, name string) *announced {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	id := NewNodeID(name)
	h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || r.URL.Query().Get("instance") != id {
			http.Error(w, "not this instance", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(h.Close)
	_, port, _ := net.SplitHostPort(h.Listener.Addr().String())
	reg := NewRegistry(config.Consul{Address: consulAddr, CheckInterval: config.Duration(time.Second)}, port, CheckURL("/healthz", id))
	obs := &failureRegistry{Registry: reg, failed: make(chan struct{})}
	a := &announced{
		Announcement: Announce(obs, name, id, "1.2.3", h.Listener.Addr().String(), map[string]string{"protocol": "http"}),
		name:         name, id: id, keeping: make(chan struct{}), failed: obs.failed,
	}
	a.every, a.retry, a.maxRetry = 200*time.Millisecond, 50*time.Millisecond, 500*time.Millisecond
	go func() {
		defer close(a.keeping)
		a.Keep(ctx)
	}()
	return a
}

// announceWhileConsulIsDown announces name against a reserved address where
// no Consul listens yet, and returns once a register has failed there.
func announceWhileConsulIsDown(t *testing.T, name string) (a *announced, consulAddr string) {
	t.Helper()
	consulAddr = meshtest.FreeAddr(t)
	a = announce(t, consulAddr, name)
	waitClosed(t, a.failed, "a failed register while Consul is down")
	return a, consulAddr
}

// failureRegistry closes failed when a Register first fails.
type failureRegistry struct {
	registry.Registry
	once   sync.Once
	failed chan struct{}
}

func (f *failureRegistry) Register(s *registry.Service, opts ...registry.RegisterOption) error {
	err := f.Registry.Register(s, opts...)
	if err != nil {
		f.once.Do(func() { close(f.failed) })
	}
	return err
}

func waitClosed(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not happen within 15s", what)
	}
}

func TestAnAnnouncementMadeWhileConsulIsDownRegistersOnceItIsUp(t *testing.T) {
	t.Parallel()
	a, addr := announceWhileConsulIsDown(t, "marketmesh.announce-boot")

	agent := consulAt(t, addr)
	entries := agent.WaitPassing(t, a.name, 1, 30*time.Second)
	if meta := entries[0].Service.Meta; meta["version"] != "1.2.3" || meta["protocol"] != "http" {
		t.Fatalf("Meta %v, want version=1.2.3 and protocol=http", meta)
	}

	if err := a.Withdraw(); err != nil {
		t.Fatal(err)
	}
	agent.WaitGone(t, a.name, 10*time.Second)
	waitClosed(t, a.keeping, "Keep returning after Withdraw")
	if _, _, err := agent.Client.Agent().Service(a.id, nil); err == nil {
		t.Fatalf("%s is registered again after Withdraw", a.id)
	}
}

func TestAnAnnouncementWithdrawnWhileConsulIsDownNeverRegisters(t *testing.T) {
	t.Parallel()
	a, addr := announceWhileConsulIsDown(t, "marketmesh.announce-never")
	if err := a.Withdraw(); err != nil {
		t.Fatalf("Withdraw of an announcement Consul never saw: %v", err)
	}
	waitClosed(t, a.keeping, "Keep returning after Withdraw") // ctx is still alive
	agent := consulAt(t, addr)
	services, err := agent.Client.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := services[a.id]; ok {
		t.Fatalf("%s registered after Withdraw", a.id)
	}
}

func TestAnAnnouncementComesBackWhenConsulForgetsIt(t *testing.T) {
	t.Parallel()
	agent := meshtest.Consul(t)
	a := announce(t, agent.Addr, "marketmesh.announce-forgotten")
	agent.WaitPassing(t, a.name, 1, 30*time.Second)
	if err := agent.Client.Agent().ServiceDeregister(a.id); err != nil { // as a restarted dev agent would
		t.Fatal(err)
	}
	agent.WaitGone(t, a.name, 10*time.Second)
	// The registry trusts a registration it made for 65 s before checking
	// Consul again (go-micro's consul plugin), then Keep puts it back.
	agent.WaitPassing(t, a.name, 1, 2*time.Minute)
}

func TestKeepStopsOnceWithdrawnEvenWithARegisterInFlight(t *testing.T) {
	inner := &slowRegistry{entered: make(chan struct{}, 10), release: make(chan struct{})}
	a := Announce(inner, "marketmesh.x", "marketmesh.x-1", "1", "127.0.0.1:1", nil)
	a.every, a.retry = time.Millisecond, time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	keeping := make(chan struct{})
	go func() {
		defer close(keeping)
		a.Keep(ctx)
	}()
	waitClosed(t, chanOf(inner.entered), "the first register")
	withdrawn := make(chan error, 1)
	go func() { withdrawn <- a.Withdraw() }()
	select {
	case err := <-withdrawn:
		withdrawn <- err
	case <-time.After(200 * time.Millisecond):
	}
	close(inner.release)
	if err := <-withdrawn; err != nil {
		t.Fatal(err)
	}
	waitClosed(t, keeping, "Keep returning after Withdraw") // ctx is still alive
	inner.mu.Lock()
	defer inner.mu.Unlock()
	if got := strings.Join(inner.ops, ","); got != "register,deregister" {
		t.Fatalf("Consul saw %s, want register,deregister and nothing after", got)
	}
}

// chanOf turns one receive from ch into a closed channel.
func chanOf(ch <-chan struct{}) chan struct{} {
	done := make(chan struct{})
	go func() {
		<-ch
		close(done)
	}()
	return done
}
