package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketmesh/marketmesh/api/internal/server"
	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/plugins/logging"
)

// Each route's requests are counted by route and status text and timed by
// route; requests no route serves (404, 405) are not.
func TestRoutesAreCountedAndTimed(t *testing.T) {
	reg := prometheus.NewRegistry()
	ta := newTestAPI(t, func(o *server.Options) { o.Metrics = reg })
	ta.users.Answer = func(endpoint string, _ any) (any, error) {
		return productsrpc.CategoriesResponse{Categories: []productsrpc.Category{}}, nil
	}
	for range 2 {
		ta.do(t, req{method: "GET", path: "/healthz"})
	}
	ta.do(t, req{method: "GET", path: "/v1/categories"})
	ta.do(t, req{method: "GET", path: "/v1/users/me"})   // 401
	ta.do(t, req{method: "GET", path: "/v1/nothing"})    // 404, no route
	ta.do(t, req{method: "POST", path: "/healthz"})      // 405, no route
	ta.do(t, req{method: "GET", path: "/healthz?x=%zz"}) // the route, whatever the query

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts, timed := map[string]float64{}, map[string]uint64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch mf.GetName() {
			case "marketmesh_http_requests_total":
				if len(labels) != 2 {
					t.Errorf("requests labels %v, want route and status", labels)
				}
				counts[labels["route"]+" "+labels["status"]] = m.GetCounter().GetValue()
			case "marketmesh_http_request_duration_seconds":
				if len(labels) != 1 {
					t.Errorf("duration labels %v, want route", labels)
				}
				timed[labels["route"]] = m.GetHistogram().GetSampleCount()
			}
		}
	}
	wantCounts := map[string]float64{"GET /healthz OK": 3, "GET /v1/categories OK": 1, "GET /v1/users/me Unauthorized": 1}
	wantTimed := map[string]uint64{"GET /healthz": 3, "GET /v1/categories": 1, "GET /v1/users/me": 1}
	if fmt.Sprint(counts) != fmt.Sprint(wantCounts) {
		t.Errorf("marketmesh_http_requests_total %v, want %v", counts, wantCounts)
	}
	if fmt.Sprint(timed) != fmt.Sprint(wantTimed) {
		t.Errorf("marketmesh_http_request_duration_seconds counts %v, want %v", timed, wantTimed)
	}
}

// Every request to a route but /healthz is logged, with the same fields in
// the same order as ever: route, status, ms, then the request ID.
func TestRequestLogLine(t *testing.T) {
	var buf bytes.Buffer
	prev := slog.Default()
	t.Cleanup(func() { slog.SetDefault(prev) })
	logging.SetupWriter(&buf, "marketmesh.api", "info")

	ta := newTestAPI(t)
	ta.users.Answer = func(string, any) (any, error) {
		return productsrpc.CategoriesResponse{Categories: []productsrpc.Category{}}, nil
	}
	ta.do(t, req{method: "GET", path: "/healthz"})
	rec := ta.do(t, req{method: "GET", path: "/v1/categories", header: map[string]string{"X-Request-Id": "req-42"}})
	ta.do(t, req{method: "GET", path: "/v1/nothing"})

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("log lines:\n%s\nwant exactly the one of /v1/categories", buf.String())
	}
	dec := json.NewDecoder(strings.NewReader(lines[0]))
	dec.UseNumber()
	var keys []string
	values := map[string]any{}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", lines[0])
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		values[k.(string)] = v
	}
	if got, want := strings.Join(keys, ","), "time,level,msg,service,route,status,ms,request_id"; got != want {
		t.Errorf("keys %s, want %s", got, want)
	}
	if values["level"] != "INFO" || values["msg"] != "http" || values["service"] != "marketmesh.api" ||
		values["route"] != "GET /v1/categories" || values["status"] != json.Number("200") ||
		values["request_id"] != "req-42" || rec.Header().Get("X-Request-Id") != "req-42" {
		t.Errorf("line %s", lines[0])
	}
	if ms, err := values["ms"].(json.Number).Float64(); err != nil || ms < 0 {
		t.Errorf("ms = %v", values["ms"])
	}

	// Below info, nothing is written.
	buf.Reset()
	logging.SetupWriter(io.Discard, "marketmesh.api", "warn")
	slog.SetDefault(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ta.do(t, req{method: "GET", path: "/v1/categories"})
	if buf.Len() != 0 {
		t.Errorf("logged at warn level: %s", buf.String())
	}
}
