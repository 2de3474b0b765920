package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkNotificationsDelivery measures how fast notifications works off
// a backlog: 1,000 order.paid events queued while it was stopped (each
// notifies the buyer and the seller by email and push: 4,000 deliveries,
// each with a recipient lookup at users), then it starts and the clock runs
// until nothing is queued. Once through the log sink (no credentials), once
// through the SendGrid and FCM protocol fakes with the real client
// libraries. It reports deliveries per second and the process's RSS after
// the run.
func BenchmarkNotificationsDelivery(b *testing.B) {
	const events = 1000
	for _, c := range []struct {
		name string
		env  []string
	}{
		{"log sink", []string{"NOTIFICATIONS_SENDGRID_API_KEY=", "NOTIFICATIONS_FCM_CREDENTIALS_FILE="}},
		{"sendgrid and fcm fakes", nil},
	} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				m := startMesh(b, append([]string{"MARKETMESH_LOG_LEVEL=error"}, c.env...)...)
				_, seller := m.signup("bench-notify-seller@example.com")
				pub := m.seedPublication(seller, "Bench widget", 199, "USD", 1_000_000)
				const buyers = 16
				tokens := make([]string, buyers)
				for i := range tokens {
					_, tokens[i] = m.signup(fmt.Sprintf("bench-notify-buyer-%d@example.com", i))
					m.must(201, "POST", "/v1/users/me/devices", tokens[i], map[string]any{"token": fmt.Sprintf("tok-bench-%d", i), "platform": "ios"})
				}
				m.must(201, "POST", "/v1/users/me/devices", seller, map[string]any{"token": "tok-bench-seller", "platform": "ios"})
				// the welcome emails and nothing else before the clock starts
				waitDone(b, m, buyers+1)

				n := m.procs["notifications"]
				n.stop()
				var wg sync.WaitGroup
				var mu sync.Mutex
				var failed []string
				body := orderBody(pub, 1, "tok_visa")
				for w := range buyers {
					wg.Go(func() {
						for i := w; i < events; i += buyers {
							if a := m.placeOrder(tokens[w], body, ""); a.status != 201 {
								mu.Lock()
								failed = append(failed, a.String())
								mu.Unlock()
							}
						}
					})
				}
				wg.Wait()
				if len(failed) > 0 {
					b.Fatalf("%d orders failed, first: %s", len(failed), failed[0])
				}

				b.ResetTimer()
				start := time.Now()
				n.start()
				m.consul.WaitPassing(b, "marketmesh.notifications", 1, 60*time.Second)
				const deliveries = events * 4
				waitDone(b, m, deliveries)
				elapsed := time.Since(start)
				b.StopTimer()
				b.ReportMetric(float64(deliveries)/elapsed.Seconds(), "deliveries/s")
				b.ReportMetric(float64(rssKiB(b, n))/1024, "rss-MiB")
				if c.env == nil {
					if got := len(m.saas.SendGrid.Messages()); got < 2*events {
						b.Fatalf("%d emails at the SendGrid fake, want at least %d", got, 2*events)
					}
				}
				b.Logf("%s: %d deliveries from %d events in %v (start-up included): %.0f/s; notifications RSS %d KiB",
					c.name, deliveries, events, elapsed.Round(time.Millisecond), float64(deliveries)/elapsed.Seconds(), rssKiB(b, n))
			}
		})
	}
}

// waitDone waits (bounded) until the running notifications process has
// brought n deliveries to an end (sent, skipped or failed: its outcome
// counter) and has nothing queued.
func waitDone(b testing.TB, m *mesh, n float64) {
	b.Helper()
	if err := poll(5*time.Minute, func() error {
		lines, err := notificationsMetrics(m)
		if err != nil {
			return err
		}
		var done float64
		for _, result := range []string{"sent", "skipped", "failed"} {
			d, _ := sumSamples(lines, "marketmesh_notifications_attempts_total{", `result="`+result+`"`)
			done += d
		}
		q, ok := sumSamples(lines, "marketmesh_notifications_queued ")
		if !ok || done < n || q != 0 {
			return fmt.Errorf("%v of %v deliveries done, %v queued", done, n, q)
		}
		return nil
	}); err != nil {
		b.Fatalf("notifications: %v", err)
	}
}

// rssKiB reads the resident set size of p's process from /proc.
func rssKiB(b testing.TB, p *proc) int {
	b.Helper()
	p.mu.Lock()
	pid := p.cmd.Process.Pid
	p.mu.Unlock()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatalf("rss of %s: %v", p.name, err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kib
		}
	}
	b.Fatalf("rss of %s: no VmRSS", p.name)
	return 0
}
