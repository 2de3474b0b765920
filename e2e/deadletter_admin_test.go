package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/plugins/meshtest"
)

// restartAPI stops the api and starts it again with extra environment, as
// an operator changes its configuration, and waits until it is ready.
func (m *mesh) restartAPI(t testing.TB, env ...string) {
	t.Helper()
	m.api.stop()
	m.api.env = append(slices.Clip(m.api.env), env...) // the services share the slice's array
	m.api.start()
	probe := &http.Client{Timeout: 2 * time.Second} // refused connections while it starts are expected
	meshtest.Eventually(t, 30*time.Second, func() error {
		resp, err := probe.Get(m.opsURL + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz answered %d after the restart", resp.StatusCode)
		}
		return nil
	})
}

// An operator becomes admin the way the README says: register, read the ID
// from GET /v1/users/me, restart the api with API_ADMIN_USERS=<id>, log in
// again. The admin then lists the dead letters of every producing service,
// through each one's EventsAdmin handler; other users get 403.
//
// Producing a real dead letter takes a subscriber that keeps refusing an
// event ten times (the relay's default, not configurable per process), and
// the services acknowledge undecodable events on purpose; the plugin test
// (plugins/events/admin_test.go) covers listing and replaying a real one
// over RPC. Here the replay path is followed end to end to its 404.
func TestDeadLetterAdminRoutes(t *testing.T) {
	m := startMesh(t)
	const path = "/v1/admin/events/dead-letters"
	credentials := map[string]string{"email": "ops@example.com", "password": "correct horse"}
	m.must(201, "POST", "/v1/auth/register", "", map[string]string{"email": "ops@example.com", "password": "correct horse", "name": "Ops"})
	opsToken := m.must(200, "POST", "/v1/auth/login", "", credentials)["token"].(string)
	opsID := m.must(200, "GET", "/v1/users/me", opsToken, nil)["id"].(string)
	_, shopperToken := m.signup("shopper@example.com")

	wantCode := func(t *testing.T, status int, code, method, path, token string) {
		t.Helper()
		st, body, hdr := m.call(method, path, token, nil)
		if st != status {
			t.Fatalf("%s %s: status %d, want %d: %v", method, path, st, status, body)
		}
		if got := errorCode(t, body, hdr); got != code {
			t.Fatalf("%s %s: code %q, want %q", method, path, got, code)
		}
	}

	t.Run("before the api lists the operator, the operator's token is 403", func(t *testing.T) {
		wantCode(t, 403, "forbidden", "GET", path, opsToken)
	})

	m.restartAPI(t, "API_ADMIN_USERS="+opsID)

	t.Run("a token from before the restart still lacks the role: 403 until the operator logs in again", func(t *testing.T) {
		wantCode(t, 403, "forbidden", "GET", path, opsToken)
	})
	adminToken := m.must(200, "POST", "/v1/auth/login", "", credentials)["token"].(string)

	t.Run("without a token it is 401, as another user 403", func(t *testing.T) {
		wantCode(t, 401, "unauthenticated", "GET", path, "")
		wantCode(t, 403, "forbidden", "GET", path, shopperToken)
		wantCode(t, 403, "forbidden", "POST", path+"/products/publications/1/replay", shopperToken)
	})

	t.Run("the admin lists the dead letters of every producing service: none", func(t *testing.T) {
		for _, query := range []string{"", "?service=orders", "?service=products", "?service=publications", "?service=users"} {
			body := m.must(200, "GET", path+query, adminToken, nil)
			items, _ := body["items"].([]any)
			unavailable, _ := body["unavailable"].([]any)
			if items == nil || len(items) != 0 || body["partial"] != false || unavailable == nil || len(unavailable) != 0 {
				t.Fatalf("GET %s%s = %v, want no items from every service", path, query, body)
			}
		}
		wantCode(t, 400, "bad_request", "GET", path+"?service=images", adminToken)
	})

	t.Run("replaying a dead letter that does not exist is 404 dead_letter_not_found from the producer", func(t *testing.T) {
		wantCode(t, 404, "dead_letter_not_found", "POST", path+"/products/publications/1/replay", adminToken)
		wantCode(t, 404, "dead_letter_not_found", "POST", path+"/users/orders/7/replay", adminToken)
		wantCode(t, 400, "bad_request", "POST", path+"/products/publications/0/replay", adminToken)
	})
}
