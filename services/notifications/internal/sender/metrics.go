package sender

import (
	"github.com/prometheus/client_golang/prometheus"

	promreg "github.com/marketmesh/marketmesh/plugins/metrics"
)

// metrics are the sender's collectors.
type metrics struct {
	queued   prometheus.Gauge
	outcomes *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		queued: promreg.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "marketmesh_notifications_queued",
			Help: "Deliveries waiting for their first or next attempt.",
		})),
		outcomes: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marketmesh_notifications_attempts_total",
			Help: "Delivery outcomes by channel, provider and result: sent, retry (a retryable provider failure), failed, skipped, postponed (users unreachable).",
		}, []string{"channel", "provider", "result"})),
	}
}
