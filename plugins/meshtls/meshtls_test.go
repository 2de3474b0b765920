package meshtls_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	grpcserver "github.com/go-micro/plugins/v4/server/grpc"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go-micro.dev/v4/client"
	"go-micro.dev/v4/server"

	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/meshtest"
	"github.com/marketmesh/marketmesh/plugins/meshtls"
	"github.com/marketmesh/marketmesh/plugins/rpcclient"
	"github.com/marketmesh/marketmesh/plugins/service"
)

// handshake runs a TLS handshake between a client and a server config over
// loopback and returns what each side saw.
func handshake(t testing.TB, clientCfg, serverCfg *tls.Config) (clientErr, serverErr error, server tls.ConnectionState) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		err error
		cs  tls.ConnectionState
	}
	done := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- res{err: err}
			return
		}
		defer c.Close()
		tc := tls.Server(c, serverCfg)
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		err = tc.Handshake()
		if err == nil { // TLS 1.3: the client's certificate is checked now
			_, err = tc.Read(make([]byte, 1))
		}
		done <- res{err: err, cs: tc.ConnectionState()}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), clientCfg)
	if err == nil {
		_, clientErr = c.Write([]byte("x"))
		c.Close()
	} else {
		clientErr = err
	}
	r := <-done
	return clientErr, r.err, r.cs
}

func TestIdentitiesFromConnect(t *testing.T) {
	agent := meshtest.Consul(t)
	users := agent.Identity(t, "marketmesh.users")
	api := agent.Identity(t, "marketmesh.api")

	t.Run("each side learns the other's service from the handshake", func(t *testing.T) {
		cerr, serr, cs := handshake(t, api.ClientConfig("marketmesh.users"), users.ServerConfig())
		if cerr != nil || serr != nil {
			t.Fatalf("handshake: client %v, server %v", cerr, serr)
		}
		if got, err := users.PeerService(cs); err != nil || got != "marketmesh.api" {
			t.Fatalf("the server sees %q, %v; want marketmesh.api", got, err)
		}
		if users.LeafExpiry().Before(time.Now().Add(time.Hour)) {
			t.Errorf("leaf expires at %v", users.LeafExpiry())
		}
	})
	t.Run("a client refuses a server proving another service", func(t *testing.T) {
		cerr, _, _ := handshake(t, api.ClientConfig("marketmesh.orders"), users.ServerConfig())
		var wrong *meshtls.WrongServiceError
		if !errors.As(cerr, &wrong) || wrong.Got != "marketmesh.users" {
			t.Fatalf("client error %v, want WrongServiceError naming marketmesh.users", cerr)
		}
	})
	t.Run("a server refuses a client without a certificate", func(t *testing.T) {
		_, serr, _ := handshake(t, &tls.Config{InsecureSkipVerify: true}, users.ServerConfig()) //nolint:gosec // the attacker
		if serr == nil {
			t.Fatal("the server accepted a client without a certificate")
		}
	})
	t.Run("certificates of another CA prove nothing, either way", func(t *testing.T) {
		other := meshtest.Consul(t).Identity(t, "marketmesh.api")
		attacker := other.ClientConfig("")
		attacker.VerifyConnection = nil // trusts any server: only the server's check is tested
		if _, serr, _ := handshake(t, attacker, users.ServerConfig()); serr == nil || !strings.Contains(serr.Error(), "mesh CA") {
			t.Fatalf("the server accepted a client of another CA: %v", serr)
		}
		if cerr, _, _ := handshake(t, api.ClientConfig(""), other.ServerConfig()); cerr == nil {
			t.Fatal("the client accepted a server of another CA")
		}
	})
}

// A rotated CA reaches running processes through the blocking queries: new
// roots and a new leaf, with no restart; the old leaf stays valid meanwhile
// (Consul cross-signs).
func TestCARotationWithoutRestart(t *testing.T) {
	agent := meshtest.Consul(t)
	users := agent.Identity(t, "marketmesh.users")
	api := agent.Identity(t, "marketmesh.api")
	before := string(api.PEM())
	conf, _, err := agent.Client.Connect().CAGetConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	conf.Config["PrivateKeyType"], conf.Config["PrivateKeyBits"] = "rsa", 2048 // a new root key: a rotation
	if _, err := agent.Client.Connect().CASetConfig(conf, nil); err != nil {
		t.Fatal(err)
	}
	meshtest.Eventually(t, 30*time.Second, func() error {
		if string(api.PEM()) == before {
			return errors.New("the api's leaf is still the one from before the rotation")
		}
		if string(users.PEM()) == "" {
			return errors.New("users has no leaf")
		}
		cerr, serr, _ := handshake(t, api.ClientConfig("marketmesh.users"), users.ServerConfig())
		if cerr != nil || serr != nil {
			return fmt.Errorf("handshake after the rotation: client %v, server %v", cerr, serr)
		}
		return nil
	})
}

func TestServiceOfMethod(t *testing.T) {
	for method, want := range map[string]string{
		"/marketmesh.users.Users/Authenticate":     "marketmesh.users",
		"/marketmesh.notifications.Events/Deliver": "marketmesh.notifications",
		"/Users/Me": "",
		"":          "",
	} {
		if got := meshtls.ServiceOfMethod(method); got != want {
			t.Errorf("ServiceOfMethod(%q) = %q, want %q", method, got, want)
		}
	}
}

// Echo is the benchmark's handler.
type Echo struct{}

// EchoRequest is its request.
type EchoRequest struct{ Text string }

// EchoResponse is its answer.
type EchoResponse struct{ Text string }

// Say echoes.
func (Echo) Say(_ context.Context, req *EchoRequest, rsp *EchoResponse) error {
	rsp.Text = req.Text
	return nil
}

// BenchmarkRPCMutualTLS compares one call through the client stack to a
// go-micro gRPC server in plain text and over mutual TLS with Connect
// certificates, alternating the two so both see the same machine load.
// Handshakes happen once per connection (the first call); the figures are
// the steady state. It reports ns per call of each and their ratio.
func BenchmarkRPCMutualTLS(b *testing.B) {
	agent := meshtest.Consul(b)
	srvID := agent.Identity(b, "marketmesh.bench-tls")
	cliID := agent.Identity(b, "marketmesh.bench-client")
	start := func(name string, opts ...server.Option) {
		srv := grpcserver.NewServer(append([]server.Option{
			server.Name(name), server.Id(uuid.NewString()), server.Address("127.0.0.1:0"),
			server.Registry(service.NewRegistry(config.Consul{Address: agent.Addr}, "", "")), server.RegisterTTL(0),
		}, opts...)...)
		if err := srv.Handle(srv.NewHandler(Echo{})); err != nil {
			b.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = srv.Stop() })
		agent.WaitPassing(b, name, 1, 10*time.Second)
	}
	start("marketmesh.bench-plain")
	start("marketmesh.bench-tls", grpcserver.AuthTLS(srvID.ServerConfig()))
	rpc := config.Defaults().RPC
	newClient := func(opts ...rpcclient.Option) client.Client {
		reg := service.NewRegistry(config.Consul{Address: agent.Addr}, "", "")
		return rpcclient.New(reg, config.NewLive(rpc), append(opts, rpcclient.Metrics(prometheus.NewRegistry()))...)
	}
	plain := newClient()
	mtls := newClient(rpcclient.Identity(cliID))
	ctx := context.Background()
	call := func(c client.Client, svc string) {
		var rsp EchoResponse
		if err := c.Call(ctx, c.NewRequest(svc, "Echo.Say", &EchoRequest{Text: "hello"}), &rsp); err != nil || rsp.Text != "hello" {
			b.Fatalf("%s: %v", svc, err)
		}
	}
	// Connections and handshakes first: the comparison is per request.
	handshakeStart := time.Now()
	call(mtls, "marketmesh.bench-tls")
	firstTLS := time.Since(handshakeStart)
	call(plain, "marketmesh.bench-plain")

	var tPlain, tTLS time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		call(plain, "marketmesh.bench-plain")
		t1 := time.Now()
		call(mtls, "marketmesh.bench-tls")
		tPlain += t1.Sub(t0)
		tTLS += time.Since(t1)
	}
	b.StopTimer()
	b.ReportMetric(float64(tPlain.Nanoseconds())/float64(b.N), "plain-ns/call")
	b.ReportMetric(float64(tTLS.Nanoseconds())/float64(b.N), "mtls-ns/call")
	b.ReportMetric(float64(tTLS)/float64(tPlain), "mtls/plain")
	b.ReportMetric(float64(firstTLS.Microseconds()), "first-mtls-call-µs")
}
