package events

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"go-micro.dev/v4/client"
	"go-micro.dev/v4/registry"
	bolt "go.etcd.io/bbolt"
)

// RelayOptions tune a Relay.
type RelayOptions struct {
	Poll       time.Duration // how often the outbox is checked without a Notify
	Discover   time.Duration // how often subscribers are looked up in the registry
	Retention  time.Duration // how long delivered or not, events are kept
	Batch      int           // events delivered per subscriber per round
	MaxBackoff time.Duration // ceiling of the retry delay for a failing subscriber
	Prefix     string        // only services with this name prefix are considered
}

// RelayOption changes RelayOptions.
type RelayOption func(*RelayOptions)

// Poll sets the polling interval.
func Poll(d time.Duration) RelayOption { return func(o *RelayOptions) { o.Poll = d } }

// Discover sets the subscriber discovery interval.
func Discover(d time.Duration) RelayOption { return func(o *RelayOptions) { o.Discover = d } }

// Retention sets how long events stay in the outbox.
func Retention(d time.Duration) RelayOption { return func(o *RelayOptions) { o.Retention = d } }

// Relay delivers the outbox of one service to its subscribers.
type Relay struct {
	db     *bolt.DB
	client client.Client
	reg    registry.Registry
	opts   RelayOptions
	wake   chan struct{}

	mu      sync.Mutex
	backoff map[string]retryState
}

type retryState struct {
	until time.Time
	delay time.Duration
}

// NewRelay returns a relay for the outbox in db.
func NewRelay(db *bolt.DB, c client.Client, reg registry.Registry, opts ...RelayOption) *Relay {
	o := RelayOptions{
		Poll: time.Second, Discover: 5 * time.Second, Retention: 7 * 24 * time.Hour,
		// A failing subscriber is retried at least every 5 s: one RPC per
		// subscriber costs little, and a recovered one is served promptly.
		Batch: 100, MaxBackoff: 5 * time.Second, Prefix: "marketmesh.",
	}
	for _, opt := range opts {
		opt(&o)
	}
	return &Relay{db: db, client: c, reg: reg, opts: o, wake: make(chan struct{}, 1), backoff: map[string]retryState{}}
}

// Notify asks the relay to look at the outbox now.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends.
func (r *Relay) Run(ctx context.Context) {
	poll := time.NewTicker(r.opts.Poll)
	defer poll.Stop()
	var subs map[string][]string // service → topics
	var discovered, pruned time.Time
	for {
		now := time.Now()
		if subs == nil || now.Sub(discovered) >= r.opts.Discover {
			if s, err := r.subscribers(); err == nil {
				subs, discovered = s, now
			} else {
				slog.Debug("events: subscriber discovery failed", "err", err)
			}
		}
		for svc, topics := range subs {
			r.deliver(ctx, svc, topics)
		}
		if now.Sub(pruned) >= time.Minute {
			r.prune(now)
			pruned = now
		}
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		case <-r.wake:
		}
	}
}

// subscribers reads every marketmesh service's node metadata for topics.
func (r *Relay) subscribers() (map[string][]string, error) {
	list, err := r.reg.ListServices()
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, s := range list {
		if !strings.HasPrefix(s.Name, r.opts.Prefix) {
			continue
		}
		full, err := r.reg.GetService(s.Name)
		if err != nil {
			continue
		}
		for _, v := range full {
			for _, n := range v.Nodes {
				for _, t := range strings.Split(n.Metadata[SubscribesKey], ",") {
					if t = strings.TrimSpace(t); t != "" && !slices.Contains(out[s.Name], t) {
						out[s.Name] = append(out[s.Name], t)
					}
				}
			}
		}
	}
	return out, nil
}

// deliver sends the next batch of events for svc, stopping at the first
// failure so each subscriber sees its topics in order.
func (r *Relay) deliver(ctx context.Context, svc string, topics []string) {
	r.mu.Lock()
	st := r.backoff[svc]
	r.mu.Unlock()
	if time.Now().Before(st.until) {
		return
	}
	cursor, batch, err := r.pending(svc, topics)
	if err != nil {
		slog.Error("events: read outbox", "err", err)
		return
	}
	delivered := cursor
	var failure error
	for _, ev := range batch.events {
		var ack Ack
		req := r.client.NewRequest(svc, Endpoint, ev)
		if err := r.client.Call(ctx, req, &ack); err != nil {
			failure = err
			break
		}
		delivered = ev.ID
	}
	if failure == nil && batch.skipTo > delivered {
		delivered = batch.skipTo // events of other topics after the last delivered one
	}
	if delivered != cursor {
		if err := r.setCursor(svc, delivered); err != nil {
			slog.Error("events: save cursor", "subscriber", svc, "err", err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if failure == nil {
		delete(r.backoff, svc)
		return
	}
	st.delay = min(max(2*st.delay, 250*time.Millisecond), r.opts.MaxBackoff)
	st.until = time.Now().Add(st.delay)
	r.backoff[svc] = st
	slog.Warn("events: delivery failed, will retry", "subscriber", svc, "retry_in", st.delay.String(), "err", failure)
}

type pendingBatch struct {
	events []Event
	skipTo string // last outbox key scanned when the batch holds every match
}

func (r *Relay) pending(svc string, topics []string) (string, pendingBatch, error) {
	var cursor string
	var batch pendingBatch
	err := r.db.View(func(tx *bolt.Tx) error {
		cursor = string(tx.Bucket(cursorBucket).Get([]byte(svc)))
		c := tx.Bucket(outboxBucket).Cursor()
		k, v := c.First()
		if cursor != "" {
			k, v = c.Seek([]byte(cursor))
			if k != nil && bytes.Equal(k, []byte(cursor)) {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			if len(batch.events) == r.opts.Batch {
				return nil
			}
			var ev Event
			if err := json.Unmarshal(v, &ev); err != nil {
				slog.Error("events: skipping unreadable outbox entry", "key", string(k), "err", err)
				continue
			}
			if slices.Contains(topics, ev.Topic) {
				batch.events = append(batch.events, ev)
			}
			batch.skipTo = string(k)
		}
		return nil
	})
	return cursor, batch, err
}

func (r *Relay) setCursor(svc, id string) error {
	// A lost cursor update only means a redelivery, which the inbox absorbs,
	// so cursor writes can share fsyncs through Batch.
	return r.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(cursorBucket).Put([]byte(svc), []byte(id))
	})
}

// prune drops events older than the retention period.
func (r *Relay) prune(now time.Time) {
	limit := ulid.MustNew(ulid.Timestamp(now.Add(-r.opts.Retention)), nil).String()
	err := r.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(outboxBucket).Cursor()
		for k, _ := c.First(); k != nil && string(k) < limit; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		slog.Error("events: prune outbox", "err", err)
	}
}
