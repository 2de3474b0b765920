package svcauth

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	merrors "go-micro.dev/v4/errors"
	"go-micro.dev/v4/metadata"
)

func key(t *testing.T) []byte {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// received turns a credential into the incoming metadata a callee sees.
func received(cred string) context.Context {
	return metadata.NewContext(context.Background(), metadata.Metadata{Header: cred})
}

func TestACredentialProvesItsCallerToItsCalleeOnly(t *testing.T) {
	k := key(t)
	s, err := NewSigner("marketmesh.orders", k)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewVerifier("marketmesh.publications", k)
	cred := s.Sign("marketmesh.publications", "Publications.Reserve")

	if got, err := v.Verify(received(cred), "Publications.Reserve"); err != nil || got != "marketmesh.orders" {
		t.Fatalf("Verify = %q, %v; want marketmesh.orders", got, err)
	}
	// The same credential replayed against another endpoint or callee fails.
	if _, err := v.Verify(received(cred), "Publications.Restock"); !errors.Is(err, ErrBadSignature) {
		t.Errorf("other endpoint: %v, want ErrBadSignature", err)
	}
	other, _ := NewVerifier("marketmesh.users", k)
	if _, err := other.Verify(received(cred), "Publications.Reserve"); !errors.Is(err, ErrBadSignature) {
		t.Errorf("other callee: %v, want ErrBadSignature", err)
	}
	// Claiming another name without the key fails.
	forged := "v1 marketmesh.orders " + cred[len("v1 marketmesh.orders "):len("v1 marketmesh.orders ")+10] + " AAAA"
	if _, err := v.Verify(received(forged), "Publications.Reserve"); err == nil {
		t.Error("a forged credential verified")
	}
	// Another key (another mesh) fails.
	v2, _ := NewVerifier("marketmesh.publications", key(t))
	if _, err := v2.Verify(received(cred), "Publications.Reserve"); !errors.Is(err, ErrBadSignature) {
		t.Errorf("other key: %v, want ErrBadSignature", err)
	}
}

func TestMissingMalformedAndStaleCredentials(t *testing.T) {
	k := key(t)
	v, _ := NewVerifier("marketmesh.publications", k)
	if _, err := v.Verify(context.Background(), "E.P"); !errors.Is(err, ErrNoCredential) {
		t.Errorf("none: %v", err)
	}
	for _, bad := range []string{"x", "v1 a b", "v2 a 1 sig", "v1  1 sig", "v1 a notanumber sig"} {
		if _, err := v.Verify(received(bad), "E.P"); !errors.Is(err, ErrBadCredential) {
			t.Errorf("%q: %v, want ErrBadCredential", bad, err)
		}
	}
	s, _ := NewSigner("marketmesh.orders", k)
	s.now = func() time.Time { return time.Now().Add(-Window - time.Minute) }
	if _, err := v.Verify(received(s.Sign("marketmesh.publications", "E.P")), "E.P"); !errors.Is(err, ErrStale) {
		t.Errorf("stale: %v, want ErrStale", err)
	}
}

func TestOutgoingKeepsOtherMetadata(t *testing.T) {
	k := key(t)
	s, _ := NewSigner("marketmesh.orders", k)
	ctx := metadata.NewContext(context.Background(), metadata.Metadata{"x-request-id": "r1"})
	ctx = s.Outgoing(ctx, "marketmesh.publications", "Publications.Commit")
	rid, _ := metadata.Get(ctx, "x-request-id")
	cred, _ := metadata.Get(ctx, Header)
	if rid != "r1" || cred == "" {
		t.Fatalf("request id %q, credential %q", rid, cred)
	}
}

func TestAnIncomingCredentialIsNeverForwarded(t *testing.T) {
	k := key(t)
	api, _ := NewSigner("marketmesh.api", k)
	pubs, _ := NewSigner("marketmesh.publications", k)
	// What publications' handler context holds: the api's credential, as
	// go-micro's server hands it over (capitalized).
	in := metadata.NewContext(context.Background(), metadata.Metadata{"X-Service-Auth": api.Sign("marketmesh.publications", "Publications.Create")})
	out := pubs.Outgoing(in, "marketmesh.products", "Products.Get")
	md, _ := metadata.FromContext(out)
	n := 0
	for k := range md {
		if strings.EqualFold(k, Header) {
			n++
		}
	}
	v, _ := NewVerifier("marketmesh.products", k)
	caller, err := v.Verify(out, "Products.Get")
	if n != 1 || err != nil || caller != "marketmesh.publications" {
		t.Fatalf("%d credentials, caller %q, %v", n, caller, err)
	}
	if old, _ := metadata.Get(in, Header); old == "" {
		t.Fatal("Outgoing changed the incoming metadata")
	}
}

func TestRequire(t *testing.T) {
	ctx := WithCaller(context.Background(), "marketmesh.orders")
	if err := Require(ctx, "marketmesh.publications", "Publications.Reserve", "marketmesh.orders"); err != nil {
		t.Fatalf("orders refused: %v", err)
	}
	for _, c := range []context.Context{context.Background(), WithCaller(context.Background(), "marketmesh.api")} {
		err := Require(c, "marketmesh.publications", "Publications.Reserve", "marketmesh.orders")
		var me *merrors.Error
		if !errors.As(err, &me) || me.Code != http.StatusForbidden {
			t.Errorf("Require = %v, want 403", err)
		}
	}
}

func TestKeysShorterThan32BytesAreRefused(t *testing.T) {
	if _, err := NewSigner("marketmesh.orders", make([]byte, 16)); err == nil {
		t.Error("NewSigner took a 16-byte key")
	}
	if _, err := NewVerifier("marketmesh.orders", make([]byte, 16)); err == nil {
		t.Error("NewVerifier took a 16-byte key")
	}
}
