package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/meshtest"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/plugins/service"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
)

type PingRequest struct {
	Mode string `json:"mode"`
}

type PingResponse struct {
	RequestID string `json:"request_id"`
	Caller    string `json:"caller"`
}

// Pinger is the test handler; its one endpoint is Pinger.Ping.
type Pinger struct{}

func (Pinger) Ping(ctx context.Context, req *PingRequest, rsp *PingResponse) error {
	switch req.Mode {
	case "fail":
		return errors.New("pq: password authentication failed for user admin")
	case "panic":
		panic("nil map")
	case "missing":
		return merrors.NotFound("marketmesh.ping", "no such ping")
	}
	rsp.RequestID, rsp.Caller = rpcmeta.RequestID(ctx), rpcmeta.Caller(ctx)
	return nil
}

func mesh(agent *meshtest.Agent) config.Mesh {
	m := config.Defaults()
	m.Consul.Address = agent.Addr
	m.Consul.CheckInterval = config.Duration(time.Second)
	m.RPC.RequestTimeout = config.Duration(time.Second)
	m.Log.Level = "error"
	// The mesh key is generated under the data dir: keep it out of the source tree.
	m.DataDir = agent.DataDir
	return m
}

// running is a service whose Run is in progress.
type running struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // Run's result, set before done is closed
}

// run starts svc.Run; the test's cleanup cancels it and waits for it.
func run(t *testing.T, svc *service.Service) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = svc.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	return r
}

// counter reads marketmesh_rpc_server_requests_total for endpoint and code
// from the default registry, which the services in this process share.
func counter(t *testing.T, endpoint, code string) float64 {
	t.Helper()
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "marketmesh_rpc_server_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["endpoint"] == endpoint && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

type httpResult struct {
	status int
	body   string
}

func get(t *testing.T, url string) httpResult {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return httpResult{resp.StatusCode, string(b)}
}

func ping(t *testing.T, svc *service.Service, ctx context.Context, mode string) (PingResponse, error) {
	t.Helper()
	c := svc.Client()
	var rsp PingResponse
	err := c.Call(ctx, c.NewRequest(svc.Name(), "Pinger.Ping", &PingRequest{Mode: mode}), &rsp)
	return rsp, err
}

func TestService(t *testing.T) {
	agent := meshtest.Consul(t)

	t.Run("Run registers the instance as passing and cancelling removes it before Run returns", func(t *testing.T) {
		const drain = 2 * time.Second
		svc, err := service.New("lifecycle", mesh(agent), config.Server{Address: "127.0.0.1:0"}, service.Policy(svcauth.AllowAll()),
			service.DrainDelay(drain), service.Version("1.2.3"))
		if err != nil {
			t.Fatal(err)
		}
		if svc.Name() != "marketmesh.lifecycle" {
			t.Fatalf("Name %q", svc.Name())
		}
		if err := svc.Handle(Pinger{}); err != nil {
			t.Fatal(err)
		}
		r := run(t, svc)

		entries := agent.WaitPassing(t, svc.Name(), 1, 10*time.Second)
		var httpCheck bool
		for _, c := range entries[0].Checks {
			if c.ServiceID != "" && strings.Contains(c.Output, "http://"+svc.OpsAddr()+"/readyz") {
				httpCheck = true
			}
		}
		if !httpCheck {
			t.Fatalf("no passing HTTP check on the ops address %s: %+v", svc.OpsAddr(), entries[0].Checks)
		}
		if port := entries[0].Service.Port; port == 0 || entries[0].Service.Address != "127.0.0.1" {
			t.Fatalf("registered at %s:%d, want 127.0.0.1 and the RPC port", entries[0].Service.Address, port)
		}
		// Operators read the version and protocol in Consul's service Meta;
		// no tag per endpoint (nothing selects by endpoint).
		if meta := entries[0].Service.Meta; meta["version"] != "1.2.3" || meta["protocol"] != "grpc" {
			t.Fatalf("Consul Meta %v, want version=1.2.3 and protocol=grpc", meta)
		}
		for _, tag := range entries[0].Service.Tags {
			if strings.HasPrefix(tag, "e-") {
				t.Fatalf("an encoded endpoint tag in Consul: %v", entries[0].Service.Tags)
			}
		}
		// go-micro still decodes what it needs from the tags.
		found, err := svc.Registry().GetService(svc.Name())
		if err != nil || len(found) != 1 || found[0].Version != "1.2.3" || len(found[0].Nodes) != 1 ||
			found[0].Nodes[0].Metadata["protocol"] != "grpc" {
			t.Fatalf("GetService = %+v, %v", found, err)
		}

		// It serves RPC, and the request metadata reaches the handler's context.
		rsp, err := ping(t, svc, rpcmeta.WithCaller(rpcmeta.WithRequestID(context.Background(), "req-5"), "user-5"), "")
		if err != nil || rsp.RequestID != "req-5" || rsp.Caller != "user-5" {
			t.Fatalf("Ping = %+v, %v", rsp, err)
		}

		stopped := time.Now()
		r.cancel()
		agent.WaitGone(t, svc.Name(), drain/2)
		select {
		case <-r.done:
			t.Fatalf("Run returned (%v) before the drain delay; the instance should leave Consul first", r.err)
		default:
		}
		if h := get(t, "http://"+svc.OpsAddr()+"/healthz"); h.status != http.StatusServiceUnavailable || !strings.Contains(h.body, "draining") {
			t.Fatalf("/healthz while draining: %d %s", h.status, h.body)
		}
		select {
		case <-r.done:
			if r.err != nil {
				t.Fatalf("Run: %v", r.err)
			}
			if took := time.Since(stopped); took < drain {
				t.Fatalf("Run returned %v after cancel, before the drain delay %v", took, drain)
			}
		case <-time.After(drain + 10*time.Second):
			t.Fatal("Run did not return")
		}
	})

	t.Run("the ops endpoints report health, readiness and metrics, and a failing check turns the instance critical", func(t *testing.T) {
		svc, err := service.New("ops", mesh(agent), config.Server{Address: "127.0.0.1:0"}, service.DrainDelay(0), service.Policy(svcauth.AllowAll()))
		if err != nil {
			t.Fatal(err)
		}
		if err := svc.Handle(Pinger{}); err != nil {
			t.Fatal(err)
		}
		var storeErr atomic.Pointer[error]
		svc.Health().Add("store", func(context.Context) error {
			if p := storeErr.Load(); p != nil {
				return *p
			}
			return nil
		})
		svc.Health().Add("cache", func(context.Context) error { return nil })
		run(t, svc)
		agent.WaitPassing(t, svc.Name(), 1, 10*time.Second)
		base := "http://" + svc.OpsAddr()

		if r := get(t, base+"/healthz"); r.status != 200 || strings.TrimSpace(r.body) != `{"status":"ok"}` {
			t.Fatalf("/healthz: %d %s", r.status, r.body)
		}
		if r := get(t, base+"/readyz"); r.status != 200 || strings.TrimSpace(r.body) != `{"status":"ready","checks":{"cache":"ok","identity":"ok","store":"ok"}}` {
			t.Fatalf("/readyz: %d %s", r.status, r.body)
		}

		failure := errors.New("disk full")
		storeErr.Store(&failure)
		r := get(t, base+"/readyz")
		var body struct {
			Status string            `json:"status"`
			Checks map[string]string `json:"checks"`
		}
		if err := json.Unmarshal([]byte(r.body), &body); err != nil {
			t.Fatalf("/readyz body %q: %v", r.body, err)
		}
		if r.status != http.StatusServiceUnavailable || body.Status != "unready" || body.Checks["store"] != "disk full" || body.Checks["cache"] != "ok" {
			t.Fatalf("/readyz with a failing check: %d %s", r.status, r.body)
		}
		if r := get(t, base+"/healthz"); r.status != 200 {
			t.Fatalf("/healthz must not depend on readiness checks: %d %s", r.status, r.body)
		}
		agent.WaitCritical(t, svc.Name(), 5*time.Second)
		storeErr.Store(nil)
		agent.WaitPassing(t, svc.Name(), 1, 5*time.Second)

		// Probes naming another instance (a predecessor on the same port) fail.
		if r := get(t, base+"/readyz?instance="+url.QueryEscape("marketmesh.ops-someone-else")); r.status != http.StatusServiceUnavailable {
			t.Fatalf("/readyz for another instance: %d %s", r.status, r.body)
		}

		if _, err := ping(t, svc, context.Background(), ""); err != nil {
			t.Fatal(err)
		}
		m := get(t, base+"/metrics")
		for _, want := range []string{
			`marketmesh_rpc_server_requests_total{code="0",endpoint="Pinger.Ping"}`,
			`marketmesh_rpc_client_calls_total{code="0",endpoint="Pinger.Ping",service="marketmesh.ops"}`,
			"go_goroutines",
		} {
			if m.status != 200 || !strings.Contains(m.body, want) {
				t.Fatalf("/metrics (%d) lacks %s", m.status, want)
			}
		}
	})

	t.Run("handler errors keep business codes and hide everything else behind an opaque 500", func(t *testing.T) {
		svc, err := service.New("errors", mesh(agent), config.Server{Address: "127.0.0.1:0"}, service.DrainDelay(0), service.Policy(svcauth.AllowAll()))
		if err != nil {
			t.Fatal(err)
		}
		if err := svc.Handle(Pinger{}); err != nil {
			t.Fatal(err)
		}
		run(t, svc)
		agent.WaitPassing(t, svc.Name(), 1, 10*time.Second)

		tests := []struct {
			mode       string
			wantCode   int32
			wantDetail string
		}{
			{"missing", 404, "no such ping"},
			{"fail", 500, "internal error"},
			{"panic", 500, "internal error"},
		}
		for _, tt := range tests {
			code := fmt.Sprint(tt.wantCode)
			before, okBefore := counter(t, "Pinger.Ping", code), counter(t, "Pinger.Ping", "0")
			_, err := ping(t, svc, context.Background(), tt.mode)
			var me *merrors.Error
			if !errors.As(err, &me) || me.Code != tt.wantCode || me.Detail != tt.wantDetail {
				t.Errorf("mode %s: error %v, want %d %q", tt.mode, err, tt.wantCode, tt.wantDetail)
			}
			if after := counter(t, "Pinger.Ping", code); after != before+1 {
				t.Errorf("mode %s: requests_total{code=%q} went from %v to %v, want +1", tt.mode, code, before, after)
			}
			if ok := counter(t, "Pinger.Ping", "0"); ok != okBefore {
				t.Errorf("mode %s: the failure was counted as a success (code 0)", tt.mode)
			}
		}
		// The service survived the panic.
		if _, err := ping(t, svc, context.Background(), ""); err != nil {
			t.Fatalf("after a panic: %v", err)
		}
		if m := get(t, "http://"+svc.OpsAddr()+"/metrics"); !strings.Contains(m.body, `marketmesh_rpc_server_requests_total{code="404",endpoint="Pinger.Ping"}`) {
			t.Fatal("/metrics does not count the 404 answer")
		}
	})
}

func TestHealthWithoutChecksIsReady(t *testing.T) {
	h := service.NewHealth("marketmesh.x-1")
	status, body := h.Ready(context.Background())
	if status != 200 {
		t.Fatalf("Ready = %d %+v", status, body)
	}
	h.Drain()
	status, body = h.Ready(context.Background())
	if status != 503 || !strings.Contains(fmt.Sprint(body), "draining") {
		t.Fatalf("Ready while draining = %d %+v", status, body)
	}
}
