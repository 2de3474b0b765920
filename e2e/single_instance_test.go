package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/plugins/meshtest"
)

// One instance serves each stateful service's data: a second users process
// with a database of its own waits without registering, and a restart of
// the first on its own data takes over from the session its kill -9 left.
func TestSingleInstancePerStatefulService(t *testing.T) {
	m := startMesh(t)
	_, token := m.signup("single@example.com")
	m.must(http.StatusOK, "GET", "/v1/users/me", token, nil)

	secondOps := meshtest.FreeAddr(t)
	second := &proc{t: t, name: "users", env: append(append([]string(nil), m.users.env...),
		"MARKETMESH_DATA_DIR="+t.TempDir(), "USERS_OPS_ADDRESS="+secondOps)}
	second.start()
	t.Cleanup(second.stop)
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + secondOps + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp.StatusCode, string(body)
	}
	meshtest.Eventually(t, 30*time.Second, func() error {
		if st, body := readyz(); st != http.StatusServiceUnavailable || !strings.Contains(body, "single-instance lock") {
			return fmt.Errorf("second instance /readyz: %d %s", st, body)
		}
		if !strings.Contains(second.log.String(), "never takes over with other data") {
			return fmt.Errorf("second instance has not logged why it waits:\n%s", second.log.String())
		}
		return nil
	})
	all, _, err := m.consul.Client.Catalog().Service("marketmesh.users", "", nil)
	if err != nil || len(all) != 1 {
		t.Fatalf("users instances in Consul while the second waits: %d (%v), want 1", len(all), err)
	}

	// kill -9: the session outlives the process; the restart on the same
	// data takes the lock over instead of waiting for its TTL.
	m.users.kill()
	killed := time.Now()
	m.users.start()
	meshtest.Eventually(t, 60*time.Second, func() error {
		if st, _, _ := m.call("GET", "/v1/users/me", token, nil); st != http.StatusOK {
			return fmt.Errorf("GET /v1/users/me: %d", st)
		}
		return nil
	})
	took := time.Since(killed)
	t.Logf("kill -9 → serving the same data again after %v", took.Round(time.Millisecond))
	if !strings.Contains(m.users.log.String(), "taking over the single-instance lock") {
		t.Errorf("the restarted users did not log the takeover")
	}
	// The second instance saw the lock change hands and still waits.
	if st, body := readyz(); st != http.StatusServiceUnavailable {
		t.Fatalf("second instance became ready after the takeover: %d %s", st, body)
	}
	// The killed instance's registration stays passing until Consul's next
	// probe of it fails; then exactly one instance remains.
	meshtest.Eventually(t, 30*time.Second, func() error {
		if passing, _ := m.consul.Passing("marketmesh.users"); len(passing) != 1 {
			return fmt.Errorf("%d users instances passing, want 1", len(passing))
		}
		return nil
	})
	if st, body := readyz(); st != http.StatusServiceUnavailable {
		t.Fatalf("second instance became ready: %d %s", st, body)
	}
}
