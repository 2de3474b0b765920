package rpcclient

import (
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	merrors "go-micro.dev/v4/errors"

	promreg "github.com/marketmesh/marketmesh/plugins/metrics"
)

type metrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	state    *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		calls: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marketmesh_rpc_client_calls_total",
			Help: "RPC calls made, by service, endpoint and status code (0 = ok).",
		}, []string{"service", "endpoint", "code"})),
		duration: promreg.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "marketmesh_rpc_client_duration_seconds",
			Help:    "RPC call latency as the caller sees it, retries included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"service", "endpoint"})),
		state: promreg.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "marketmesh_rpc_breaker_open",
			Help: "1 while some node's breaker for the endpoint is open (last transition).",
		}, []string{"service", "endpoint"})),
	}
}

func (m *metrics) observe(service, endpoint string, start time.Time, err error) {
	code := "0"
	if err != nil {
		code = "unknown"
		var me *merrors.Error
		if errors.As(err, &me) {
			code = strconv.Itoa(int(me.Code))
		}
	}
	m.calls.WithLabelValues(service, endpoint, code).Inc()
	m.duration.WithLabelValues(service, endpoint).Observe(time.Since(start).Seconds())
}

func (m *metrics) breakerState(service, endpoint string, s gobreaker.State) {
	v := 0.0
	if s == gobreaker.StateOpen {
		v = 1
	}
	m.state.WithLabelValues(service, endpoint).Set(v)
}

func (m *metrics) log(service, endpoint, node string, from, to gobreaker.State) {
	slog.Warn("circuit breaker state changed", "service", service, "endpoint", endpoint,
		"node", node, "from", from.String(), "to", to.String())
}
