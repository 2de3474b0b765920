package rpcclient_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go-micro.dev/v4/registry"

	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/meshtest"
	"github.com/marketmesh/marketmesh/plugins/rpcclient"
	"github.com/marketmesh/marketmesh/plugins/service"
)

// blobNode is an HTTP server registered as a node of service that publishes
// its address under the "http" metadata key, as the images service does.
type blobNode struct {
	srv    *httptest.Server
	hits   atomic.Int32
	broken atomic.Bool
}

func startBlobNode(t *testing.T, reg registry.Registry, service, id string) *blobNode {
	t.Helper()
	n := &blobNode{}
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.hits.Add(1)
		if n.broken.Load() {
			http.Error(w, "disk on fire", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, id+" "+r.URL.RequestURI())
	}))
	t.Cleanup(n.srv.Close)
	addr := strings.TrimPrefix(n.srv.URL, "http://")
	err := reg.Register(&registry.Service{Name: service, Nodes: []*registry.Node{
		{Id: id, Address: addr, Metadata: map[string]string{"http": addr}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func get(t *testing.T, h *rpcclient.HTTP, service, path string) (string, int, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, path, nil)
	resp, err := h.Do(context.Background(), service, req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, nil
}

func TestHTTPClient(t *testing.T) {
	agent := meshtest.Consul(t)
	reg := service.NewRegistry(config.Consul{Address: agent.Addr}, "", "")
	h := rpcclient.NewHTTP(reg, config.NewLive(testRPC), "http", rpcclient.Metrics(prometheus.NewRegistry()))

	t.Run("a service with no instance is a fast 503", func(t *testing.T) {
		start := time.Now()
		_, _, err := get(t, h, "blobs.none", "/x")
		require503(t, result{err: err}, "no passing instance")
		if took := time.Since(start); took > 200*time.Millisecond {
			t.Fatalf("took %v", took)
		}
	})

	a := startBlobNode(t, reg, "blobs", "blobs-a")
	b := startBlobNode(t, reg, "blobs", "blobs-b")
	agent.WaitPassing(t, "blobs", 2, 5*time.Second)

	t.Run("requests reach a node's published address with path and query kept", func(t *testing.T) {
		body, status, err := get(t, h, "blobs", "/internal/images/01X?size=256")
		if err != nil || status != 200 || !strings.HasSuffix(body, " /internal/images/01X?size=256") {
			t.Fatalf("got %q %d %v", body, status, err)
		}
	})

	t.Run("a node answering 5xx is taken out of rotation by its breaker", func(t *testing.T) {
		a.broken.Store(true)
		for i := 0; i < 20; i++ { // round robin: a gets half of these until its breaker opens
			_, _, _ = get(t, h, "blobs", "/probe")
		}
		hitsA, hitsB := a.hits.Load(), b.hits.Load()
		for i := 0; i < 10; i++ {
			body, status, err := get(t, h, "blobs", "/after")
			if err != nil || status != 200 || !strings.HasPrefix(body, "blobs-b ") {
				t.Fatalf("call %d after a's breaker opened: %q %d %v", i, body, status, err)
			}
		}
		if a.hits.Load() != hitsA || b.hits.Load() != hitsB+10 {
			t.Fatalf("a got %d more calls, b %d more; want 0 and 10", a.hits.Load()-hitsA, b.hits.Load()-hitsB)
		}
	})

	t.Run("with every node's breaker open the answer is a fast 503", func(t *testing.T) {
		b.broken.Store(true)
		for i := 0; i < 10; i++ {
			_, _, _ = get(t, h, "blobs", "/probe")
		}
		start := time.Now()
		_, _, err := get(t, h, "blobs", "/x")
		require503(t, result{err: err}, "circuit open")
		if took := time.Since(start); took > 50*time.Millisecond {
			t.Fatalf("took %v with every breaker open", took)
		}
	})
}
