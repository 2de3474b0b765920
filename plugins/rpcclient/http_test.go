package rpcclient_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
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
	srv     *httptest.Server
	hits    atomic.Int32
	broken  atomic.Bool
	hung    atomic.Bool   // never answer: until the client hangs up or the test ends
	release chan struct{} // closed when the test ends
}

func startBlobNode(t *testing.T, reg registry.Registry, service, id string) *blobNode {
	t.Helper()
	n := &blobNode{release: make(chan struct{})}
	n.srv = serveBlobs(t, reg, service, id, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.hits.Add(1)
		if n.hung.Load() {
			select {
			case <-r.Context().Done():
			case <-n.release:
			}
			return
		}
		if n.broken.Load() {
			http.Error(w, "disk on fire", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, id+" "+r.URL.RequestURI())
	}))
	t.Cleanup(func() { close(n.release) }) // runs before the server's Close, which waits for handlers
	return n
}

// serveBlobs runs h as node id of service, publishing its address under "http".
func serveBlobs(t *testing.T, reg registry.Registry, service, id string, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	err := reg.Register(&registry.Service{Name: service, Nodes: []*registry.Node{
		{Id: id, Address: addr, Metadata: map[string]string{"http": addr}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return srv
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

	t.Run("a node pacing its clients with 503 + Retry-After keeps its breaker closed", func(t *testing.T) {
		metrics := prometheus.NewRegistry()
		h := rpcclient.NewHTTP(reg, config.NewLive(testRPC), "http", rpcclient.Metrics(metrics))
		var busy atomic.Bool
		busy.Store(true)
		serveBlobs(t, reg, "blobs-busy", "blobs-busy-a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if busy.Load() {
				w.Header().Set("Retry-After", "5")
				http.Error(w, "decode queue full", http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(w, "ok")
		}))
		for i := range 3 * int(testRPC.BreakerFailures) {
			_, status, err := get(t, h, "blobs-busy", "/upload")
			if err != nil || status != http.StatusServiceUnavailable {
				t.Fatalf("call %d: %d %v, want the node's own 503", i, status, err)
			}
		}
		if s := nodeState(t, metrics, "blobs-busy", "HTTP", "blobs-busy-a"); s != closed {
			t.Fatalf("breaker state %v after busy answers, want %d (closed)", s, closed)
		}
		busy.Store(false)
		if body, status, err := get(t, h, "blobs-busy", "/download"); err != nil || status != 200 || body != "ok" {
			t.Fatalf("after the burst: %q %d %v", body, status, err)
		}
	})

	t.Run("a node that never answers times out, and its breaker opens", func(t *testing.T) {
		metrics := prometheus.NewRegistry()
		h := rpcclient.NewHTTP(reg, config.NewLive(testRPC), "http", rpcclient.Metrics(metrics))
		hung := startBlobNode(t, reg, "blobs-hung", "blobs-hung-a")
		hung.hung.Store(true)
		agent.WaitPassing(t, "blobs-hung", 1, 5*time.Second)

		for i := range int(testRPC.BreakerFailures) {
			// The caller allows far longer than the request timeout (300ms):
			// the attempt's own header timeout must end the call.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			req, _ := http.NewRequest(http.MethodGet, "/internal/images/01X", nil)
			resp, err := h.Do(ctx, "blobs-hung", req)
			cancel()
			if resp != nil {
				resp.Body.Close()
				t.Fatalf("call %d: a hung node answered %s", i, resp.Status)
			}
			require503(t, result{err: err}, "timed out")
		}
		if s := nodeState(t, metrics, "blobs-hung", "HTTP", "blobs-hung-a"); s != open {
			t.Fatalf("breaker state %v after %d header timeouts, want %d (open)", s, testRPC.BreakerFailures, open)
		}
		hits := hung.hits.Load()
		_, _, err := get(t, h, "blobs-hung", "/x")
		require503(t, result{err: err}, "circuit open")
		if hung.hits.Load() != hits {
			t.Fatal("the open breaker let a call through to the hung node")
		}
	})

	t.Run("uploads and downloads stream for longer than the request timeout", func(t *testing.T) {
		const chunk, chunks = 1 << 20, 10 // 10 MiB, a chunk every 100ms: about 1s, the request timeout is 300ms
		serveBlobs(t, reg, "blobs-stream", "blobs-stream-a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				n, err := io.Copy(io.Discard, r.Body)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				_, _ = io.WriteString(w, strconv.FormatInt(n, 10))
				return
			}
			w.WriteHeader(http.StatusOK)
			for range chunks {
				w.(http.Flusher).Flush()
				time.Sleep(100 * time.Millisecond)
				_, _ = w.Write(make([]byte, chunk))
			}
		}))
		agent.WaitPassing(t, "blobs-stream", 1, 5*time.Second)

		req, _ := http.NewRequest(http.MethodGet, "/internal/images/big", nil)
		resp, err := h.Do(context.Background(), "blobs-stream", req)
		if err != nil {
			t.Fatalf("download: %v", err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != chunk*chunks {
			t.Fatalf("download: %d bytes, %v; want %d", n, err, chunk*chunks)
		}

		pr, pw := io.Pipe()
		go func() {
			for range chunks {
				time.Sleep(100 * time.Millisecond)
				if _, err := pw.Write(make([]byte, chunk)); err != nil {
					return
				}
			}
			pw.Close()
		}()
		defer pr.Close()
		req, _ = http.NewRequest(http.MethodPost, "/internal/images", pr)
		resp, err = h.Do(context.Background(), "blobs-stream", req)
		if err != nil {
			t.Fatalf("upload: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != strconv.Itoa(chunk*chunks) {
			t.Fatalf("upload: %s %q, want 200 and %d bytes received", resp.Status, body, chunk*chunks)
		}
	})
}
