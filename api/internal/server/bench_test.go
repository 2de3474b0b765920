package server_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go-micro.dev/v4/client"

	"github.com/marketmesh/marketmesh/api/internal/server"
	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/auth"
	"github.com/marketmesh/marketmesh/plugins/logging"
	"github.com/marketmesh/marketmesh/plugins/rpcfake"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
)

// cpuTime is the CPU time (user and system) the process has used so far:
// per operation, steadier than ns/op on a machine shared with other work.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchClient answers each endpoint with its value through JSON, as the
// wire would, and records nothing (rpcfake keeps every call).
type benchClient map[string]any

func (c benchClient) NewRequest(service, endpoint string, req any, _ ...client.RequestOption) client.Request {
	return (&rpcfake.Client{}).NewRequest(service, endpoint, req)
}

func (c benchClient) Call(ctx context.Context, req client.Request, rsp any, _ ...client.CallOption) error {
	_ = rpcmeta.Outgoing(ctx)
	if _, err := json.Marshal(req.Body()); err != nil {
		return err
	}
	b, err := json.Marshal(c[req.Endpoint()])
	if err != nil {
		return err
	}
	return json.Unmarshal(b, rsp)
}

func (benchClient) Init(...client.Option) error { return nil }
func (benchClient) Options() client.Options     { return client.Options{} }
func (benchClient) Stream(context.Context, client.Request, ...client.CallOption) (client.Stream, error) {
	return nil, nil
}
func (benchClient) NewMessage(string, any, ...client.MessageOption) client.Message { return nil }
func (benchClient) Publish(context.Context, client.Message, ...client.PublishOption) error {
	return nil
}
func (benchClient) String() string { return "bench" }

// benchWriter is a ResponseWriter that keeps nothing, so a benchmark
// measures the handler chain and not a recorder.
type benchWriter struct {
	h      http.Header
	status int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *benchWriter) WriteHeader(s int)           { w.status = s }

// benchAPI is the api over fake services answering Users.Me and
// Products.Categories, with the production logger (JSON to discard, at
// level) so that the request log costs what it costs in production.
func benchAPI(b *testing.B, level string) (http.Handler, string) {
	b.Helper()
	prev := slog.Default()
	b.Cleanup(func() { slog.SetDefault(prev) })
	// A file, as make run's stderr is: one write per log line.
	f, err := os.CreateTemp(b.TempDir(), "api.log")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	logging.SetupWriter(f, "marketmesh.api", level)
	fake := benchClient{
		"Users.Me":            usersrpc.User{ID: "01HUSER", Email: "bench@example.com", Name: "Bench"},
		"Products.Categories": productsrpc.CategoriesResponse{Categories: []productsrpc.Category{{Name: "home", Path: "home", Count: 1}}},
	}
	var key ed25519.PrivateKey
	_, key, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	signer := auth.NewSigner(key)
	a := server.New(server.Options{
		Users:    usersrpc.NewClient(fake),
		Products: productsrpc.NewClient(fake),
		Signer:   signer,
		Metrics:  prometheus.NewRegistry(),
	})
	tok, _, err := signer.Issue("01HUSER")
	if err != nil {
		b.Fatal(err)
	}
	return a.Handler(), tok
}

func benchServe(b *testing.B, h http.Handler, r *http.Request, want int) {
	b.ReportAllocs()
	w := &benchWriter{h: http.Header{}}
	cpu := cpuTime()
	for b.Loop() {
		clear(w.h)
		w.status = 0
		h.ServeHTTP(w, r)
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
	if w.status != want {
		b.Fatalf("status %d, want %d", w.status, want)
	}
}

// BenchmarkHealthz is GET /healthz through the whole middleware chain.
func BenchmarkHealthz(b *testing.B) {
	h, _ := benchAPI(b, "info")
	r := httptest.NewRequest("GET", "/healthz", nil)
	benchServe(b, h, r, 200)
}

// BenchmarkMeFake is GET /v1/users/me with a cached token over a fake users.
func BenchmarkMeFake(b *testing.B) {
	h, tok := benchAPI(b, "info")
	r := httptest.NewRequest("GET", "/v1/users/me", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	benchServe(b, h, r, 200)
}

// BenchmarkCategoriesFake is GET /v1/categories over a fake products.
func BenchmarkCategoriesFake(b *testing.B) {
	h, _ := benchAPI(b, "info")
	r := httptest.NewRequest("GET", "/v1/categories", nil)
	benchServe(b, h, r, 200)
}
