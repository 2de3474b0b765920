// Package svcauth says which marketmesh service made an RPC call and
// whether it may.
//
// The caller's identity comes from the mutual TLS handshake (plugins/meshtls:
// a certificate from Consul Connect's CA whose SPIFFE ID names the service),
// never from anything the caller writes in metadata. The server wrapper in
// plugins/service puts the proven caller into the context (WithCaller) and
// checks it against the mesh's call table (Policy, declared once in
// policy.go) before a handler runs; handlers with finer rules use Require.
package svcauth

import (
	"context"
	"strings"

	merrors "go-micro.dev/v4/errors"
)

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
