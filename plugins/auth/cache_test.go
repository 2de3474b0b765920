package auth_test

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/plugins/auth"
)

// The verified-token cache changes no verdict: a cached token still expires
// on time, and a token that differs from a cached one in any byte is
// verified from scratch.
func TestVerifiedTokensAreCachedWithoutChangingVerdicts(t *testing.T) {
	var now atomic.Pointer[time.Time]
	t0 := time.Now().UTC().Truncate(time.Second)
	now.Store(&t0)
	clock := auth.Clock(func() time.Time { return *now.Load() })
	s := auth.NewSigner(newKey(t), auth.TTL(time.Minute), auth.Leeway(0), clock)
	tok, _, err := s.Issue("u-1", auth.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 { // the first verifies, the others hit the cache
		c, err := s.VerifyClaims(tok)
		if err != nil || c.Subject != "u-1" || !c.Has(auth.RoleAdmin) {
			t.Fatalf("VerifyClaims = %+v, %v", c, err)
		}
		c.Roles[0] = "tampered" // callers get their own copy
	}

	// Same header and signature, another payload: not the cached token.
	parts := strings.Split(tok, ".")
	forged := parts[0] + "." + strings.Replace(parts[1], parts[1][:4], "eyJz", 1) + "." + parts[2]
	if forged != tok {
		if _, err := s.VerifyClaims(forged); err == nil {
			t.Fatal("a payload changed under a cached token's signature verified")
		}
	}
	if _, err := s.VerifyClaims(tok + "x"); err == nil {
		t.Fatal("a cached token with a byte appended verified")
	}

	later := t0.Add(time.Minute)
	now.Store(&later)
	if _, err := s.VerifyClaims(tok); !errors.Is(err, auth.ErrExpired) {
		t.Fatalf("a cached token past its expiry: %v, want ErrExpired", err)
	}
}

func TestTheCacheIsBounded(t *testing.T) {
	s := auth.NewSigner(newKey(t), auth.CacheSize(3))
	var toks []string
	for i := range 5 {
		tok, _, err := s.Issue(fmt.Sprintf("u-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
		if _, err := s.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := auth.CachedTokens(s); n != 3 {
		t.Fatalf("%d tokens cached, want the bound 3", n)
	}
	for i, tok := range toks { // evicted ones verify again from scratch
		if sub, err := s.Verify(tok); err != nil || sub != fmt.Sprintf("u-%d", i) {
			t.Fatalf("Verify(token %d) = %q, %v", i, sub, err)
		}
	}
	if off := auth.NewSigner(newKey(t), auth.CacheSize(0)); auth.CachedTokens(off) != 0 {
		t.Fatal("a signer without a cache cached")
	}
}

// BenchmarkVerify compares verifying the same token on every request with
// and without the cache, and reports the ratio.
func BenchmarkVerify(b *testing.B) {
	key := newKey(b)
	cached, uncached := auth.NewSigner(key), auth.NewSigner(key, auth.CacheSize(0))
	tok, _, err := cached.Issue("u-1")
	if err != nil {
		b.Fatal(err)
	}
	run := func(s *auth.Signer, n int) time.Duration {
		start := time.Now()
		for range n {
			if _, err := s.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	b.ResetTimer()
	tUncached := run(uncached, b.N)
	tCached := run(cached, b.N)
	b.StopTimer()
	b.ReportMetric(float64(tUncached.Nanoseconds())/float64(b.N), "uncached-ns/verify")
	b.ReportMetric(float64(tCached.Nanoseconds())/float64(b.N), "cached-ns/verify")
	b.ReportMetric(float64(tUncached)/float64(tCached), "speedup")
}
