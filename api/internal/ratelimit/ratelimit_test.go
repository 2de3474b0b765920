package ratelimit_test

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/api/internal/ratelimit"
)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var (
	attacker = netip.MustParseAddr("198.51.100.7")
	owner    = netip.MustParseAddr("203.0.113.9")
)

// addr returns a distinct IPv4 address for i.
func addr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// fail makes one attempt that the users service judges wrong.
func fail(t *testing.T, l *ratelimit.Login, client netip.Addr, email string) {
	t.Helper()
	a, err := l.Begin(client, email)
	if err != nil {
		t.Fatalf("attempt from %v on %s refused: %v", client, email, err)
	}
	a.Failed()
}

// refusedBy checks that err is a refusal by limit and returns it.
func refusedBy(t *testing.T, err error, limit string) *ratelimit.Refused {
	t.Helper()
	var r *ratelimit.Refused
	if !errors.As(err, &r) {
		t.Fatalf("err = %v, want a refusal by %s", err, limit)
	}
	if r.Limit != limit {
		t.Fatalf("refused by %s, want %s", r.Limit, limit)
	}
	if r.RetryAfter < time.Second || r.RetryAfterSeconds() < 1 {
		t.Fatalf("RetryAfter = %v (%d s), want at least a second", r.RetryAfter, r.RetryAfterSeconds())
	}
	return r
}

func TestAGuesserDoesNotLockTheOwnerOut(t *testing.T) {
	c := newClock()
	l := ratelimit.NewLogin(ratelimit.LoginOptions{PerClientAccount: 10, Now: c.Now})
	for range 10 {
		fail(t, l, attacker, "ada@example.com")
	}
	_, err := l.Begin(attacker, "ada@example.com")
	r := refusedBy(t, err, ratelimit.LimitLoginClientAccount)
	if r.RetryAfter > 6*time.Second {
		t.Errorf("RetryAfter = %v, want at most one refill (6 s at 10 a minute)", r.RetryAfter)
	}

	a, err := l.Begin(owner, "ada@example.com")
	if err != nil {
		t.Fatalf("the owner, at another address, was refused: %v", err)
	}
	a.Succeeded()

	t.Run("the email is matched case- and space-insensitively", func(t *testing.T) {
		_, err := l.Begin(attacker, "  ADA@Example.com ")
		refusedBy(t, err, ratelimit.LimitLoginClientAccount)
	})
	t.Run("another account from the same address still passes", func(t *testing.T) {
		fail(t, l, attacker, "bob@example.com")
	})
	t.Run("the guesser gets one more try per refill", func(t *testing.T) {
		c.advance(6 * time.Second)
		fail(t, l, attacker, "ada@example.com")
		_, err := l.Begin(attacker, "ada@example.com")
		refusedBy(t, err, ratelimit.LimitLoginClientAccount)
	})
}

func TestACorrectPasswordForgetsThatAddressesFailures(t *testing.T) {
	c := newClock()
	l := ratelimit.NewLogin(ratelimit.LoginOptions{PerClientAccount: 3, Now: c.Now})
	for range 2 {
		fail(t, l, owner, "ada@example.com") // typos
	}
	a, err := l.Begin(owner, "ada@example.com")
	if err != nil {
		t.Fatal(err)
	}
	a.Succeeded()
	for range 3 {
		fail(t, l, owner, "ada@example.com") // a full allowance again
	}
	_, err = l.Begin(owner, "ada@example.com")
	refusedBy(t, err, ratelimit.LimitLoginClientAccount)
}

func TestAGuardedAccountStillLetsTheOwnerIn(t *testing.T) {
	c := newClock()
	l := ratelimit.NewLogin(ratelimit.LoginOptions{PerClientAccount: 10, PerAccount: 5, Cooldown: 5 * time.Minute, Now: c.Now})
	// A distributed attack: five addresses, one failure each, reach the threshold.
	for i := range 5 {
		fail(t, l, addr(i), "ada@example.com")
	}
	_, err := l.Begin(addr(0), "ada@example.com")
	r := refusedBy(t, err, ratelimit.LimitLoginAccount)
	if r.RetryAfter > 5*time.Minute {
		t.Errorf("RetryAfter = %v, want at most the cooldown", r.RetryAfter)
	}

	a, err := l.Begin(owner, "ada@example.com")
	if err != nil {
		t.Fatalf("the owner, who never failed, was refused on a guarded account: %v", err)
	}
	a.Succeeded()

	t.Run("a fresh attacking address gets a single guess", func(t *testing.T) {
		fail(t, l, addr(99), "ada@example.com")
		_, err := l.Begin(addr(99), "ada@example.com")
		refusedBy(t, err, ratelimit.LimitLoginAccount)
	})
	t.Run("other accounts are not guarded", func(t *testing.T) {
		fail(t, l, addr(0), "bob@example.com")
	})
	t.Run("after the cooldown a failing address may try again", func(t *testing.T) {
		c.advance(5 * time.Minute)
		fail(t, l, addr(0), "ada@example.com")
		_, err := l.Begin(addr(0), "ada@example.com")
		refusedBy(t, err, ratelimit.LimitLoginAccount)
	})
	t.Run("the guard lifts once failures fall under the threshold", func(t *testing.T) {
		c.advance(time.Hour) // refilled
		for range 3 {
			fail(t, l, addr(0), "ada@example.com")
		}
	})
}

func TestEveryAttemptCountsPerAddress(t *testing.T) {
	c := newClock()
	l := ratelimit.NewLogin(ratelimit.LoginOptions{PerClient: 3, Now: c.Now})
	for i := range 3 {
		a, err := l.Begin(attacker, fmt.Sprintf("user%d@example.com", i))
		if err != nil {
			t.Fatal(err)
		}
		a.Succeeded() // even correct passwords: the limit bounds hashing per address
	}
	_, err := l.Begin(attacker, "user9@example.com")
	r := refusedBy(t, err, ratelimit.LimitLoginClient)
	if r.RetryAfter > 20*time.Second {
		t.Errorf("RetryAfter = %v, want at most 20 s (3 a minute)", r.RetryAfter)
	}
	if _, err := l.Begin(owner, "user9@example.com"); err != nil {
		t.Errorf("another address: %v", err)
	}
}

func TestARefusedAttemptTakesNothing(t *testing.T) {
	c := newClock()
	l := ratelimit.NewLogin(ratelimit.LoginOptions{PerClient: 5, PerClientAccount: 3, Now: c.Now})
	for range 3 {
		fail(t, l, attacker, "ada@example.com") // 3 of 5 address tokens used
	}
	for range 3 {
		_, err := l.Begin(attacker, "ada@example.com")
		refusedBy(t, err, ratelimit.LimitLoginClientAccount)
	}
	// Had the refused attempts taken address tokens, these would be refused.
	fail(t, l, attacker, "bob@example.com")
	fail(t, l, attacker, "cy@example.com")
	_, err := l.Begin(attacker, "dee@example.com")
	refusedBy(t, err, ratelimit.LimitLoginClient)
}

func TestAnAttemptWithoutVerdictCountsOnlyPerAddress(t *testing.T) {
	c := newClock()
	l := ratelimit.NewLogin(ratelimit.LoginOptions{PerClient: 6, PerClientAccount: 2, PerAccount: 2, Now: c.Now})
	for range 5 {
		a, err := l.Begin(owner, "ada@example.com")
		if err != nil {
			t.Fatalf("the users service was down, and that counted as a failure: %v", err)
		}
		a.Void()
	}
	fail(t, l, owner, "ada@example.com") // the sixth attempt from the address
	_, err := l.Begin(owner, "ada@example.com")
	refusedBy(t, err, ratelimit.LimitLoginClient)
}

func TestParallelGuessesCannotOutrunTheLimit(t *testing.T) {
	c := newClock()
	l := ratelimit.NewLogin(ratelimit.LoginOptions{PerClientAccount: 3, Now: c.Now})
	var mu sync.Mutex
	accepted := 0
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := l.Begin(attacker, "ada@example.com"); err == nil {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if accepted != 3 {
		t.Errorf("%d of 20 parallel attempts accepted before any verdict, want 3", accepted)
	}
}

func TestClosingAnAttemptTwiceCountsOnce(t *testing.T) {
	c := newClock()
	l := ratelimit.NewLogin(ratelimit.LoginOptions{PerClientAccount: 2, Now: c.Now})
	a, _ := l.Begin(owner, "ada@example.com")
	a.Failed()
	a.Void() // no refund after the verdict
	a.Succeeded()
	b, _ := l.Begin(owner, "ada@example.com")
	b.Failed()
	_, err := l.Begin(owner, "ada@example.com")
	refusedBy(t, err, ratelimit.LimitLoginClientAccount)
}

func TestOneIPv6HostIsOneClient(t *testing.T) {
	c := newClock()
	l := ratelimit.NewLogin(ratelimit.LoginOptions{PerClientAccount: 2, Now: c.Now})
	fail(t, l, netip.MustParseAddr("2001:db8:1:2::1"), "ada@example.com")
	fail(t, l, netip.MustParseAddr("2001:db8:1:2::2"), "ada@example.com")
	_, err := l.Begin(netip.MustParseAddr("2001:db8:1:2:ffff::3"), "ada@example.com")
	refusedBy(t, err, ratelimit.LimitLoginClientAccount)
	fail(t, l, netip.MustParseAddr("2001:db8:1:3::1"), "ada@example.com") // another /64
}

func TestMemoryIsBounded(t *testing.T) {
	c := newClock()
	const maxTracked = 100
	l := ratelimit.NewLogin(ratelimit.LoginOptions{MaxTracked: maxTracked, Now: c.Now})
	reg := ratelimit.NewPerClient(ratelimit.LimitRegisterClient, 20, time.Hour, maxTracked, c.Now)
	for i := range 10_000 {
		if a, err := l.Begin(addr(i), fmt.Sprintf("random-%d@example.com", i)); err == nil {
			a.Failed()
		}
		_ = reg.Allow(addr(i))
	}
	clients, pairs, accounts := l.Tracked()
	if clients > maxTracked || pairs > maxTracked || accounts > maxTracked || reg.Tracked() > maxTracked {
		t.Errorf("tracked clients %d, pairs %d, accounts %d, registrations %d; want each at most %d",
			clients, pairs, accounts, reg.Tracked(), maxTracked)
	}

	t.Run("entries that refilled are forgotten as new traffic comes", func(t *testing.T) {
		c.advance(2 * time.Hour) // every bucket full, every cooldown over
		for i := range 10 {
			if a, err := l.Begin(owner, fmt.Sprintf("late-%d@example.com", i)); err == nil {
				a.Succeeded()
			}
		}
		clients, _, accounts := l.Tracked()
		if clients >= maxTracked || accounts >= maxTracked {
			t.Errorf("tracked clients %d, accounts %d: idle entries were kept", clients, accounts)
		}
	})
}

func TestRegistrationsPerAddress(t *testing.T) {
	c := newClock()
	reg := ratelimit.NewPerClient(ratelimit.LimitRegisterClient, 3, time.Hour, 0, c.Now)
	for i := range 3 {
		if err := reg.Allow(attacker); err != nil {
			t.Fatalf("sign-up %d: %v", i+1, err)
		}
	}
	r := refusedBy(t, reg.Allow(attacker), ratelimit.LimitRegisterClient)
	if r.RetryAfter > 20*time.Minute {
		t.Errorf("RetryAfter = %v, want at most 20 min (3 an hour)", r.RetryAfter)
	}
	if err := reg.Allow(owner); err != nil {
		t.Errorf("another address: %v", err)
	}
	c.advance(20 * time.Minute)
	if err := reg.Allow(attacker); err != nil {
		t.Errorf("after a refill: %v", err)
	}
}
