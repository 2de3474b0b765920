package rpcclient_test

import (
	"context"
	"encoding/json"
	"syscall"
	"testing"
	"time"

	grpcclient "github.com/go-micro/plugins/v4/client/grpc"
	grpcserver "github.com/go-micro/plugins/v4/server/grpc"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go-micro.dev/v4/client"
	"go-micro.dev/v4/registry"
	"go-micro.dev/v4/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	gmetadata "google.golang.org/grpc/metadata"

	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/rpcclient"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
)

// benchStack is the client stack calling one go-micro gRPC server on
// loopback (plain text, an in-memory registry: no Consul), with the api's
// metadata in the context: what one api -> service call costs the caller.
func benchStack(b *testing.B) (client.Client, context.Context) {
	c, _, ctx := benchClients(b)
	return c, ctx
}

// benchClients returns the stack and a bare go-micro gRPC client (same
// registry, JSON codec, no wrappers) for comparison.
func benchClients(b *testing.B) (client.Client, client.Client, context.Context) {
	b.Helper()
	reg := registry.NewMemoryRegistry()
	srv := grpcserver.NewServer(
		server.Name("bench.echo"),
		server.Id(uuid.NewString()),
		server.Address("127.0.0.1:0"),
		server.Registry(reg),
		server.RegisterTTL(0),
	)
	if err := srv.Handle(srv.NewHandler(&Echo{node: "bench"})); err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Stop() })
	rpc := testRPC
	rpc.RequestTimeout = config.Duration(2 * time.Second)
	c := rpcclient.New(reg, config.NewLive(rpc), rpcclient.Metrics(prometheus.NewRegistry()))
	ctx := rpcmeta.WithCaller(rpcmeta.WithRequestID(context.Background(), "01HBENCHREQUEST"), "01HUSER")
	// The first call dials.
	if _, err := rpcclient.Call[EchoResponse](ctx, c, "bench.echo", "Echo.Say", &EchoRequest{Text: "hi"}, rpcclient.Read()); err != nil {
		b.Fatal(err)
	}
	bare := grpcclient.NewClient(client.Registry(reg), client.Selector(rpcclient.NewSelector(reg)),
		client.ContentType("application/json"), client.Retries(0), client.RequestTimeout(2*time.Second))
	return c, bare, ctx
}

// cpuTime is the CPU time (user and system) the process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU time per operation since start (both
// sides of the call live in the process): steadier than ns/op on a machine
// shared with other work.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkCallBareGoMicro is BenchmarkCall/sequential without the stack.
func BenchmarkCallBareGoMicro(b *testing.B) {
	_, c, ctx := benchClients(b)
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		if _, err := rpcclient.Call[EchoResponse](ctx, c, "bench.echo", "Echo.Say", &EchoRequest{Text: "hi"}); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}

// BenchmarkCall is one read through the whole stack: selector, breaker,
// retry policy, metadata, JSON codec, gRPC on loopback, metrics.
func BenchmarkCall(b *testing.B) {
	c, ctx := benchStack(b)
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		cpu := cpuTime()
		for b.Loop() {
			if _, err := rpcclient.Call[EchoResponse](ctx, c, "bench.echo", "Echo.Say", &EchoRequest{Text: "hi"}, rpcclient.Read()); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, cpu)
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8)
		cpu := cpuTime()
		defer reportCPU(b, cpu)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := rpcclient.Call[EchoResponse](ctx, c, "bench.echo", "Echo.Say", &EchoRequest{Text: "hi"}, rpcclient.Read()); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

type benchJSON struct{}

func (benchJSON) Marshal(v any) ([]byte, error)   { return json.Marshal(v) }
func (benchJSON) Unmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
func (benchJSON) Name() string                    { return "json" }

// BenchmarkCallRawGRPC is one call on a plain grpc.ClientConn to the same
// go-micro server: the floor under any client.
func BenchmarkCallRawGRPC(b *testing.B) {
	reg := registry.NewMemoryRegistry()
	srv := grpcserver.NewServer(server.Name("bench.echo"), server.Id(uuid.NewString()),
		server.Address("127.0.0.1:0"), server.Registry(reg), server.RegisterTTL(0))
	if err := srv.Handle(srv.NewHandler(&Echo{node: "bench"})); err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Stop() })
	cc, err := grpc.Dial(srv.Options().Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	b.ReportAllocs()
	cpu := cpuTime()
	defer reportCPU(b, cpu)
	for b.Loop() {
		ctx := gmetadata.NewOutgoingContext(context.Background(), gmetadata.Pairs("x-content-type", "application/json", "x-request-id", "01HBENCHREQUEST", "x-caller-id", "01HUSER"))
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var rsp EchoResponse
		if err := cc.Invoke(ctx, "/bench.echo.Echo/Say", &EchoRequest{Text: "hi"}, &rsp, grpc.ForceCodec(benchJSON{})); err != nil {
			b.Fatal(err)
		}
		cancel()
	}
}
