// Package rpcmeta carries the request ID, the caller's identity and
// idempotency keys from the api through every RPC hop: in context values
// inside a process and in go-micro metadata between processes.
//
// Services trust the caller identity they receive: only the api, which
// verified the JWT, sets it. The RPC network is internal to the mesh.
package rpcmeta

import (
	"context"
	"strings"
	"unicode"

	"go-micro.dev/v4/metadata"
)

// Metadata keys on the wire (lower case: gRPC lower-cases header names).
const (
	RequestIDKey      = "x-request-id"
	CallerKey         = "x-caller-id"
	IdempotencyKeyKey = "idempotency-key"
)

type ctxKey int

const (
	requestIDCtx ctxKey = iota
	callerCtx
	idempotencyCtx
)

// WithRequestID returns ctx carrying the request ID.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDCtx, id)
}

// RequestID returns the request ID of ctx, or "".
func RequestID(ctx context.Context) string { return value(ctx, requestIDCtx, RequestIDKey) }

// WithCaller returns ctx acting on behalf of the authenticated user id.
func WithCaller(ctx context.Context, userID string) context.Context {
	return context.WithValue(ctx, callerCtx, userID)
}

// Caller returns the authenticated user the call acts for, or "" for anonymous calls.
func Caller(ctx context.Context) string { return value(ctx, callerCtx, CallerKey) }

// WithIdempotencyKey returns ctx whose writes carry key.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idempotencyCtx, key)
}

// IdempotencyKey returns the idempotency key of ctx, or "".
func IdempotencyKey(ctx context.Context) string { return value(ctx, idempotencyCtx, IdempotencyKeyKey) }

// Outgoing copies the context values into go-micro metadata for the next hop.
func Outgoing(ctx context.Context) context.Context {
	id, caller, key := RequestID(ctx), Caller(ctx), IdempotencyKey(ctx)
	if id == "" && caller == "" && key == "" {
		return ctx
	}
	md := make(metadata.Metadata, 3)
	if id != "" {
		md[RequestIDKey] = id
	}
	if caller != "" {
		md[CallerKey] = caller
	}
	if key != "" {
		md[IdempotencyKeyKey] = key
	}
	return metadata.MergeContext(ctx, md, true)
}

// Incoming lifts the metadata of a received call into context values.
func Incoming(ctx context.Context) context.Context {
	md, ok := metadata.FromContext(ctx)
	if !ok {
		return ctx
	}
	if v := lookup(md, RequestIDKey); v != "" {
		ctx = WithRequestID(ctx, v)
	}
	if v := lookup(md, CallerKey); v != "" {
		ctx = WithCaller(ctx, v)
	}
	if v := lookup(md, IdempotencyKeyKey); v != "" {
		ctx = WithIdempotencyKey(ctx, v)
	}
	return ctx
}

func value(ctx context.Context, k ctxKey, mdKey string) string {
	if v, ok := ctx.Value(k).(string); ok {
		return v
	}
	if md, ok := metadata.FromContext(ctx); ok {
		return lookup(md, mdKey)
	}
	return ""
}

// lookup is case-insensitive: transports differ in how they case header names.
func lookup(md metadata.Metadata, key string) string {
	for k, v := range md {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// RequestIDHeader carries the request ID over HTTP, in and out of the api.
const RequestIDHeader = "X-Request-Id"

// ValidRequestID reports whether a request ID received from outside may be
// kept: 1..128 printable ASCII characters without spaces (it ends up in logs
// and headers).
func ValidRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if c > unicode.MaxASCII || !unicode.IsPrint(c) || c == ' ' {
			return false
		}
	}
	return true
}
