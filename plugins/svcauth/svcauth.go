// Package svcauth proves which marketmesh service made an RPC call.
//
// A caller's identity in plain metadata is only a claim anyone on the
// network can make. Here every call a service makes carries a credential in
// metadata (Header): the caller's name, the time, and an HMAC-SHA256 under
// the mesh key over the caller, the callee, the endpoint and the time. The
// callee recomputes it; only then does Caller report the name, and an
// endpoint reserved to one service (publications' stock operations, which
// only orders may call) refuses everyone else with Require.
//
// The mesh key (MARKETMESH_SERVICE_KEY, 32 random bytes in base64; in
// development a file generated once under the data dir and shared by every
// process of `make run`) is held by every service, so it proves membership
// of the mesh, not which member: a compromised service could sign as
// another. Per-service identities (mTLS from Consul Connect's CA) remove that.
package svcauth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	merrors "go-micro.dev/v4/errors"
	"go-micro.dev/v4/metadata"
)

// Header is the metadata key of the credential (lower case: gRPC lower-cases it).
const Header = "x-service-auth"

// KeyEnv names the environment variable holding the mesh key (base64).
const KeyEnv = "MARKETMESH_SERVICE_KEY"

// KeySize is the mesh key's length in bytes.
const KeySize = 32

// Window is how far a credential's time may be from the callee's clock.
const Window = 2 * time.Minute

// NewKey returns a new random mesh key.
func NewKey() ([]byte, error) {
	k := make([]byte, KeySize)
	_, err := rand.Read(k)
	return k, err
}

// Signer signs the calls of one service.
type Signer struct {
	name string
	key  []byte
	now  func() time.Time
}

// NewSigner returns a signer for the service named name ("marketmesh.orders").
func NewSigner(name string, key []byte) (*Signer, error) {
	if err := check(name, key); err != nil {
		return nil, err
	}
	return &Signer{name: name, key: key, now: time.Now}, nil
}

func check(name string, key []byte) error {
	if len(key) < KeySize {
		return fmt.Errorf("svcauth: the mesh key must be at least %d bytes, got %d", KeySize, len(key))
	}
	if name == "" || strings.ContainsAny(name, " \x00") {
		return fmt.Errorf("svcauth: bad service name %q", name)
	}
	return nil
}

// Name is the service this signer speaks for.
func (s *Signer) Name() string { return s.name }

// Sign returns the credential for one call to service's endpoint.
func (s *Signer) Sign(service, endpoint string) string {
	ts := strconv.FormatInt(s.now().Unix(), 10)
	return "v1 " + s.name + " " + ts + " " + mac(s.key, s.name, service, endpoint, ts)
}

// Outgoing returns ctx whose outgoing metadata carries the credential for a
// call to service's endpoint, keeping the metadata already there.
//
// The credential of the call this one serves (go-micro keeps incoming
// metadata in the context, under any capitalization) is dropped: a
// credential is never forwarded.
func (s *Signer) Outgoing(ctx context.Context, service, endpoint string) context.Context {
	md, _ := metadata.FromContext(ctx) // a copy
	if md == nil {
		md = metadata.Metadata{}
	}
	for k := range md {
		if strings.EqualFold(k, Header) {
			delete(md, k)
		}
	}
	md[Header] = s.Sign(service, endpoint)
	return metadata.NewContext(ctx, md)
}

func mac(key []byte, caller, service, endpoint, ts string) string {
	h := hmac.New(sha256.New, key)
	for _, p := range []string{"v1", caller, service, endpoint, ts} {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// Verifier checks the credentials of calls received by one service.
type Verifier struct {
	name string
	key  []byte
	now  func() time.Time
}

// NewVerifier returns a verifier for calls to the service named name.
func NewVerifier(name string, key []byte) (*Verifier, error) {
	if err := check(name, key); err != nil {
		return nil, err
	}
	return &Verifier{name: name, key: key, now: time.Now}, nil
}

// ErrNoCredential and friends say why a credential was not accepted.
var (
	ErrNoCredential  = errors.New("svcauth: no service credential")
	ErrBadCredential = errors.New("svcauth: malformed service credential")
	ErrBadSignature  = errors.New("svcauth: service credential does not verify")
	ErrStale         = errors.New("svcauth: service credential is outside its time window")
)

// Verify checks the credential in ctx's incoming metadata for a call to
// endpoint and returns the proven caller.
func (v *Verifier) Verify(ctx context.Context, endpoint string) (string, error) {
	cred, ok := metadata.Get(ctx, Header)
	if !ok || cred == "" {
		return "", ErrNoCredential
	}
	parts := strings.Split(cred, " ")
	if len(parts) != 4 || parts[0] != "v1" || parts[1] == "" {
		return "", ErrBadCredential
	}
	caller, ts, sig := parts[1], parts[2], parts[3]
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", ErrBadCredential
	}
	if !hmac.Equal([]byte(sig), []byte(mac(v.key, caller, v.name, endpoint, ts))) {
		return "", ErrBadSignature
	}
	if d := v.now().Sub(time.Unix(sec, 0)); d > Window || d < -Window {
		return "", ErrStale
	}
	return caller, nil
}

type callerKey struct{}

// WithCaller returns ctx carrying a verified caller (the server wrapper sets it).
func WithCaller(ctx context.Context, service string) context.Context {
	return context.WithValue(ctx, callerKey{}, service)
}

// Caller returns the service that proved it made this call, or "" when the
// call carried no valid credential.
func Caller(ctx context.Context) string {
	s, _ := ctx.Value(callerKey{}).(string)
	return s
}

// Require returns nil when the call was proven to come from one of the
// services named, else a 403 go-micro error from id naming the endpoint.
func Require(ctx context.Context, id, endpoint string, services ...string) error {
	c := Caller(ctx)
	for _, s := range services {
		if c != "" && c == s {
			return nil
		}
	}
	who := "an unauthenticated caller"
	if c != "" {
		who = c
	}
	return merrors.Forbidden(id, "%s may not call %s: it is reserved to %s", who, endpoint, strings.Join(services, ", "))
}
