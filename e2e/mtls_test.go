package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/meshtest"
	"github.com/marketmesh/marketmesh/plugins/rpcclient"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/plugins/service"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
)

// TestServiceIdentityAndCallTable checks, against the real mesh, that a
// service is who its certificate proves (Consul Connect's CA) and may do
// what the call table allows, whatever the registry or metadata say.
func TestServiceIdentityAndCallTable(t *testing.T) {
	m := startMesh(t)
	uid, _ := m.signup("mtls@example.com")
	mesh := config.Defaults()
	mesh.Consul.Address = m.consul.Addr
	as := func(svc string) *usersrpc.Client {
		opts := []rpcclient.Option{}
		if svc != "" {
			opts = append(opts, rpcclient.Identity(m.consul.Identity(t, svc)))
		}
		return usersrpc.NewClient(rpcclient.New(service.NewRegistry(mesh.Consul, "", ""), config.NewLive(mesh.RPC), opts...))
	}
	code := func(err error) int32 {
		var me *merrors.Error
		if errors.As(err, &me) {
			return me.Code
		}
		return 0
	}
	ctx := context.Background()
	creds := usersrpc.AuthenticateRequest{Email: "mtls@example.com", Password: "correct horse"}

	t.Run("Consul's intentions show the call table", func(t *testing.T) {
		meshtest.Eventually(t, 15*time.Second, func() error {
			e, _, err := m.consul.Client.ConfigEntries().Get(api.ServiceIntentions, usersrpc.Service, nil)
			if err != nil {
				return err
			}
			var got []string
			for _, src := range e.(*api.ServiceIntentionsConfigEntry).Sources {
				got = append(got, src.Name+"="+string(src.Action))
			}
			if want := "marketmesh.api=allow,marketmesh.notifications=allow,*=deny"; strings.Join(got, ",") != want {
				return fmt.Errorf("intentions of users: %v, want %s", got, want)
			}
			return nil
		})
	})

	t.Run("a process without a certificate gets no call through", func(t *testing.T) {
		if _, err := as("").Authenticate(ctx, creds); code(err) != 503 {
			t.Fatalf("Authenticate without a certificate = %v, want 503 (no connection)", err)
		}
		// Nor over raw TLS: the server requires a client certificate.
		addr := passingAddress(t, m, usersrpc.Service)
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // the test is the attacker
		if err == nil {
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1)) // TLS 1.3: the refusal arrives after the client's Finished
			conn.Close()
		}
		if err == nil {
			t.Fatal("a TLS client without a certificate completed a handshake with users and read from it")
		}
	})

	t.Run("the call table: images may not authenticate users, notifications may read recipients", func(t *testing.T) {
		if _, err := as(svcauth.Images).Authenticate(ctx, creds); code(err) != 403 {
			t.Fatalf("Authenticate as images = %v, want 403", err)
		}
		if u, err := as(svcauth.API).Authenticate(ctx, creds); err != nil || u.ID != uid {
			t.Fatalf("Authenticate as the api = %+v, %v", u, err)
		}
		if _, err := as(svcauth.API).Recipient(ctx, uid); code(err) != 403 {
			t.Fatalf("Recipient as the api = %v, want 403: contact details are for notifications", err)
		}
		if r, err := as(svcauth.Notifications).Recipient(ctx, uid); err != nil || r.Email != "mtls@example.com" {
			t.Fatalf("Recipient as notifications = %+v, %v", r, err)
		}
	})

	t.Run("a user identity in metadata counts only from the api", func(t *testing.T) {
		asUser := rpcmeta.WithCaller(ctx, uid)
		if u, err := as(svcauth.API).Me(asUser); err != nil || u.ID != uid {
			t.Fatalf("Me as the api for the user = %+v, %v", u, err)
		}
		// Orders proves orders, not the user: the claim is dropped and the
		// call is refused by the table anyway.
		if _, err := as(svcauth.Orders).Me(asUser); code(err) != 403 {
			t.Fatalf("Me as orders claiming the user = %v, want 403", err)
		}
	})

	t.Run("the blob endpoint takes the api only, over mutual TLS", func(t *testing.T) {
		addr := blobAddress(t, m)
		get := func(cfg *tls.Config) (int, error) {
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
			resp, err := c.Get("https://" + addr + "/internal/images/nope")
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}
		if st, err := get(m.consul.Identity(t, svcauth.API).ClientConfig(imagesrpc.Service)); err != nil || st != 404 {
			t.Fatalf("GET as the api = %d, %v; want 404", st, err)
		}
		if st, err := get(m.consul.Identity(t, svcauth.Orders).ClientConfig(imagesrpc.Service)); err != nil || st != 403 {
			t.Fatalf("GET as orders = %d, %v; want 403", st, err)
		}
		if st, err := get(&tls.Config{InsecureSkipVerify: true}); err == nil { //nolint:gosec // the attacker
			t.Fatalf("GET without a certificate = %d, want a refused handshake", st)
		}
		c := &http.Client{Timeout: 10 * time.Second}
		if resp, err := c.Get("http://" + addr + "/internal/images/nope"); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest { // Go's answer to plain HTTP on a TLS port
				t.Fatalf("plain HTTP GET = %d", resp.StatusCode)
			}
		}
	})

	t.Run("a fake users registered with the real one's metadata gets no call and sees no password", func(t *testing.T) {
		real := m.consul.WaitPassing(t, usersrpc.Service, 1, 10*time.Second)[0].Service
		// The fake holds a genuine mesh certificate, as a compromised
		// service would, but of another service: images.
		fake := newRecordingTLSServer(t, m.consul.Identity(t, svcauth.Images).ServerConfig())
		host, port, _ := net.SplitHostPort(fake.addr)
		p, _ := strconv.Atoi(port)
		reg := &api.AgentServiceRegistration{
			ID: "marketmesh.users-fake", Name: usersrpc.Service, Tags: real.Tags, Meta: real.Meta,
			Address: host, Port: p,
		}
		if err := m.consul.Client.Agent().ServiceRegister(reg); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.consul.Client.Agent().ServiceDeregister(reg.ID) })
		m.consul.WaitPassing(t, usersrpc.Service, 2, 10*time.Second)
		// Let the api's registry cache see both instances.
		time.Sleep(2 * time.Second)
		ok, refused := 0, 0
		for range 20 {
			st, _, _ := m.call("POST", "/v1/auth/login", "", map[string]string{"email": "mtls@example.com", "password": "correct horse"})
			switch st {
			case 200:
				ok++
			case 503:
				refused++
			default:
				t.Fatalf("login with a fake users registered = %d", st)
			}
		}
		if ok == 0 {
			t.Fatal("no login succeeded while the real users instance is up")
		}
		if fake.handshakes() == 0 {
			t.Log("the api never dialed the fake (its cache had not picked it yet)")
		}
		if got := fake.received(); bytes.Contains(got, []byte("correct horse")) || bytes.Contains(got, []byte("mtls@example.com")) {
			t.Fatalf("the fake received the credentials (%d bytes)", len(got))
		}
		t.Logf("20 logins with a fake users registered: %d ok, %d refused (503), the fake completed %d handshakes and read %d bytes, none of them the credentials",
			ok, refused, fake.handshakes(), len(fake.received()))
	})
}

// passingAddress returns the RPC address of service's passing instance.
func passingAddress(t *testing.T, m *mesh, service string) string {
	t.Helper()
	e := m.consul.WaitPassing(t, service, 1, 10*time.Second)[0]
	return net.JoinHostPort(e.Service.Address, strconv.Itoa(e.Service.Port))
}

// blobAddress returns the images blob endpoint's address from the registry.
func blobAddress(t *testing.T, m *mesh) string {
	t.Helper()
	e := m.consul.WaitPassing(t, imagesrpc.Service, 1, 10*time.Second)[0]
	if a := e.Service.Meta[imagesrpc.HTTPAddressKey]; a != "" {
		return a
	}
	t.Fatalf("images publishes no %s in %v", imagesrpc.HTTPAddressKey, e.Service.Meta)
	return ""
}

// recordingTLSServer accepts TLS connections and records every byte it
// reads after the handshake.
type recordingTLSServer struct {
	addr string
	mu   sync.Mutex
	buf  bytes.Buffer
	n    int
}

func newRecordingTLSServer(t *testing.T, cfg *tls.Config) *recordingTLSServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &recordingTLSServer{addr: ln.Addr().String()}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				tc := tls.Server(c, cfg)
				if tc.Handshake() != nil {
					return
				}
				s.mu.Lock()
				s.n++
				s.mu.Unlock()
				// Answer the HTTP/2 preface with empty SETTINGS so the
				// client goes on to send whatever it would send.
				_, _ = tc.Write([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0})
				b := make([]byte, 4096)
				for {
					n, err := tc.Read(b)
					s.mu.Lock()
					s.buf.Write(b[:n])
					s.mu.Unlock()
					if err != nil { // io.EOF or the deadline
						return
					}
				}
			}()
		}
	}()
	return s
}

func (s *recordingTLSServer) received() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.buf.Bytes())
}

func (s *recordingTLSServer) handshakes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}
