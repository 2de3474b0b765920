// Package ratelimit holds the api's abuse limits: how fast one client
// address may try passwords, create accounts and use refresh tokens,
// without letting anyone lock an account's owner out.
//
// # Logins
//
// Account lockout ("10 wrong passwords and the account is blocked") is a
// denial of service anyone can aim at anyone. Instead, three limits work
// together (the scheme OWASP recommends and Auth0's brute-force protection
// and suspicious-IP throttling implement):
//
//  1. Per client address, every attempt (PerClient a minute, default 60):
//     bounds the password hashing one client can cause and password
//     spraying across many accounts from one address.
//  2. Per (account, client address), failed attempts only
//     (PerClientAccount a minute, default 10): the guesser is slowed, the
//     owner, at another address, is not. A correct password resets it.
//  3. Per account, failed attempts from all addresses (PerAccount an hour,
//     default 100): a high threshold only a distributed attack reaches. It
//     then guards the account: a client that failed on it within Cooldown
//     (default 5 min) must wait; a client that has not failed, such as the
//     owner, still gets its attempt, and a correct password still succeeds.
//     An attack from many addresses gets one guess per address per
//     Cooldown instead of ten a minute.
//
// Only verdicts count as failures: an attempt the users service could not
// judge (it is down) is given back to the per-account limits.
//
// # Memory
//
// Every table is bounded (MaxTracked entries each, least recently used
// evicted first) and forgets entries that have refilled, so random emails
// and addresses cannot grow memory without bound. Emails are kept as 64-bit
// keyed hashes, never as the (arbitrarily long) strings sent.
package ratelimit

import (
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/marketmesh/marketmesh/api/internal/clientaddr"
)

// Limit names, for the Refused error and metrics.
const (
	LimitLoginClient        = "login_client"         // every attempt from one address
	LimitLoginClientAccount = "login_client_account" // failures on one account from one address
	LimitLoginAccount       = "login_account"        // a guarded account, to an address that failed on it
	LimitRegisterClient     = "register_client"      // sign-ups from one address
	LimitRefreshClient      = "refresh_client"       // token refreshes and logouts from one address
)

// Refused is the error of an attempt a limit refused.
type Refused struct {
	Limit      string        // which limit (Limit* constants)
	RetryAfter time.Duration // when the same attempt would pass (at least a second)
}

func (r *Refused) Error() string {
	return fmt.Sprintf("rate limited (%s): retry after %s", r.Limit, r.RetryAfter)
}

// RetryAfterSeconds is RetryAfter in whole seconds, rounded up, at least 1:
// the value of a Retry-After header.
func (r *Refused) RetryAfterSeconds() int {
	return max(1, int(math.Ceil(r.RetryAfter.Seconds())))
}

func refused(limit string, wait time.Duration) *Refused {
	return &Refused{Limit: limit, RetryAfter: max(wait, time.Second)}
}

// DefaultMaxTracked bounds each table: about 100 bytes an entry, so a few
// tens of MB at worst, reached only under a flood from many addresses.
const DefaultMaxTracked = 100_000

// LoginOptions configure Login; a zero field takes its default.
type LoginOptions struct {
	PerClient        int           // attempts a minute from one address (60)
	PerClientAccount int           // failed attempts a minute on one account from one address (10)
	PerAccount       int           // failed attempts an hour on one account before it is guarded (100)
	Cooldown         time.Duration // while guarded, the wait after a failure on it (5 min)
	MaxTracked       int           // entries per table (DefaultMaxTracked)
	Now              func() time.Time
}

func (o *LoginOptions) defaults() {
	if o.PerClient <= 0 {
		o.PerClient = 60
	}
	if o.PerClientAccount <= 0 {
		o.PerClientAccount = 10
	}
	if o.PerAccount <= 0 {
		o.PerAccount = 100
	}
	if o.Cooldown <= 0 {
		o.Cooldown = 5 * time.Minute
	}
	if o.MaxTracked <= 0 {
		o.MaxTracked = DefaultMaxTracked
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Login limits password attempts (see the package comment).
type Login struct {
	o                     LoginOptions
	client, pair, account rule
	seed                  maphash.Seed
	mu                    sync.Mutex
	clients               *table[netip.Addr, bucket]
	pairs                 *table[pairKey, pairState]
	accounts              *table[uint64, bucket]
}

type pairKey struct {
	account uint64
	client  netip.Addr
}

// pairState is one address's failures on one account.
type pairState struct {
	bucket
	lastFail time.Time
}

// NewLogin returns a login limiter.
func NewLogin(o LoginOptions) *Login {
	o.defaults()
	l := &Login{
		o:       o,
		client:  per(o.PerClient, time.Minute),
		pair:    per(o.PerClientAccount, time.Minute),
		account: per(o.PerAccount, time.Hour),
		seed:    maphash.MakeSeed(),
	}
	l.clients = newTable[netip.Addr](o.MaxTracked, func(b *bucket, now time.Time) bool { return l.client.full(b, now) })
	l.pairs = newTable[pairKey](o.MaxTracked, func(p *pairState, now time.Time) bool {
		return l.pair.full(&p.bucket, now) && now.Sub(p.lastFail) >= l.o.Cooldown
	})
	l.accounts = newTable[uint64](o.MaxTracked, func(b *bucket, now time.Time) bool { return l.account.full(b, now) })
	return l
}

// accountKey identifies an account by its email, compared case- and
// space-insensitively.
func (l *Login) accountKey(email string) uint64 {
	return maphash.String(l.seed, strings.ToLower(strings.TrimSpace(email)))
}

// Begin asks to try a password for email from client. Refused (a *Refused
// error) takes nothing from any limit; an accepted attempt must be closed
// with exactly one of Failed, Succeeded or Void.
func (l *Login) Begin(client netip.Addr, email string) (*Attempt, error) {
	now := l.o.Now()
	ck := clientaddr.Key(client)
	pk := pairKey{account: l.accountKey(email), client: ck}
	l.mu.Lock()
	defer l.mu.Unlock()

	c := l.clients.get(ck, now, func() bucket { return l.client.fresh(now) })
	l.client.fill(c, now)
	if w := l.client.wait(c); w > 0 {
		return nil, refused(LimitLoginClient, w)
	}
	p := l.pairs.get(pk, now, func() pairState { return pairState{bucket: l.pair.fresh(now)} })
	l.pair.fill(&p.bucket, now)
	if w := l.pair.wait(&p.bucket); w > 0 {
		return nil, refused(LimitLoginClientAccount, w)
	}
	a := l.accounts.get(pk.account, now, func() bucket { return l.account.fresh(now) })
	l.account.fill(a, now)
	guarded := a.tokens < 1
	if guarded && !p.lastFail.IsZero() && now.Sub(p.lastFail) < l.o.Cooldown {
		// Whichever comes first: the cooldown ends, or the account's
		// failures fall back under the threshold.
		return nil, refused(LimitLoginAccount, min(p.lastFail.Add(l.o.Cooldown).Sub(now), l.account.wait(a)))
	}
	// Taken now, not when the verdict comes: parallel guesses cannot all
	// pass the check before the first failure is counted.
	c.tokens--
	p.tokens--
	if !guarded {
		a.tokens--
	}
	return &Attempt{l: l, pair: pk, tookAccount: !guarded}, nil
}

// Attempt is a login attempt Begin accepted.
type Attempt struct {
	l           *Login
	pair        pairKey
	tookAccount bool
	done        bool
}

// Failed records wrong credentials: the tokens taken stay taken.
func (a *Attempt) Failed() {
	l := a.l
	now := l.o.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if a.close() {
		return
	}
	p := l.pairs.get(a.pair, now, func() pairState { return pairState{bucket: l.pair.fresh(now)} })
	p.lastFail = now
}

// Succeeded records correct credentials: this address's failures on the
// account are forgotten, and the account's token is given back (a login is
// not an attack on it).
func (a *Attempt) Succeeded() {
	l := a.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if a.close() {
		return
	}
	l.pairs.delete(a.pair)
	a.giveBackAccount()
}

// Void records an attempt that got no verdict (the users service failed or
// refused the input): it counts against the address's attempt rate only.
func (a *Attempt) Void() {
	l := a.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if a.close() {
		return
	}
	if p, ok := l.pairs.peek(a.pair); ok {
		l.pair.refund(&p.bucket)
	}
	a.giveBackAccount()
}

// close marks the attempt closed and reports whether it already was.
func (a *Attempt) close() bool {
	was := a.done
	a.done = true
	return was
}

func (a *Attempt) giveBackAccount() {
	if !a.tookAccount {
		return
	}
	if b, ok := a.l.accounts.peek(a.pair.account); ok {
		a.l.account.refund(b)
	}
}

// Tracked returns the entries held in each table (clients, pairs,
// accounts): what memory the limiter uses.
func (l *Login) Tracked() (clients, pairs, accounts int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.clients.len(), l.pairs.len(), l.accounts.len()
}

// PerClient limits an action (registration, token refresh) per client
// address: n per period, all of them available at once.
type PerClient struct {
	limit string
	rule  rule
	now   func() time.Time
	mu    sync.Mutex
	t     *table[netip.Addr, bucket]
}

// NewPerClient returns a limiter of n actions per period per address,
// refusing with the given limit name; maxTracked <= 0 means
// DefaultMaxTracked, a nil now time.Now.
func NewPerClient(limit string, n int, period time.Duration, maxTracked int, now func() time.Time) *PerClient {
	if maxTracked <= 0 {
		maxTracked = DefaultMaxTracked
	}
	if now == nil {
		now = time.Now
	}
	p := &PerClient{limit: limit, rule: per(n, period), now: now}
	p.t = newTable[netip.Addr](maxTracked, func(b *bucket, now time.Time) bool { return p.rule.full(b, now) })
	return p
}

// Allow takes a token for client, or returns a *Refused error.
func (p *PerClient) Allow(client netip.Addr) error {
	now := p.now()
	k := clientaddr.Key(client)
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.t.get(k, now, func() bucket { return p.rule.fresh(now) })
	p.rule.fill(b, now)
	if w := p.rule.wait(b); w > 0 {
		return refused(p.limit, w)
	}
	b.tokens--
	return nil
}

// Tracked returns the number of addresses held.
func (p *PerClient) Tracked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.t.len()
}
