package rpcclient

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
	"go-micro.dev/v4/client"
	merrors "go-micro.dev/v4/errors"
	"go-micro.dev/v4/registry"

	"github.com/marketmesh/marketmesh/plugins/config"
)

// breakers holds one circuit breaker per service, endpoint and node, so one
// bad instance is taken out of rotation without tripping the whole service.
// Breakers are rebuilt when the live configuration changes.
type breakers struct {
	live    *config.Live
	metrics *metrics

	mu      sync.Mutex
	version uint64
	byKey   map[nodeKey]*nodeBreaker
	gets    int
}

// nodeKey names one breaker: a struct, so a lookup builds no string.
type nodeKey struct{ service, endpoint, node string }

type nodeBreaker struct {
	cb       *gobreaker.CircuitBreaker[struct{}]
	lastUsed time.Time
}

func newBreakers(live *config.Live, m *metrics) *breakers {
	return &breakers{live: live, metrics: m, byKey: map[nodeKey]*nodeBreaker{}}
}

func breakerKey(service, endpoint, nodeID string) string {
	return service + "|" + endpoint + "|" + nodeID
}

// get returns the breaker for key, creating it with the current live settings.
func (b *breakers) get(service, endpoint, nodeID string) *gobreaker.CircuitBreaker[struct{}] {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if v := b.live.Version(); v != b.version {
		for k := range b.byKey {
			b.forget(k)
		}
		b.version, b.byKey = v, map[nodeKey]*nodeBreaker{}
	}
	if b.gets++; b.gets%1024 == 0 {
		b.prune(now)
	}
	key := nodeKey{service, endpoint, nodeID}
	nb, ok := b.byKey[key]
	if !ok {
		nb = &nodeBreaker{}
		nb.cb = b.newBreaker(service, endpoint, nodeID, nb)
		b.byKey[key] = nb
		b.metrics.breakerState(service, endpoint, nodeID, gobreaker.StateClosed)
	}
	nb.lastUsed = now
	return nb.cb
}

// prune forgets breakers of nodes not called for a while: instances come and
// go (every restart has a new node ID) and the map must not grow forever.
// Their metric series go with them.
func (b *breakers) prune(now time.Time) {
	for k, nb := range b.byKey {
		if now.Sub(nb.lastUsed) > 10*time.Minute {
			b.forget(k)
		}
	}
}

// forget drops the breaker of key and its metric series; b.mu is held.
func (b *breakers) forget(key nodeKey) {
	delete(b.byKey, key)
	b.metrics.forget(key.service, key.endpoint, key.node)
}

// open reports whether the node's breaker is open without creating one.
func (b *breakers) open(service, endpoint, nodeID string) bool {
	b.mu.Lock()
	nb, ok := b.byKey[nodeKey{service, endpoint, nodeID}]
	b.mu.Unlock()
	return ok && nb.cb.State() == gobreaker.StateOpen
}

func (b *breakers) newBreaker(service, endpoint, nodeID string, nb *nodeBreaker) *gobreaker.CircuitBreaker[struct{}] {
	cfg := b.live.Get()
	return gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        breakerKey(service, endpoint, nodeID),
		MaxRequests: 1, // one trial call while half-open
		Timeout:     cfg.BreakerOpenFor.D(),
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= b.live.Get().BreakerFailures
		},
		// Only failures the node caused count (see verdict); business
		// answers (not found, conflict, validation) prove the node works, and
		// attempts the caller gave up on say nothing about it.
		IsSuccessful: func(err error) bool { return verdictOf(err) != nodeFailed },
		IsExcluded:   func(err error) bool { return verdictOf(err) == callerGaveUp },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			b.mu.Lock() // gobreaker holds its own lock here; b.mu never waits on one
			defer b.mu.Unlock()
			if b.byKey[nodeKey{service, endpoint, nodeID}] != nb {
				return // a breaker dropped by a live change or prune: its series are gone
			}
			b.metrics.transition(service, endpoint, nodeID, from, to)
		},
	})
}

// verdict is what an attempt's error says about the node that handled it.
type verdict int

const (
	nodeOK       verdict = iota // an answer: the node works (a business error included)
	nodeFailed                  // the node (or the path to it) failed: counts against its breaker
	callerGaveUp                // the caller cancelled or its deadline passed: not counted at all
)

// judged carries an attempt's error through gobreaker with its verdict.
type judged struct {
	err error
	v   verdict
}

func (j judged) Error() string { return j.err.Error() }
func (j judged) Unwrap() error { return j.err }

func verdictOf(err error) verdict {
	var j judged
	if errors.As(err, &j) {
		return j.v
	}
	return nodeOK
}

// errRejected is run's answer when the node's breaker refuses the attempt.
var errRejected = errors.New("circuit open")

// run makes one attempt (fn) on nodeID through its breaker; judge says what
// a failed attempt's error says about the node. It returns fn's error, or
// errRejected when the breaker is open (or half-open with its trial call out).
func (b *breakers) run(service, endpoint, nodeID string, fn func() error, judge func(error) verdict) error {
	_, err := b.get(service, endpoint, nodeID).Execute(func() (struct{}, error) {
		if err := fn(); err != nil {
			return struct{}{}, judged{err: err, v: judge(err)}
		}
		return struct{}{}, nil
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		b.metrics.rejected(service, endpoint, nodeID)
		return errRejected
	}
	if j, ok := err.(judged); ok {
		return j.err
	}
	return err
}

// errAttemptTimeout is the cause of an attempt context that ran out of its
// own time (as opposed to the caller's context ending first).
var errAttemptTimeout = errors.New("attempt timed out")

// wrapCall is a go-micro CallWrapper: it runs once per attempt, on the node
// the selector chose, so each node's breaker sees only its own outcomes.
func (b *breakers) wrapCall(next client.CallFunc) client.CallFunc {
	return func(ctx context.Context, node *registry.Node, req client.Request, rsp interface{}, opts client.CallOptions) error {
		// One attempt may take RequestTimeout (or the call's own Timeout); the
		// call's deadline covers all attempts. (opts.RequestTimeout is no
		// guide: go-micro sets it to the time left for the whole call.)
		attempt, cancel := context.WithTimeoutCause(ctx, attemptTimeout(opts.Context, b.live.Get().RequestTimeout.D()), errAttemptTimeout)
		defer cancel()
		// Whether the caller's deadline comes first: then the attempt has no
		// timer of its own, and the node, which gets the same deadline, may
		// time out (408) just before this side notices the deadline passed.
		own, _ := attempt.Deadline()
		callers, ok := ctx.Deadline()
		callerFirst := ok && !callers.After(own)
		err := b.run(req.Service(), req.Endpoint(), node.Id, func() error {
			return next(attempt, node, req, rsp, opts)
		}, func(err error) verdict {
			switch {
			case context.Cause(attempt) == errAttemptTimeout:
				return nodeFailed // the node did not answer in the attempt's own time
			case attempt.Err() != nil, callerFirst && timedOut(err):
				return callerGaveUp // the caller's cancel or (shorter) deadline ended it
			case nodeFault(err):
				return nodeFailed
			}
			return nodeOK
		})
		if err == errRejected {
			return unavailable(req.Service(), "circuit open")
		}
		return err
	}
}

// skipOpen is a selector filter that hides nodes whose breaker is open, so
// retries and new calls go to healthy instances. It records whether it hid
// every node, which turns the call into a fast 503.
func (b *breakers) skipOpen(endpoint string, hidAll *bool) func([]*registry.Service) []*registry.Service {
	return func(services []*registry.Service) []*registry.Service {
		if !b.anyOpen(services, endpoint) {
			// The usual case: nothing to hide, and services is the selector's
			// own copy for this call, handed on as it is.
			*hidAll = false
			return services
		}
		out := make([]*registry.Service, 0, len(services))
		total, kept := 0, 0
		for _, s := range services {
			cp := *s // the selector's cache owns s: never mutate it
			cp.Nodes = make([]*registry.Node, 0, len(s.Nodes))
			for _, n := range s.Nodes {
				total++
				if b.open(s.Name, endpoint, n.Id) {
					b.metrics.rejected(s.Name, endpoint, n.Id)
					continue
				}
				kept++
				cp.Nodes = append(cp.Nodes, n)
			}
			out = append(out, &cp)
		}
		*hidAll = total > 0 && kept == 0
		return out
	}
}

// anyOpen reports whether the breaker of any of the services' nodes is open.
func (b *breakers) anyOpen(services []*registry.Service, endpoint string) bool {
	for _, s := range services {
		for _, n := range s.Nodes {
			if b.open(s.Name, endpoint, n.Id) {
				return true
			}
		}
	}
	return false
}

// infraFailure says whether err means the node (or the path to it) failed,
// as opposed to a business answer that happens to be an error.
func infraFailure(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	var me *merrors.Error
	if !errors.As(err, &me) {
		return true // transport-level error without a go-micro status
	}
	switch me.Code {
	case 408, 500, 502, 503, 504:
		return true
	}
	return me.Code == 0
}

// nodeFault says whether an attempt's error (the caller's context still
// alive, the attempt's own deadline not passed) is the node's fault, for its
// breaker:
//   - errors without a go-micro status (transport) and the client side's own
//     (Id ClientID: dial failures, connection refused or reset, gRPC
//     Unavailable or DeadlineExceeded) with an infrastructure code count;
//   - the node's own 500-class answers count (500, 502, 504; 0 is garbage),
//     except 503: services answer 503 when a dependency of theirs is
//     unavailable (they relay the client stack's 503 under their own Id), and
//     taking a healthy node out of rotation for that only moves the load;
//   - everything else (business 4xx, the node's own 408, 501) proves the node
//     answers, and counts as a success.
func nodeFault(err error) bool {
	var me *merrors.Error
	if errors.As(err, &me) && me.Id != ClientID && (me.Code == 503 || me.Code == 408) {
		return false
	}
	return infraFailure(err)
}

// timedOut reports a go-micro timeout, from either side.
func timedOut(err error) bool {
	var me *merrors.Error
	return errors.As(err, &me) && me.Code == 408
}

// unavailable is the error for "service cannot answer now": 503 at the api.
func unavailable(service, why string) error {
	return merrors.New(service, fmt.Sprintf("%s is unavailable (%s)", strings.TrimPrefix(service, "marketmesh."), why), 503)
}
