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
	byKey   map[string]*nodeBreaker
	gets    int
}

type nodeBreaker struct {
	cb       *gobreaker.CircuitBreaker[struct{}]
	lastUsed time.Time
}

func newBreakers(live *config.Live, m *metrics) *breakers {
	return &breakers{live: live, metrics: m, byKey: map[string]*nodeBreaker{}}
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
		b.version, b.byKey = v, map[string]*nodeBreaker{}
	}
	if b.gets++; b.gets%1024 == 0 {
		b.prune(now)
	}
	key := breakerKey(service, endpoint, nodeID)
	nb, ok := b.byKey[key]
	if !ok {
		nb = &nodeBreaker{cb: b.newBreaker(service, endpoint, nodeID)}
		b.byKey[key] = nb
	}
	nb.lastUsed = now
	return nb.cb
}

// prune forgets breakers of nodes not called for a while: instances come and
// go (every restart has a new node ID) and the map must not grow forever.
func (b *breakers) prune(now time.Time) {
	for k, nb := range b.byKey {
		if now.Sub(nb.lastUsed) > 10*time.Minute {
			delete(b.byKey, k)
		}
	}
}

// open reports whether the node's breaker is open without creating one.
func (b *breakers) open(service, endpoint, nodeID string) bool {
	b.mu.Lock()
	nb, ok := b.byKey[breakerKey(service, endpoint, nodeID)]
	b.mu.Unlock()
	return ok && nb.cb.State() == gobreaker.StateOpen
}

func (b *breakers) newBreaker(service, endpoint, nodeID string) *gobreaker.CircuitBreaker[struct{}] {
	cfg := b.live.Get()
	return gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        breakerKey(service, endpoint, nodeID),
		MaxRequests: 1, // one trial call while half-open
		Timeout:     cfg.BreakerOpenFor.D(),
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= b.live.Get().BreakerFailures
		},
		// Business answers (not found, conflict, validation) prove the node works.
		IsSuccessful: func(err error) bool { return !infraFailure(err) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			b.metrics.breakerState(service, endpoint, to)
			b.metrics.log(service, endpoint, nodeID, from, to)
		},
	})
}

// wrapCall is a go-micro CallWrapper: it runs once per attempt, on the node
// the selector chose, so each node's breaker sees only its own outcomes.
func (b *breakers) wrapCall(next client.CallFunc) client.CallFunc {
	return func(ctx context.Context, node *registry.Node, req client.Request, rsp interface{}, opts client.CallOptions) error {
		// One attempt may take RequestTimeout (or the call's own Timeout); the
		// call's deadline covers all attempts. (opts.RequestTimeout is no
		// guide: go-micro sets it to the time left for the whole call.)
		ctx, cancel := context.WithTimeout(ctx, attemptTimeout(opts.Context, b.live.Get().RequestTimeout.D()))
		defer cancel()
		cb := b.get(req.Service(), req.Endpoint(), node.Id)
		_, err := cb.Execute(func() (struct{}, error) {
			return struct{}{}, next(ctx, node, req, rsp, opts)
		})
		if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
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
		out := make([]*registry.Service, 0, len(services))
		total, kept := 0, 0
		for _, s := range services {
			cp := *s // the selector's cache owns s: never mutate it
			cp.Nodes = make([]*registry.Node, 0, len(s.Nodes))
			for _, n := range s.Nodes {
				total++
				if b.open(s.Name, endpoint, n.Id) {
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

// unavailable is the error for "service cannot answer now": 503 at the api.
func unavailable(service, why string) error {
	return merrors.New(service, fmt.Sprintf("%s is unavailable (%s)", strings.TrimPrefix(service, "marketmesh."), why), 503)
}
