package rpcclient_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	grpcserver "github.com/go-micro/plugins/v4/server/grpc"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go-micro.dev/v4/client"
	merrors "go-micro.dev/v4/errors"
	"go-micro.dev/v4/server"

	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/meshtest"
	"github.com/marketmesh/marketmesh/plugins/rpcclient"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/plugins/service"
)

// The RPC values every test starts from: small, so failures are quick.
var testRPC = config.RPC{
	RequestTimeout:  config.Duration(300 * time.Millisecond),
	DialTimeout:     config.Duration(200 * time.Millisecond),
	ReadRetries:     1,
	BreakerFailures: 3,
	BreakerOpenFor:  config.Duration(time.Second),
}

// EchoRequest and EchoResponse are plain structs on the JSON codec.
type EchoRequest struct {
	Text string `json:"text"`
}

type EchoResponse struct {
	Text           string `json:"text"`
	Node           string `json:"node"`
	RequestID      string `json:"request_id"`
	Caller         string `json:"caller"`
	IdempotencyKey string `json:"idempotency_key"`
}

// Behaviours of an Echo node.
const (
	answer int32 = iota // reply at once
	hang                // block until the caller gives up
	fail                // fail with a 500 at once
	relay               // answer 503 at once, as a node whose own dependency is down does
)

// Echo is the handler one test node serves; its endpoints are Echo.Say and Echo.Find.
type Echo struct {
	node  string
	mode  atomic.Int32
	calls atomic.Int64 // every invocation, whatever the mode
}

func (e *Echo) Say(ctx context.Context, req *EchoRequest, rsp *EchoResponse) error {
	e.calls.Add(1)
	switch e.mode.Load() {
	case hang:
		<-ctx.Done()
		return ctx.Err()
	case fail:
		return merrors.InternalServerError("echo", "node %s is broken", e.node)
	case relay:
		return merrors.New("marketmesh.dependency", "the dependency service is unavailable", 503)
	}
	*rsp = EchoResponse{
		Text:           req.Text,
		Node:           e.node,
		RequestID:      rpcmeta.RequestID(ctx),
		Caller:         rpcmeta.Caller(ctx),
		IdempotencyKey: rpcmeta.IdempotencyKey(ctx),
	}
	return nil
}

// Find always answers "not found": a business error from a healthy node.
func (e *Echo) Find(_ context.Context, req *EchoRequest, _ *EchoResponse) error {
	e.calls.Add(1)
	return merrors.NotFound("echo", "no %s here", req.Text)
}

// startNode runs one in-process go-micro gRPC server for service, registered
// in the agent's Consul, and stops it when the test ends.
func startNode(t *testing.T, agent *meshtest.Agent, name string) (*Echo, server.Server) {
	t.Helper()
	srv := grpcserver.NewServer(
		server.Name(name),
		server.Id(uuid.NewString()), // go-micro's default ID is per process: two nodes would collide
		server.Address("127.0.0.1:0"),
		server.Registry(service.NewRegistry(config.Consul{Address: agent.Addr}, "", "")),
		server.RegisterTTL(0),
	)
	h := &Echo{node: name + "-" + srv.Options().Id}
	if err := srv.Handle(srv.NewHandler(h)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		h.mode.Store(answer)
		_ = srv.Stop() // a no-op for nodes a test stopped itself
	})
	return h, srv
}

// newClient returns the client stack over the agent with its own metrics registry.
func newClient(t *testing.T, agent *meshtest.Agent, rpc config.RPC) (client.Client, *prometheus.Registry) {
	t.Helper()
	metrics := prometheus.NewRegistry()
	reg := service.NewRegistry(config.Consul{Address: agent.Addr}, "", "")
	return rpcclient.New(reg, config.NewLive(rpc), rpcclient.Metrics(metrics)), metrics
}

type result struct {
	rsp  EchoResponse
	err  error
	took time.Duration
}

func call(ctx context.Context, c client.Client, svc, endpoint string, opts ...client.CallOption) result {
	var r result
	start := time.Now()
	r.err = c.Call(ctx, c.NewRequest(svc, endpoint, &EchoRequest{Text: "hi"}), &r.rsp, opts...)
	r.took = time.Since(start)
	return r
}

// microError returns err as a go-micro error, failing the test if it is not one.
func microError(t *testing.T, err error) *merrors.Error {
	t.Helper()
	var me *merrors.Error
	if !errors.As(err, &me) {
		t.Fatalf("error %v (%T) is not a go-micro error", err, err)
	}
	return me
}

func require503(t *testing.T, r result, why string) {
	t.Helper()
	if r.err == nil {
		t.Fatalf("call succeeded (node %s), want 503 %s", r.rsp.Node, why)
	}
	me := microError(t, r.err)
	if me.Code != 503 || !strings.Contains(me.Detail, why) {
		t.Fatalf("error %v, want code 503 with %q", me, why)
	}
}

// Breaker states as marketmesh_rpc_breaker_state reports them.
const (
	closed   = 0
	halfOpen = 1
	open     = 2
)

// metric sums the series of the metric name whose labels include want (-1 if none).
func metric(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum, found := 0.0, false
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			found = true
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	if !found {
		return -1
	}
	return sum
}

// gauge reads the breaker state of svc's endpoint on its only node (-1 if absent).
func gauge(t *testing.T, reg *prometheus.Registry, svc, endpoint string) float64 {
	t.Helper()
	return metric(t, reg, "marketmesh_rpc_breaker_state", map[string]string{"service": svc, "endpoint": endpoint})
}

// nodeState reads the breaker state of one node (-1 if it has no series).
func nodeState(t *testing.T, reg *prometheus.Registry, svc, endpoint, node string) float64 {
	t.Helper()
	return metric(t, reg, "marketmesh_rpc_breaker_state", map[string]string{"service": svc, "endpoint": endpoint, "node": node})
}

func TestClient(t *testing.T) {
	agent := meshtest.Consul(t)
	ctx := context.Background()

	t.Run("a call reaches the service and carries the request id, caller and idempotency key", func(t *testing.T) {
		const svc = "marketmesh.echo-meta"
		node, _ := startNode(t, agent, svc)
		agent.WaitPassing(t, svc, 1, 5*time.Second)
		c, _ := newClient(t, agent, testRPC)

		callCtx := rpcmeta.WithIdempotencyKey(rpcmeta.WithCaller(rpcmeta.WithRequestID(ctx, "req-42"), "user-7"), "idem-1")
		r := call(callCtx, c, svc, "Echo.Say")
		if r.err != nil {
			t.Fatalf("call: %v", r.err)
		}
		want := EchoResponse{Text: "hi", Node: node.node, RequestID: "req-42", Caller: "user-7", IdempotencyKey: "idem-1"}
		if r.rsp != want {
			t.Fatalf("response %+v, want %+v", r.rsp, want)
		}

		// Without values in the context nothing is invented.
		r = call(ctx, c, svc, "Echo.Say")
		if r.err != nil || r.rsp.RequestID != "" || r.rsp.Caller != "" {
			t.Fatalf("anonymous call: %+v, %v", r.rsp, r.err)
		}
	})

	t.Run("a business error passes through unchanged and does not trip the breaker", func(t *testing.T) {
		const svc = "marketmesh.echo-business"
		node, _ := startNode(t, agent, svc)
		agent.WaitPassing(t, svc, 1, 5*time.Second)
		c, _ := newClient(t, agent, testRPC)

		n := 2 * int(testRPC.BreakerFailures)
		for i := range n {
			r := call(ctx, c, svc, "Echo.Find")
			me := microError(t, r.err)
			if me.Code != 404 || me.Id != "echo" || me.Detail != "no hi here" {
				t.Fatalf("call %d: error %+v, want the node's own 404", i, me)
			}
		}
		if r := call(ctx, c, svc, "Echo.Find"); microError(t, r.err).Code != 404 {
			t.Fatalf("after %d not-found answers the endpoint is refused: %v", n, r.err)
		}
		if got := node.calls.Load(); got != int64(n+1) {
			t.Fatalf("the node saw %d calls, want %d: some were refused by a breaker", got, n+1)
		}
	})

	t.Run("a hung only node gives 503s, trips its breaker, and is used again once it answers", func(t *testing.T) {
		const svc = "marketmesh.echo-hung"
		node, _ := startNode(t, agent, svc)
		agent.WaitPassing(t, svc, 1, 5*time.Second)
		c, metrics := newClient(t, agent, testRPC)
		if r := call(ctx, c, svc, "Echo.Say"); r.err != nil {
			t.Fatalf("warm-up call: %v", r.err)
		}

		timeout := testRPC.RequestTimeout.D()
		node.mode.Store(hang)
		for i := range int(testRPC.BreakerFailures) {
			r := call(ctx, c, svc, "Echo.Say")
			require503(t, r, "timed out")
			if r.took < timeout*9/10 || r.took > timeout+250*time.Millisecond {
				t.Fatalf("hung call %d took %v, want about the request timeout %v", i, r.took, timeout)
			}
		}
		opened := time.Now()
		if g := gauge(t, metrics, svc, "Echo.Say"); g != open {
			t.Fatalf("breaker state %v after %d failures, want %d (open)", g, testRPC.BreakerFailures, open)
		}

		reached := node.calls.Load()
		for i := range 5 {
			r := call(ctx, c, svc, "Echo.Say")
			require503(t, r, "circuit open")
			if r.took >= 100*time.Millisecond {
				t.Fatalf("call %d with the breaker open took %v, want a fast failure (< 100ms)", i, r.took)
			}
		}
		if got := node.calls.Load(); got != reached {
			t.Fatalf("the open breaker let %d calls through to the node", got-reached)
		}

		// Breakers are per endpoint: the node still gets Find calls.
		if r := call(ctx, c, svc, "Echo.Find"); microError(t, r.err).Code != 404 {
			t.Fatalf("Echo.Find while Echo.Say's breaker is open: %v, want the node's 404", r.err)
		}

		node.mode.Store(answer)
		meshtest.Eventually(t, 3*testRPC.BreakerOpenFor.D(), func() error {
			return call(ctx, c, svc, "Echo.Say").err
		})
		if since := time.Since(opened); since < testRPC.BreakerOpenFor.D()-100*time.Millisecond {
			t.Fatalf("the breaker let calls through %v after opening, before BreakerOpenFor (%v)", since, testRPC.BreakerOpenFor)
		}
		for i := range 5 {
			if r := call(ctx, c, svc, "Echo.Say"); r.err != nil {
				t.Fatalf("call %d after recovery: %v", i, r.err)
			}
		}
		if g := gauge(t, metrics, svc, "Echo.Say"); g != closed {
			t.Fatalf("breaker state %v after recovery, want %d (closed)", g, closed)
		}
	})

	t.Run("a stopped only node gives 503 quickly", func(t *testing.T) {
		const svc = "marketmesh.echo-stopped"
		_, srv := startNode(t, agent, svc)
		agent.WaitPassing(t, svc, 1, 5*time.Second)
		c, _ := newClient(t, agent, testRPC)
		if r := call(ctx, c, svc, "Echo.Say"); r.err != nil {
			t.Fatalf("warm-up call: %v", r.err)
		}
		if err := srv.Stop(); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			r := call(ctx, c, svc, "Echo.Say")
			require503(t, r, "unavailable")
			if r.took > testRPC.RequestTimeout.D() {
				t.Fatalf("call %d to a stopped node took %v, longer than the request timeout", i, r.took)
			}
		}
	})

	t.Run("an unknown service gives 503", func(t *testing.T) {
		c, _ := newClient(t, agent, testRPC)
		require503(t, call(ctx, c, "marketmesh.nobody", "Echo.Say"), "unavailable")
	})

	t.Run("reads are retried on the other node and writes are not", func(t *testing.T) {
		const svc = "marketmesh.echo-retry"
		hung, _ := startNode(t, agent, svc)
		good, _ := startNode(t, agent, svc)
		agent.WaitPassing(t, svc, 2, 5*time.Second)
		rpc := testRPC
		rpc.BreakerFailures = 1000 // keep the hung node in rotation
		c, _ := newClient(t, agent, rpc)
		hung.mode.Store(hang)

		// Reads: every one succeeds on the good node, some after trying the hung one.
		for i := 0; hung.calls.Load() < 2; i++ {
			if i == 40 {
				t.Fatalf("40 reads and the hung node was tried %d times: selection never picks it", hung.calls.Load())
			}
			r := call(ctx, c, svc, "Echo.Say", rpcclient.Read())
			if r.err != nil {
				t.Fatalf("read %d failed after %v: %v (hung node tried %d times)", i, r.took, r.err, hung.calls.Load())
			}
			if r.rsp.Node != good.node {
				t.Fatalf("read %d answered by %s, want the good node", i, r.rsp.Node)
			}
		}

		// Writes: one attempt each; those that land on the hung node fail.
		var failed, succeeded int
		for i := 0; failed < 2 || succeeded < 1; i++ {
			if i == 40 {
				t.Fatalf("40 writes: %d failed, %d succeeded", failed, succeeded)
			}
			h, g := hung.calls.Load(), good.calls.Load()
			r := call(ctx, c, svc, "Echo.Say")
			dh, dg := hung.calls.Load()-h, good.calls.Load()-g
			if r.err == nil {
				succeeded++
				if dh != 0 || dg != 1 {
					t.Fatalf("a successful write reached the hung node %d and the good node %d times", dh, dg)
				}
				continue
			}
			failed++
			require503(t, r, "timed out")
			if dh != 1 || dg != 0 {
				t.Fatalf("a failed write reached the hung node %d and the good node %d times, want 1 and 0 (no retry)", dh, dg)
			}
		}
	})

	t.Run("a failing node is taken out of rotation by its own breaker while the other serves", func(t *testing.T) {
		const svc = "marketmesh.echo-pernode"
		bad, _ := startNode(t, agent, svc)
		good, _ := startNode(t, agent, svc)
		agent.WaitPassing(t, svc, 2, 5*time.Second)
		rpc := testRPC
		rpc.BreakerFailures = 2
		rpc.BreakerOpenFor = config.Duration(time.Minute) // stays open for the whole test
		c, _ := newClient(t, agent, rpc)
		bad.mode.Store(fail)

		for i := 0; bad.calls.Load() < int64(rpc.BreakerFailures); i++ {
			if i == 50 {
				t.Fatalf("50 writes reached the failing node only %d times", bad.calls.Load())
			}
			r := call(ctx, c, svc, "Echo.Say")
			if r.err != nil && microError(t, r.err).Code != 500 {
				t.Fatalf("write %d: %v, want success or the failing node's 500", i, r.err)
			}
		}
		for i := range 20 {
			if r := call(ctx, c, svc, "Echo.Say"); r.err != nil || r.rsp.Node != good.node {
				t.Fatalf("write %d after the failing node's breaker opened: node %q, %v", i, r.rsp.Node, r.err)
			}
		}
		if got := bad.calls.Load(); got != int64(rpc.BreakerFailures) {
			t.Fatalf("the failing node got %d calls, want %d: its breaker did not keep calls away", got, rpc.BreakerFailures)
		}
	})

	t.Run("a live change of the request timeout applies to the next call", func(t *testing.T) {
		const svc = "marketmesh.echo-live"
		node, _ := startNode(t, agent, svc)
		agent.WaitPassing(t, svc, 1, 5*time.Second)
		live := config.NewLive(testRPC)
		c := rpcclient.New(service.NewRegistry(config.Consul{Address: agent.Addr}, "", ""), live,
			rpcclient.Metrics(prometheus.NewRegistry()))
		node.mode.Store(hang)

		next := testRPC
		next.RequestTimeout = config.Duration(100 * time.Millisecond)
		live.Set(next)
		r := call(ctx, c, svc, "Echo.Say")
		require503(t, r, "unavailable")
		if r.took < 90*time.Millisecond || r.took > 250*time.Millisecond {
			t.Fatalf("with a live timeout of 100ms the hung call took %v", r.took)
		}
	})

	t.Run("a call's own Timeout replaces the request timeout for its attempt, and only for it", func(t *testing.T) {
		const svc = "marketmesh.echo-timeout"
		node, _ := startNode(t, agent, svc)
		agent.WaitPassing(t, svc, 1, 5*time.Second)
		live := config.NewLive(testRPC)
		next := testRPC
		next.RequestTimeout = config.Duration(100 * time.Millisecond)
		live.Set(next)
		c := rpcclient.New(service.NewRegistry(config.Consul{Address: agent.Addr}, "", ""), live,
			rpcclient.Metrics(prometheus.NewRegistry()))
		node.mode.Store(hang)
		r := call(ctx, c, svc, "Echo.Say", rpcclient.Timeout(600*time.Millisecond))
		require503(t, r, "")
		if r.took < 550*time.Millisecond || r.took > 1500*time.Millisecond {
			t.Fatalf("with Timeout(600ms) over a 100ms request timeout the hung call took %v", r.took)
		}
		r = call(ctx, c, svc, "Echo.Say")
		require503(t, r, "")
		if r.took > 400*time.Millisecond {
			t.Fatalf("without Timeout the hung call took %v, want about the 100ms request timeout", r.took)
		}
	})

	t.Run("a caller's earlier deadline wins over the request timeout", func(t *testing.T) {
		const svc = "marketmesh.echo-deadline"
		node, _ := startNode(t, agent, svc)
		agent.WaitPassing(t, svc, 1, 5*time.Second)
		c, _ := newClient(t, agent, testRPC)
		node.mode.Store(hang)
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		r := call(short, c, svc, "Echo.Say")
		require503(t, r, "")
		if r.took > 250*time.Millisecond {
			t.Fatalf("the call took %v, ignoring the caller's 100ms deadline", r.took)
		}
	})

	t.Run("a caller's own cancellation or shorter deadline does not count against the node", func(t *testing.T) {
		const svc = "marketmesh.echo-caller"
		node, _ := startNode(t, agent, svc)
		agent.WaitPassing(t, svc, 1, 5*time.Second)
		c, metrics := newClient(t, agent, testRPC) // 300ms attempts, 3 failures open the breaker
		if r := call(ctx, c, svc, "Echo.Say"); r.err != nil {
			t.Fatalf("warm-up call: %v", r.err)
		}
		node.mode.Store(hang) // slow: only the callers' own limits end these calls

		for i := range 3 * int(testRPC.BreakerFailures) {
			before := node.calls.Load()
			// Even calls: a 100ms deadline, shorter than the attempt timeout
			// (as the api's optional parts). Odd calls: cancelled once the
			// node has them.
			callCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			if i%2 == 1 {
				callCtx, cancel = context.WithCancel(ctx)
				go func() {
					for end := time.Now().Add(5 * time.Second); node.calls.Load() == before && time.Now().Before(end); {
						time.Sleep(time.Millisecond)
					}
					cancel()
				}()
			}
			r := call(callCtx, c, svc, "Echo.Say")
			cancel()
			require503(t, r, "")
			if got := node.calls.Load() - before; got != 1 {
				t.Fatalf("call %d (%v): the node got %d calls, want 1: its breaker refused it", i, r.err, got)
			}
		}
		if g := gauge(t, metrics, svc, "Echo.Say"); g != closed {
			t.Fatalf("breaker state %v after calls the callers gave up on, want %d (closed)", g, closed)
		}

		// The attempt's own timeout still counts.
		for range int(testRPC.BreakerFailures) {
			r := call(ctx, c, svc, "Echo.Say")
			require503(t, r, "timed out")
		}
		require503(t, call(ctx, c, svc, "Echo.Say"), "circuit open")
		if g := gauge(t, metrics, svc, "Echo.Say"); g != open {
			t.Fatalf("breaker state %v after %d attempt timeouts, want %d (open)", g, testRPC.BreakerFailures, open)
		}
	})

	t.Run("a node relaying its dependency's 503 stays in rotation, its own 500s do not", func(t *testing.T) {
		const svc = "marketmesh.echo-relay"
		node, _ := startNode(t, agent, svc)
		agent.WaitPassing(t, svc, 1, 5*time.Second)
		c, metrics := newClient(t, agent, testRPC)
		node.mode.Store(relay)

		n := 3 * int(testRPC.BreakerFailures)
		for i := range n {
			me := microError(t, call(ctx, c, svc, "Echo.Say").err)
			if me.Code != 503 || me.Id != "marketmesh.dependency" {
				t.Fatalf("call %d: %v, want the node's relayed 503", i, me)
			}
		}
		if got := node.calls.Load(); got != int64(n) {
			t.Fatalf("the node got %d of %d calls: its breaker was charged with its dependency's outage", got, n)
		}
		if g := gauge(t, metrics, svc, "Echo.Say"); g != closed {
			t.Fatalf("breaker state %v, want %d (closed)", g, closed)
		}

		node.mode.Store(fail)
		for range int(testRPC.BreakerFailures) {
			if me := microError(t, call(ctx, c, svc, "Echo.Say").err); me.Code != 500 {
				t.Fatalf("%v, want the node's 500", me)
			}
		}
		require503(t, call(ctx, c, svc, "Echo.Say"), "circuit open")
	})

	t.Run("each node's breaker state, transitions and refusals are exported and dropped with the breaker", func(t *testing.T) {
		const svc, ep = "marketmesh.echo-metrics", "Echo.Say"
		bad, _ := startNode(t, agent, svc)
		good, _ := startNode(t, agent, svc)
		agent.WaitPassing(t, svc, 2, 5*time.Second)
		rpc := testRPC
		rpc.BreakerFailures = 2
		live := config.NewLive(rpc)
		metrics := prometheus.NewRegistry()
		c := rpcclient.New(service.NewRegistry(config.Consul{Address: agent.Addr}, "", ""), live, rpcclient.Metrics(metrics))
		transitions := func(node, from, to string) float64 { // from and to "": every transition
			want := map[string]string{"service": svc, "endpoint": ep, "node": node}
			if from != "" {
				want["from"], want["to"] = from, to
			}
			return metric(t, metrics, "marketmesh_rpc_breaker_transitions_total", want)
		}
		rejected := func(node string) float64 {
			return metric(t, metrics, "marketmesh_rpc_breaker_rejected_total",
				map[string]string{"service": svc, "endpoint": ep, "node": node})
		}
		// tripBad sends writes until the failing node has had n more calls.
		tripBad := func(n int64) {
			t.Helper()
			want := bad.calls.Load() + n
			for i := 0; bad.calls.Load() < want; i++ {
				if i == 50 {
					t.Fatalf("50 writes reached the failing node only %d of %d times", bad.calls.Load(), want)
				}
				call(ctx, c, svc, ep)
			}
		}
		bad.mode.Store(fail)
		tripBad(int64(rpc.BreakerFailures))

		if s := nodeState(t, metrics, svc, ep, bad.node); s != open {
			t.Fatalf("failing node's state %v, want %d (open)", s, open)
		}
		if n := transitions(bad.node, "closed", "open"); n != 1 {
			t.Fatalf("closed→open transitions of the failing node: %v, want 1", n)
		}
		if n := transitions(good.node, "", ""); n != -1 {
			t.Fatalf("the good node has transitions: %v", n)
		}
		refused := max(rejected(bad.node), 0)
		for i := range 5 {
			if r := call(ctx, c, svc, ep); r.err != nil || r.rsp.Node != good.node {
				t.Fatalf("call %d: node %q, %v; want the good node", i, r.rsp.Node, r.err)
			}
		}
		if n := rejected(bad.node) - refused; n < 5 {
			t.Fatalf("the open breaker kept %v calls from the failing node, want at least 5", n)
		}
		if s := nodeState(t, metrics, svc, ep, good.node); s != closed {
			t.Fatalf("good node's state %v, want %d (closed)", s, closed)
		}

		// Recovery: open → half-open (the trial call) → closed.
		bad.mode.Store(answer)
		meshtest.Eventually(t, 5*rpc.BreakerOpenFor.D(), func() error {
			if r := call(ctx, c, svc, ep); r.err != nil || r.rsp.Node != bad.node {
				return errors.New("the recovered node has not answered yet")
			}
			return nil
		})
		for _, tr := range [][2]string{{"open", "half-open"}, {"half-open", "closed"}} {
			if n := transitions(bad.node, tr[0], tr[1]); n != 1 {
				t.Fatalf("%s→%s transitions of the recovered node: %v, want 1", tr[0], tr[1], n)
			}
		}
		if s := nodeState(t, metrics, svc, ep, bad.node); s != closed {
			t.Fatalf("recovered node's state %v, want %d (closed)", s, closed)
		}

		// A live configuration change rebuilds the breakers: the old ones'
		// series go, so a breaker that no longer exists is not shown open.
		bad.mode.Store(fail)
		tripBad(int64(rpc.BreakerFailures))
		if s := nodeState(t, metrics, svc, ep, bad.node); s != open {
			t.Fatalf("failing node's state %v, want %d (open)", s, open)
		}
		next := rpc
		next.BreakerOpenFor = config.Duration(2 * time.Second)
		live.Set(next)
		if r := call(ctx, c, svc, ep); r.err != nil || r.rsp.Node != good.node {
			t.Fatalf("call after the change: node %q, %v; want the good node", r.rsp.Node, r.err)
		}
		if s, n, rej := nodeState(t, metrics, svc, ep, bad.node), transitions(bad.node, "", ""), rejected(bad.node); s != -1 || n != -1 || rej != -1 {
			t.Fatalf("after the breakers were rebuilt the old one's series remain: state %v, transitions %v, rejected %v", s, n, rej)
		}
		if s := nodeState(t, metrics, svc, ep, good.node); s != closed {
			t.Fatalf("good node's new breaker state %v, want %d (closed)", s, closed)
		}
	})
}
