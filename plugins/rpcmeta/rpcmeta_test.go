package rpcmeta_test

import (
	"context"
	"strings"
	"testing"

	"go-micro.dev/v4/metadata"

	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
)

func TestValuesSurviveAHopWhateverTheHeaderCasing(t *testing.T) {
	ctx := rpcmeta.WithRequestID(context.Background(), "req-1")
	ctx = rpcmeta.WithCaller(ctx, "user-7")
	ctx = rpcmeta.WithIdempotencyKey(ctx, "idem-3")
	md, ok := metadata.FromContext(rpcmeta.Outgoing(ctx))
	if !ok || len(md) != 3 {
		t.Fatalf("Outgoing set metadata %v, want three keys", md)
	}

	casings := []struct {
		name string
		key  func(string) string
	}{
		{"lower-case keys as gRPC delivers them", strings.ToLower},
		{"upper-case keys", strings.ToUpper},
		{"keys as go-micro title-cases them", func(k string) string { return k }},
	}
	for _, c := range casings {
		t.Run(c.name, func(t *testing.T) {
			wire := metadata.Metadata{}
			for k, v := range md {
				wire[c.key(k)] = v
			}
			in := rpcmeta.Incoming(metadata.NewContext(context.Background(), wire))
			if got := rpcmeta.RequestID(in); got != "req-1" {
				t.Errorf("RequestID %q", got)
			}
			if got := rpcmeta.Caller(in); got != "user-7" {
				t.Errorf("Caller %q", got)
			}
			if got := rpcmeta.IdempotencyKey(in); got != "idem-3" {
				t.Errorf("IdempotencyKey %q", got)
			}
		})
	}
}

func TestOutgoingWithoutValuesAddsNothing(t *testing.T) {
	ctx := context.Background()
	if out := rpcmeta.Outgoing(ctx); out != ctx {
		t.Fatal("Outgoing changed a context without values")
	}
	if rpcmeta.RequestID(ctx) != "" || rpcmeta.Caller(ctx) != "" || rpcmeta.IdempotencyKey(ctx) != "" {
		t.Fatal("an empty context has values")
	}
}

// BenchmarkOutgoing is what every call of the api's costs in metadata.
func BenchmarkOutgoing(b *testing.B) {
	ctx := rpcmeta.WithCaller(rpcmeta.WithRequestID(context.Background(), "01HREQUEST"), "01HUSER")
	b.ReportAllocs()
	for b.Loop() {
		_ = rpcmeta.Outgoing(ctx)
	}
}
