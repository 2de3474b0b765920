package meshtls

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// CallerOf returns the service that the gRPC call in ctx came from, proven
// by its client certificate (the server side of ServerConfig).
func (id *Identity) CallerOf(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return "", errors.New("meshtls: the call came over no TLS connection")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", errors.New("meshtls: the call came over no TLS connection")
	}
	return id.PeerService(info.State)
}

// CallerOfHTTP is CallerOf for a request to an HTTP server using ServerConfig.
func (id *Identity) CallerOfHTTP(r *http.Request) (string, error) {
	if r.TLS == nil {
		return "", errors.New("meshtls: the request came over no TLS connection")
	}
	return id.PeerService(*r.TLS)
}

// CheckService returns the gRPC dial option that makes every call check,
// before anything of it is sent, that the connection's server proves the
// service the call is addressed to. A connection is shared by the calls to
// whatever service is registered at its address, so the handshake alone
// cannot say which service the server must be: a process registering its
// own address under another service's name gets a handshake and then no call
// (the call fails with Unauthenticated, its request never written).
func (id *Identity) CheckService() grpc.DialOption {
	return grpc.WithPerRPCCredentials(serviceCheck{id})
}

type serviceCheck struct{ id *Identity }

func (c serviceCheck) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	ri, ok := credentials.RequestInfoFromContext(ctx)
	if !ok {
		return nil, errors.New("meshtls: no request info")
	}
	info, ok := ri.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, errors.New("meshtls: the connection is not TLS")
	}
	got, err := c.id.PeerService(info.State)
	if err != nil {
		return nil, err
	}
	if want := ServiceOfMethod(ri.Method); got != want {
		return nil, &WrongServiceError{Want: want, Got: got}
	}
	return nil, nil
}

func (serviceCheck) RequireTransportSecurity() bool { return true }

// ServiceOfMethod returns the service of a go-micro gRPC method name:
// "/marketmesh.users.Users/Authenticate" is marketmesh.users.
func ServiceOfMethod(method string) string {
	m := strings.TrimPrefix(method, "/")
	if i := strings.IndexByte(m, '/'); i >= 0 {
		m = m[:i]
	}
	if i := strings.LastIndexByte(m, '.'); i >= 0 {
		return m[:i]
	}
	return ""
}
