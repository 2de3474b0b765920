package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/plugins/meshtest"
)

func TestDiscoveryFollowsTheServiceLifecycle(t *testing.T) {
	m := startMesh(t)
	_, token := m.signup("dora@example.com")

	t.Run("after SIGTERM the instance is gone from Consul at once", func(t *testing.T) {
		m.users.stop() // returns once the process has exited
		all, _, err := m.consul.Client.Health().Service("marketmesh.users", "", false, nil)
		if err != nil || len(all) != 0 {
			t.Fatalf("still registered after a clean stop: %d instances, err %v", len(all), err)
		}
		st, body, hdr := m.call("GET", "/v1/users/me", token, nil)
		if st != 503 || errorCode(t, body, hdr) != "unavailable" {
			t.Fatalf("with users stopped: %d %v", st, body)
		}
		m.users.start()
		m.consul.WaitPassing(t, "marketmesh.users", 1, 10*time.Second)
		meshtest.Eventually(t, 5*time.Second, func() error { return expect(m, 200, token) })
	})

	t.Run("after kill -9 Consul marks it critical and the api stops routing to it within seconds", func(t *testing.T) {
		m.users.kill()
		killed := time.Now()
		m.consul.WaitCritical(t, "marketmesh.users", 5*time.Second)
		critical := time.Since(killed)
		meshtest.Eventually(t, 5*time.Second, func() error { return expect(m, 503, token) })
		start := time.Now()
		st, _, _ := m.call("GET", "/v1/users/me", token, nil)
		if took := time.Since(start); st != 503 || took > 200*time.Millisecond {
			t.Fatalf("after the instance went critical: %d in %v, want a fast 503", st, took)
		}
		t.Logf("kill -9 → critical in Consul after %v", critical.Round(time.Millisecond))

		m.users.start()
		m.consul.WaitPassing(t, "marketmesh.users", 1, 10*time.Second)
		meshtest.Eventually(t, 5*time.Second, func() error { return expect(m, 200, token) })
		t.Logf("restart → serving again after %v", time.Since(killed).Round(time.Millisecond))
	})
}

func TestBreakerFailsFastAndRecovers(t *testing.T) {
	// A 5 s Consul check keeps the hung instance "passing" for the second or
	// two this takes, so what the test sees is the breaker, not Consul.
	m := startMesh(t, "MARKETMESH_RPC_TIMEOUT=400ms", "MARKETMESH_BREAKER_FAILURES=3",
		"MARKETMESH_BREAKER_OPEN_FOR=1s", "MARKETMESH_CHECK_INTERVAL=5s")
	_, token := m.signup("erin@example.com")

	m.users.pause() // hung: sockets open, no answers
	var took []time.Duration
	opened := -1 // index of the call during which the breaker opened
	for i := 0; i < 10; i++ {
		start := time.Now()
		st, body, hdr := m.call("GET", "/v1/users/me", token, nil)
		took = append(took, time.Since(start))
		if st != 503 || errorCode(t, body, hdr) != "unavailable" {
			t.Fatalf("call %d with users hung: %d %v", i, st, body)
		}
		if opened < 0 && strings.Contains(body["error"].(map[string]any)["message"].(string), "circuit open") {
			opened = i
		}
	}
	if opened < 0 || opened > 2 {
		t.Fatalf("the breaker should open within the first 3 calls (3 failed attempts); opened at call %d: %v", opened, took)
	}
	for _, d := range took[:opened+1] {
		if d < 350*time.Millisecond {
			t.Fatalf("a call before the breaker opened took %v: it should have waited for the 400ms timeout (all: %v)", d, took)
		}
	}
	for _, d := range took[opened+1:] {
		if d > 50*time.Millisecond {
			t.Fatalf("with the breaker open a call took %v, want milliseconds (all: %v)", d, took)
		}
	}
	t.Logf("hung users: %d calls waited for timeouts %v, then %d failed fast %v", opened+1, took[:opened+1], len(took)-opened-1, took[opened+1:])

	m.users.resume()
	resumed := time.Now()
	meshtest.Eventually(t, 15*time.Second, func() error { return expect(m, 200, token) })
	t.Logf("resumed → answering again after %v (breaker open for 1s, then one trial call)", time.Since(resumed).Round(time.Millisecond))
}

func TestARegisteredUserSurvivesKill9(t *testing.T) {
	m := startMesh(t)
	id, _ := m.signup("fred@example.com")
	m.users.kill()
	m.users.start()
	m.consul.WaitPassing(t, "marketmesh.users", 1, 10*time.Second)
	var login map[string]any
	meshtest.Eventually(t, 5*time.Second, func() error {
		st, body, _ := m.call("POST", "/v1/auth/login", "", map[string]string{"email": "fred@example.com", "password": "correct horse"})
		if st != http.StatusOK {
			return errStatus(st, body)
		}
		login = body
		return nil
	})
	if login["user"].(map[string]any)["id"] != id {
		t.Fatalf("after restart login returned %v, want user %s", login, id)
	}
}

func expect(m *mesh, status int, token string) error {
	st, body, _ := m.call("GET", "/v1/users/me", token, nil)
	if st != status {
		return errStatus(st, body)
	}
	return nil
}

// errStatus describes an unexpected answer for Eventually's report.
func errStatus(st int, body map[string]any) error { return fmt.Errorf("status %d: %v", st, body) }
