package e2e

import (
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkAPIGetMe measures GET /v1/users/me end to end: HTTP into the
// api, JWT check, RPC through the client stack to users, bbolt read, back.
func BenchmarkAPIGetMe(b *testing.B) {
	m := startMesh(b, "MARKETMESH_LOG_LEVEL=error")
	_, token := m.signup("bench@example.com")
	req := func() {
		r, _ := http.NewRequest("GET", m.url+"/v1/users/me", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		resp, err := httpClient.Do(r)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("me: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	b.Run("sequential", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			req()
			lat = append(lat, time.Since(start))
		}
		reportPercentiles(b, lat)
	})
	b.Run("parallel", func(b *testing.B) {
		var mu sync.Mutex
		var lat []time.Duration
		b.RunParallel(func(pb *testing.PB) {
			local := make([]time.Duration, 0, 1024)
			for pb.Next() {
				start := time.Now()
				req()
				local = append(local, time.Since(start))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		})
		reportPercentiles(b, lat)
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	})
}

// BenchmarkAPILogin measures a login: argon2id verification dominates.
func BenchmarkAPILogin(b *testing.B) {
	m := startMesh(b, "MARKETMESH_LOG_LEVEL=error")
	m.signup("login@example.com")
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		m.must(200, "POST", "/v1/auth/login", "", map[string]string{"email": "login@example.com", "password": "correct horse"})
		lat = append(lat, time.Since(start))
	}
	reportPercentiles(b, lat)
}

// BenchmarkBreakerOpenFailFast measures the 503 the api returns while users
// hangs and its breaker is open: it must cost milliseconds, not the timeout.
func BenchmarkBreakerOpenFailFast(b *testing.B) {
	m := startMesh(b, "MARKETMESH_LOG_LEVEL=error", "MARKETMESH_RPC_TIMEOUT=300ms",
		"MARKETMESH_BREAKER_FAILURES=3", "MARKETMESH_BREAKER_OPEN_FOR=1h", "MARKETMESH_CHECK_INTERVAL=5s")
	_, token := m.signup("breaker@example.com")
	m.users.pause()
	start := time.Now()
	if st, _, _ := m.call("GET", "/v1/users/me", token, nil); st != 503 {
		b.Fatalf("first call with users hung: %d", st)
	}
	b.Logf("first call (timeouts until the breaker opened): %v", time.Since(start).Round(time.Millisecond))
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		t0 := time.Now()
		if st, body, _ := m.call("GET", "/v1/users/me", token, nil); st != 503 {
			b.Fatalf("with the breaker open: %d %v", st, body)
		}
		lat = append(lat, time.Since(t0))
	}
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	at := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op") // the percentiles say more than the mean
}
