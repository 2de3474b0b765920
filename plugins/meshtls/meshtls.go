// Package meshtls gives every marketmesh process an identity it can prove:
// a certificate from Consul Connect's CA for its service name, and the CA's
// roots to check its peers' certificates against.
//
// Certificates come from the local Consul agent's Connect endpoints, through
// github.com/hashicorp/consul/api (MPL-2.0): Agent().ConnectCALeaf for this
// service's leaf certificate and Agent().ConnectCARoots for the trusted
// roots, each watched with blocking queries so a renewed leaf or a rotated
// CA is used for the next handshake without a restart. The agent only issues
// a leaf for a service to a token with service:write on that service, so
// under Consul ACLs a process can only be the service its token names.
//
// A peer's identity is the SPIFFE ID in its certificate's URI SAN,
// spiffe://<trust domain>/ns/<ns>/dc/<dc>/svc/<service>; it is accepted only
// when the certificate chains to a current root and the trust domain is the
// CA's. Host names play no part: a marketmesh client checks that the server
// it reached proves the service it meant to call (see Service and
// CheckService), and a server learns its caller's service from the
// handshake, never from anything the caller writes in metadata.
package meshtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// Identity is this process's certificate and the CA roots, kept current.
type Identity struct {
	service string
	agent   *api.Agent

	mu          sync.RWMutex
	cert        *tls.Certificate
	leafExpiry  time.Time
	leafSerial  string
	leafPEM     string
	roots       *x509.CertPool
	trustDomain string
	ready       chan struct{} // closed once both a leaf and roots are held
	readyOnce   sync.Once
	lastErr     error
	kicks       [2]chan struct{} // per watch: a peer's certificate did not verify, look again now
	lastKick    time.Time
}

// New returns the identity of service ("marketmesh.users") issued by the
// Connect CA of the agent c talks to. Nothing is fetched until Run.
func New(c *api.Client, service string) *Identity {
	return &Identity{service: service, agent: c.Agent(), ready: make(chan struct{}),
		kicks: [2]chan struct{}{make(chan struct{}, 1), make(chan struct{}, 1)}}
}

// Service is the service this identity proves.
func (id *Identity) Service() string { return id.service }

// Run fetches the leaf certificate and the roots, then keeps them current
// until ctx ends. It returns ctx's error.
func (id *Identity) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { id.watch(ctx, "roots", id.kicks[0], id.fetchRoots) })
	wg.Go(func() { id.watch(ctx, "leaf certificate", id.kicks[1], id.fetchLeaf) })
	wg.Wait()
	return ctx.Err()
}

// Start runs the watches in the background and waits, until ctx ends, for
// the first certificate and roots.
func (id *Identity) Start(ctx context.Context, background context.Context) error {
	go func() { _ = id.Run(background) }()
	return id.Wait(ctx)
}

// Wait blocks until the identity holds a certificate and roots, or ctx ends.
func (id *Identity) Wait(ctx context.Context) error {
	select {
	case <-id.ready:
		return nil
	case <-ctx.Done():
		id.mu.RLock()
		last := id.lastErr
		id.mu.RUnlock()
		if last != nil {
			return fmt.Errorf("meshtls: no certificate for %s from Consul Connect: %w", id.service, last)
		}
		return fmt.Errorf("meshtls: no certificate for %s from Consul Connect: %w", id.service, ctx.Err())
	}
}

// Ready reports whether a certificate and roots are held.
func (id *Identity) Ready() bool {
	select {
	case <-id.ready:
		return true
	default:
		return false
	}
}

// watch runs fetch as a blocking query loop: each call waits for a change
// after the index it was given and returns the new index. A blocking query
// to an agent whose index went backwards (a restarted dev agent, which also
// has a new CA) would wait for its whole wait time; it does not come to
// that: a restart breaks the query's connection and the query after an error
// starts over from index 0, and a peer certificate that does not verify (see
// Verify) ends the current wait at once and starts over from index 0 too.
func (id *Identity) watch(ctx context.Context, what string, kicks <-chan struct{}, fetch func(context.Context, uint64) (uint64, error)) {
	var index uint64
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		qctx, cancel := context.WithCancel(ctx)
		kicked := make(chan struct{})
		go func() {
			select {
			case <-kicks:
				close(kicked)
				cancel()
			case <-qctx.Done():
			}
		}()
		next, err := fetch(qctx, index)
		cancel()
		select {
		case <-kicked:
			index = 0
			continue
		default:
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			id.mu.Lock()
			id.lastErr = err
			id.mu.Unlock()
			slog.Warn("meshtls: fetching from Consul Connect failed", "what", what, "identity", id.service, "err", err, "retry_in", backoff.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			index = 0
			continue
		}
		backoff = 100 * time.Millisecond
		if next < index { // the index went backwards (a restarted agent): start over
			next = 0
		}
		index = next
	}
}

// maxWait bounds one blocking query (see watch). Every answer is a Consul
// request from every process, twice (roots and leaf): long waits keep the
// mesh's background load on Consul low (README "Performance").
const maxWait = 5 * time.Minute

// kick makes the watches look again now, at most once a second: a peer's
// certificate that does not verify may mean the CA changed.
func (id *Identity) kick() {
	id.mu.Lock()
	if time.Since(id.lastKick) < time.Second {
		id.mu.Unlock()
		return
	}
	id.lastKick = time.Now()
	id.mu.Unlock()
	for _, k := range id.kicks {
		select {
		case k <- struct{}{}:
		default:
		}
	}
}

func query(ctx context.Context, index uint64) *api.QueryOptions {
	return (&api.QueryOptions{WaitIndex: index, WaitTime: maxWait}).WithContext(ctx)
}

func (id *Identity) fetchRoots(ctx context.Context, index uint64) (uint64, error) {
	list, meta, err := id.agent.ConnectCARoots(query(ctx, index))
	if err != nil {
		return index, err
	}
	pool := x509.NewCertPool()
	n := 0
	for _, r := range list.Roots {
		if pool.AppendCertsFromPEM([]byte(r.RootCertPEM)) {
			n++
		}
	}
	if n == 0 || list.TrustDomain == "" {
		return index, errors.New("Consul Connect has no CA roots (is connect enabled on the agent?)")
	}
	id.mu.Lock()
	changed := id.trustDomain != "" && id.trustDomain != list.TrustDomain
	id.roots, id.trustDomain = pool, list.TrustDomain
	id.mu.Unlock()
	if changed {
		slog.Warn("meshtls: the Connect trust domain changed", "trust_domain", list.TrustDomain)
	}
	id.markReady()
	return meta.LastIndex, nil
}

func (id *Identity) fetchLeaf(ctx context.Context, index uint64) (uint64, error) {
	leaf, meta, err := id.agent.ConnectCALeaf(id.service, query(ctx, index))
	if err != nil {
		return index, err
	}
	id.mu.RLock()
	same := id.cert != nil && id.leafSerial == leaf.SerialNumber && id.leafPEM == leaf.CertPEM
	id.mu.RUnlock()
	if same { // a blocking query that timed out answers with what we hold
		return meta.LastIndex, nil
	}
	cert, err := tls.X509KeyPair([]byte(leaf.CertPEM), []byte(leaf.PrivateKeyPEM))
	if err != nil {
		return index, fmt.Errorf("leaf certificate: %w", err)
	}
	id.mu.Lock()
	renewed := id.cert != nil
	id.cert, id.leafExpiry, id.leafSerial, id.leafPEM = &cert, leaf.ValidBefore, leaf.SerialNumber, leaf.CertPEM
	id.mu.Unlock()
	if renewed {
		slog.Info("meshtls: leaf certificate renewed", "identity", id.service, "serial", leaf.SerialNumber, "valid_before", leaf.ValidBefore)
	}
	id.markReady()
	return meta.LastIndex, nil
}

func (id *Identity) markReady() {
	id.mu.RLock()
	ok := id.cert != nil && id.roots != nil
	id.mu.RUnlock()
	if ok {
		id.readyOnce.Do(func() { close(id.ready) })
	}
}

func (id *Identity) current() (*tls.Certificate, *x509.CertPool, string, error) {
	id.mu.RLock()
	defer id.mu.RUnlock()
	if id.cert == nil || id.roots == nil {
		return nil, nil, "", fmt.Errorf("meshtls: %s has no certificate yet", id.service)
	}
	return id.cert, id.roots, id.trustDomain, nil
}

// ServerConfig is the TLS configuration of a server: it presents this
// identity's certificate and requires a client certificate from the mesh CA.
// The caller's service is then PeerService of the connection.
func (id *Identity) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAnyClientCert, // verified below against the current roots
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, _, _, err := id.current()
			return c, err
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := id.Verify(cs)
			return err
		},
		NextProtos: []string{"h2", "http/1.1"},
	}
}

// ClientConfig is the TLS configuration of a client: it presents this
// identity's certificate and accepts a server only with a certificate from
// the mesh CA. want, when not empty, is the service the server must prove;
// gRPC connections, shared by calls to whichever service an address serves,
// check it per call instead (see CheckService).
func (id *Identity) ClientConfig(want string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Host names are not identities here: the chain and the SPIFFE ID
		// are checked in VerifyConnection.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, _, _, err := id.current()
			return c, err
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			got, err := id.Verify(cs)
			if err != nil {
				return err
			}
			if want != "" && got != want {
				return &WrongServiceError{Want: want, Got: got}
			}
			return nil
		},
	}
}

// WrongServiceError says a server proved another service than the one called.
type WrongServiceError struct{ Want, Got string }

func (e *WrongServiceError) Error() string {
	return fmt.Sprintf("meshtls: the server proves %s, not %s", e.Got, e.Want)
}

// Verify checks the peer's certificate chain against the current roots and
// returns the service it proves.
func (id *Identity) Verify(cs tls.ConnectionState) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", errors.New("meshtls: the peer presented no certificate")
	}
	_, roots, domain, err := id.current()
	if err != nil {
		return "", err
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		id.kick()
		return "", fmt.Errorf("meshtls: the peer's certificate is not from the mesh CA: %w", err)
	}
	return ServiceOf(leaf, domain)
}

// ServiceOf returns the service named by cert's SPIFFE ID in trustDomain.
func ServiceOf(cert *x509.Certificate, trustDomain string) (string, error) {
	for _, u := range cert.URIs {
		if svc, ok := serviceOfURI(u, trustDomain); ok {
			return svc, nil
		}
	}
	return "", fmt.Errorf("meshtls: the certificate names no service of trust domain %s", trustDomain)
}

func serviceOfURI(u *url.URL, trustDomain string) (string, bool) {
	if u.Scheme != "spiffe" || !strings.EqualFold(u.Host, trustDomain) {
		return "", false
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) < 2 || parts[len(parts)-2] != "svc" || parts[len(parts)-1] == "" {
		return "", false
	}
	return parts[len(parts)-1], true
}

// PeerService returns the service proven by a verified connection state
// (the server side of a handshake that ServerConfig accepted).
func (id *Identity) PeerService(cs tls.ConnectionState) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", errors.New("meshtls: the peer presented no certificate")
	}
	_, _, domain, err := id.current()
	if err != nil {
		return "", err
	}
	return ServiceOf(cs.PeerCertificates[0], domain)
}

// LeafExpiry is when the current leaf certificate expires.
func (id *Identity) LeafExpiry() time.Time {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.leafExpiry
}

// PEM encodes the current certificate chain (for diagnostics and tests).
func (id *Identity) PEM() []byte {
	c, _, _, err := id.current()
	if err != nil {
		return nil
	}
	var out []byte
	for _, der := range c.Certificate {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return out
}
