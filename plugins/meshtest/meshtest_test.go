package meshtest_test

import (
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/marketmesh/marketmesh/plugins/meshtest"
)

func TestAgentTracksServiceStates(t *testing.T) {
	start := time.Now()
	a := meshtest.Consul(t)
	t.Logf("consul up in %v at %s", time.Since(start), a.Addr)

	reg := func(id, ttlStatus string) {
		t.Helper()
		err := a.Client.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: id, Name: "demo", Address: "127.0.0.1", Port: 1,
			Check: &api.AgentServiceCheck{TTL: "1m", Status: ttlStatus},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	reg("demo-1", api.HealthPassing)
	reg("demo-2", api.HealthPassing)
	if got := a.WaitPassing(t, "demo", 2, 5*time.Second); len(got) != 2 {
		t.Fatalf("WaitPassing returned %d entries, want 2", len(got))
	}
	passing, err := a.Passing("demo")
	if err != nil || len(passing) != 2 {
		t.Fatalf("Passing = %d entries, %v; want 2", len(passing), err)
	}

	for _, id := range []string{"demo-1", "demo-2"} {
		if err := a.Client.Agent().UpdateTTL("service:"+id, "down", api.HealthCritical); err != nil {
			t.Fatal(err)
		}
	}
	a.WaitCritical(t, "demo", 5*time.Second)

	for _, id := range []string{"demo-1", "demo-2"} {
		if err := a.Client.Agent().ServiceDeregister(id); err != nil {
			t.Fatal(err)
		}
	}
	a.WaitGone(t, "demo", 5*time.Second)
}

func TestFreeAddrIsListenable(t *testing.T) {
	addr := meshtest.FreeAddr(t)
	if addr == "" {
		t.Fatal("empty address")
	}
}
