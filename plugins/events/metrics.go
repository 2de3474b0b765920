package events

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	promreg "github.com/marketmesh/marketmesh/plugins/metrics"
)

// relayMetrics are the relay's collectors, one series per subscriber.
type relayMetrics struct {
	backlog    *prometheus.GaugeVec
	lag        *prometheus.GaugeVec
	dead       *prometheus.GaugeVec
	deliveries *prometheus.CounterVec

	mu    sync.Mutex
	heads map[string]time.Time // subscriber → time of its oldest undelivered event (zero: none)
	dlSvc map[string]bool      // subscribers with a dead-letter series
}

func newRelayMetrics(reg prometheus.Registerer) *relayMetrics {
	return &relayMetrics{
		backlog: subscriberGauge(reg, "marketmesh_events_outbox_backlog",
			"Outbox events after the subscriber's cursor (not yet delivered or skipped)."),
		lag: subscriberGauge(reg, "marketmesh_events_lag_seconds",
			"Age of the subscriber's oldest undelivered event (0 when caught up)."),
		dead: subscriberGauge(reg, "marketmesh_events_dead_letters",
			"Dead letters recorded for the subscriber and not replayed yet."),
		deliveries: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marketmesh_events_deliveries_total",
			Help: "Event deliveries (replays included) by subscriber and result: ok, duplicate, refused (the subscriber answered with an error), unavailable (it could not be reached).",
		}, []string{"subscriber", "result"})),
		heads: map[string]time.Time{},
		dlSvc: map[string]bool{},
	}
}

func subscriberGauge(reg prometheus.Registerer, name, help string) *prometheus.GaugeVec {
	return promreg.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"subscriber"}))
}

// observe records a subscriber's backlog and oldest undelivered event.
func (m *relayMetrics) observe(svc string, backlog uint64, oldest time.Time, now time.Time) {
	m.mu.Lock()
	m.heads[svc] = oldest
	m.mu.Unlock()
	m.backlog.WithLabelValues(svc).Set(float64(backlog))
	m.refreshLag(svc, now)
}

// refreshLag ages the lag of a subscriber the relay is not delivering to
// right now (backing off).
func (m *relayMetrics) refreshLag(svc string, now time.Time) {
	m.mu.Lock()
	oldest, ok := m.heads[svc]
	m.mu.Unlock()
	if !ok {
		return
	}
	lag := 0.0
	if !oldest.IsZero() {
		lag = max(now.Sub(oldest).Seconds(), 0)
	}
	m.lag.WithLabelValues(svc).Set(lag)
}

// forget drops the backlog and lag series of subscribers no longer in the registry.
func (m *relayMetrics) forget(before, now map[string]subscriber) {
	for svc := range before {
		if _, ok := now[svc]; ok {
			continue
		}
		m.backlog.DeleteLabelValues(svc)
		m.lag.DeleteLabelValues(svc)
		m.mu.Lock()
		delete(m.heads, svc)
		m.mu.Unlock()
	}
}

// setDeadLetters sets the dead-letter gauge to counts, zeroing subscribers
// that have none left.
func (m *relayMetrics) setDeadLetters(counts map[string]int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for svc := range m.dlSvc {
		if _, ok := counts[svc]; !ok {
			m.dead.WithLabelValues(svc).Set(0)
		}
	}
	for svc, n := range counts {
		m.dlSvc[svc] = true
		m.dead.WithLabelValues(svc).Set(float64(n))
	}
}
