package ops_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/marketmesh/marketmesh/api/internal/ops"
)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, rec.Body.String()
}

func status(t *testing.T, body string) string {
	t.Helper()
	var b struct{ Status string }
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	return b.Status
}

func TestHealth(t *testing.T) {
	o := ops.New(ops.Options{Instance: "node-1"})
	tests := []struct {
		name, path string
		code       int
		status     string
	}{
		{"healthz is ok", "/healthz", 200, "ok"},
		{"healthz for this instance is ok", "/healthz?instance=node-1", 200, "ok"},
		{"healthz for a predecessor instance is 503", "/healthz?instance=node-0", 503, "stale instance"},
		{"readyz without checks is ready", "/readyz", 200, "ready"},
		{"readyz for a predecessor instance is 503", "/readyz?instance=node-0", 503, "stale instance"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(t, o, tt.path)
			if code != tt.code || status(t, body) != tt.status {
				t.Errorf("got %d %s, want %d %q", code, body, tt.code, tt.status)
			}
		})
	}
	t.Run("a draining api fails both probes", func(t *testing.T) {
		o.Drain()
		for _, p := range []string{"/healthz", "/readyz"} {
			if code, body := get(t, o, p); code != 503 || status(t, body) != "draining" {
				t.Errorf("%s = %d %s, want 503 draining", p, code, body)
			}
		}
	})
}

func TestReadinessIsCachedAndShared(t *testing.T) {
	c := &clock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	var checks atomic.Int32
	release := make(chan struct{})
	ready := http.StatusOK
	o := ops.New(ops.Options{Now: c.Now, Ready: func(ctx context.Context) (int, any) {
		checks.Add(1)
		if _, ok := ctx.Deadline(); !ok {
			return 500, map[string]string{"status": "no deadline"}
		}
		<-release
		return ready, map[string]string{"status": http.StatusText(ready)}
	}})

	// A flood of probes while the first check runs: all share it.
	var wg sync.WaitGroup
	codes := make([]int, 50)
	for i := range codes {
		wg.Go(func() { codes[i], _ = get(t, o, "/readyz") })
	}
	time.Sleep(50 * time.Millisecond) // let them pile up on the running check
	close(release)
	wg.Wait()
	for i, code := range codes {
		if code != 200 {
			t.Fatalf("probe %d = %d, want 200", i, code)
		}
	}
	if n := checks.Load(); n != 1 {
		t.Fatalf("50 concurrent probes ran %d checks, want 1", n)
	}
	// Within the second: from the cache.
	c.advance(900 * time.Millisecond)
	for range 100 {
		get(t, o, "/readyz")
	}
	if n := checks.Load(); n != 1 {
		t.Fatalf("probes within a second ran %d checks, want 1", n)
	}
	// After it: checked again, and the new answer is served.
	ready = http.StatusServiceUnavailable
	c.advance(200 * time.Millisecond)
	code, body := get(t, o, "/readyz")
	if code != 503 || !strings.Contains(body, "Service Unavailable") || checks.Load() != 2 {
		t.Errorf("after the cache expired: %d %s, %d checks; want 503 from a second check", code, body, checks.Load())
	}
}

func TestAProbeThatGivesUpGets503AndTheCheckStillCompletes(t *testing.T) {
	release := make(chan struct{})
	var checks atomic.Int32
	o := ops.New(ops.Options{Ready: func(ctx context.Context) (int, any) {
		checks.Add(1)
		<-release
		return http.StatusOK, map[string]string{"status": "ready"}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if code, _ := o.Ready(ctx); code != http.StatusServiceUnavailable {
		t.Fatalf("a probe that timed out = %d, want 503", code)
	}
	close(release)
	if code, _ := o.Ready(context.Background()); code != http.StatusOK {
		t.Fatalf("the next probe = %d, want 200", code)
	}
	if n := checks.Load(); n != 1 {
		t.Errorf("%d checks, want 1: the next probe reuses the completed one", n)
	}
}

func TestMetricsAndProfilesAreServed(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "ops_test_total", Help: "test"}))
	o := ops.New(ops.Options{Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})})
	if code, body := get(t, o, "/metrics"); code != 200 || !strings.Contains(body, "ops_test_total") {
		t.Errorf("/metrics = %d %.200s", code, body)
	}
	if code, body := get(t, o, "/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/ = %d %.200s", code, body)
	}
	if code, _ := get(t, o, "/debug/pprof/goroutine?debug=1"); code != 200 {
		t.Errorf("/debug/pprof/goroutine = %d", code)
	}
}
