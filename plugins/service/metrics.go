package service

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketmesh/marketmesh/plugins/metrics"
)

type serverMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newServerMetrics() *serverMetrics {
	return &serverMetrics{
		requests: metrics.Register(prometheus.DefaultRegisterer, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marketmesh_rpc_server_requests_total",
			Help: "RPC requests handled, by endpoint and status code (0 = ok).",
		}, []string{"endpoint", "code"})),
		duration: metrics.Register(prometheus.DefaultRegisterer, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "marketmesh_rpc_server_duration_seconds",
			Help:    "Time spent in RPC handlers.",
			Buckets: []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"endpoint"})),
	}
}

func (m *serverMetrics) observe(endpoint, code string, start time.Time) {
	m.requests.WithLabelValues(endpoint, code).Inc()
	m.duration.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
}
