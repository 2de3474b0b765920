package metrics_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketmesh/marketmesh/plugins/metrics"
)

func TestRegisterTwiceSharesTheFirstCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "test_calls_total", Help: "calls"}
	first := metrics.Register(reg, prometheus.NewCounterVec(opts, []string{"code"}))
	second := metrics.Register(reg, prometheus.NewCounterVec(opts, []string{"code"}))
	if first != second {
		t.Fatal("the second registration did not return the first collector")
	}
	second.WithLabelValues("0").Inc()
	if got := first.WithLabelValues("0"); got == nil {
		t.Fatal("no series")
	}
	families, err := reg.Gather()
	if err != nil || len(families) != 1 || families[0].GetMetric()[0].GetCounter().GetValue() != 1 {
		t.Fatalf("Gather = %v, %v; want one family with one increment", families, err)
	}
}

func TestRegisterPanicsOnAConflictingCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "test_x", Help: "x"}))
	defer func() {
		if recover() == nil {
			t.Fatal("registering a different collector under the same name did not panic")
		}
	}()
	metrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_x", Help: "another help"}))
}
