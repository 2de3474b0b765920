package rpcclient

import (
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	merrors "go-micro.dev/v4/errors"

	promreg "github.com/marketmesh/marketmesh/plugins/metrics"
)

type metrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// Breakers: one series per service, endpoint and node, for as long as
	// the node's breaker lives (see breakers.forget).
	state       *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	refused     *prometheus.CounterVec

	// endpoints caches, per service and endpoint called, the series every
	// successful call updates (see endpointSeries).
	endpoints sync.Map // endpointKey -> *endpointSeries
}

type endpointKey struct{ service, endpoint string }

// endpointSeries are an endpoint's duration histogram and its count of
// successful calls (code "0"), looked up on its first successful call: the
// same series WithLabelValues finds, without hashing the labels each time.
// Calls never delete them (forget is for breakers' series only).
type endpointSeries struct {
	ok       prometheus.Counter
	duration prometheus.Observer
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
			Name: "marketmesh_rpc_breaker_state",
			Help: "State of each node's circuit breaker for the endpoint: 0 closed, 1 half-open, 2 open.",
		}, []string{"service", "endpoint", "node"})),
		transitions: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marketmesh_rpc_breaker_transitions_total",
			Help: "Circuit breaker state changes, by service, endpoint, node and states (closed, half-open, open).",
		}, []string{"service", "endpoint", "node", "from", "to"})),
		refused: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marketmesh_rpc_breaker_rejected_total",
			Help: "Calls a node's open or half-open breaker kept from the node: sent to another node, or refused with 503 when none was left.",
		}, []string{"service", "endpoint", "node"})),
	}
}

func (m *metrics) observe(service, endpoint string, start time.Time, err error) {
	if err == nil {
		key := endpointKey{service, endpoint}
		v, ok := m.endpoints.Load(key)
		if !ok {
			v, _ = m.endpoints.LoadOrStore(key, &endpointSeries{
				ok:       m.calls.WithLabelValues(service, endpoint, "0"),
				duration: m.duration.WithLabelValues(service, endpoint),
			})
		}
		es := v.(*endpointSeries)
		es.ok.Inc()
		es.duration.Observe(time.Since(start).Seconds())
		return
	}
	code := "unknown"
	var me *merrors.Error
	if errors.As(err, &me) {
		code = strconv.Itoa(int(me.Code))
	}
	m.calls.WithLabelValues(service, endpoint, code).Inc()
	m.duration.WithLabelValues(service, endpoint).Observe(time.Since(start).Seconds())
}

// breakerState sets the node's state gauge: gobreaker's states in their
// order, 0 closed, 1 half-open, 2 open.
func (m *metrics) breakerState(service, endpoint, node string, s gobreaker.State) {
	v := map[gobreaker.State]float64{gobreaker.StateClosed: 0, gobreaker.StateHalfOpen: 1, gobreaker.StateOpen: 2}[s]
	m.state.WithLabelValues(service, endpoint, node).Set(v)
}

// transition records a breaker's state change: gauge, counter and a log line.
func (m *metrics) transition(service, endpoint, node string, from, to gobreaker.State) {
	m.breakerState(service, endpoint, node, to)
	m.transitions.WithLabelValues(service, endpoint, node, from.String(), to.String()).Inc()
	slog.Warn("circuit breaker state changed", "service", service, "endpoint", endpoint,
		"node", node, "from", from.String(), "to", to.String())
}

func (m *metrics) rejected(service, endpoint, node string) {
	m.refused.WithLabelValues(service, endpoint, node).Inc()
}

// forget deletes the series of a breaker that is gone (its node not called
// for a while, or every breaker rebuilt after a live configuration change).
func (m *metrics) forget(service, endpoint, node string) {
	labels := prometheus.Labels{"service": service, "endpoint": endpoint, "node": node}
	m.state.Delete(labels)
	m.refused.Delete(labels)
	m.transitions.DeletePartialMatch(labels)
}
