package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go-micro.dev/v4/client"
	merrors "go-micro.dev/v4/errors"
	"go-micro.dev/v4/registry"
	"go-micro.dev/v4/registry/cache"
	bolt "go.etcd.io/bbolt"
)

// RelayOptions tune a Relay.
type RelayOptions struct {
	Poll        time.Duration         // how often the outbox is checked without a Notify
	Discover    time.Duration         // how often the registry is asked which services exist
	Retention   time.Duration         // events acknowledged by every subscriber are kept at least this long
	Batch       int                   // events delivered per subscriber per round
	MaxBackoff  time.Duration         // ceiling of the retry delay for a failing subscriber
	MaxAttempts int                   // refusals of one event by one subscriber before it becomes a dead letter
	Prefix      string                // only services with this name prefix are considered
	Metrics     prometheus.Registerer // where the relay's collectors are registered
}

// RelayOption changes RelayOptions.
type RelayOption func(*RelayOptions)

// Poll sets the polling interval.
func Poll(d time.Duration) RelayOption { return func(o *RelayOptions) { o.Poll = d } }

// Discover sets how often the relay asks the registry which services exist
// (default 10 s: one Consul request; a service that appears is served within
// that). What those services subscribe to is followed between
// times by a watched cache of the registry, as the RPC client does.
func Discover(d time.Duration) RelayOption { return func(o *RelayOptions) { o.Discover = d } }

// Retention sets how long acknowledged events stay in the outbox.
func Retention(d time.Duration) RelayOption { return func(o *RelayOptions) { o.Retention = d } }

// MaxBackoff sets the ceiling of the retry delay for a failing subscriber.
func MaxBackoff(d time.Duration) RelayOption { return func(o *RelayOptions) { o.MaxBackoff = d } }

// MaxAttempts sets how many times in a row a subscriber may refuse an event
// before the relay records it as a dead letter and moves on (default 10).
func MaxAttempts(n int) RelayOption { return func(o *RelayOptions) { o.MaxAttempts = max(n, 1) } }

// Metrics sets where the relay's Prometheus collectors are registered
// (default: prometheus.DefaultRegisterer).
func Metrics(reg prometheus.Registerer) RelayOption {
	return func(o *RelayOptions) { o.Metrics = reg }
}

// DeadLetter is an event a subscriber refused MaxAttempts times in a row.
// The relay moved that subscriber's cursor past it; Relay.Replay delivers it
// again.
type DeadLetter struct {
	Subscriber string    `json:"subscriber"`
	Seq        uint64    `json:"seq"` // the event's outbox sequence
	Event      Event     `json:"event"`
	Attempts   int       `json:"attempts"`
	LastError  string    `json:"last_error"`
	Time       time.Time `json:"time"` // when it became a dead letter
}

// Relay delivers the outbox of one service to its subscribers.
type Relay struct {
	db     *bolt.DB
	client client.Client
	reg    registry.Registry
	// cache answers GetService from memory, kept current by a watch per
	// service (Consul blocking queries): looking subscribers up costs no
	// Consul request (README "Performance").
	cache   cache.Cache
	opts    RelayOptions
	wake    chan struct{}
	metrics *relayMetrics

	mu       sync.Mutex
	backoff  map[string]retryState
	refusals map[string]refusal // subscriber → refusals of its next event
}

type retryState struct {
	until time.Time
	delay time.Duration
}

// refusal counts consecutive refusals of one event by one subscriber. It
// lives in memory: a restart gives the event MaxAttempts more tries.
type refusal struct {
	seq      uint64
	attempts int
}

// subscriber is what the registry says about one subscribing service.
type subscriber struct {
	topics []string
	// since, when set, starts a subscriber new to this relay at the first
	// event that happened at or after it (FromLatest); zero: every retained event.
	since time.Time
}

// NewRelay returns a relay for the outbox in db.
func NewRelay(db *bolt.DB, c client.Client, reg registry.Registry, opts ...RelayOption) *Relay {
	o := RelayOptions{
		Poll: time.Second, Discover: 10 * time.Second, Retention: 7 * 24 * time.Hour,
		// A failing subscriber is retried at least every 5 s: one RPC per
		// subscriber costs little, and a recovered one is served promptly.
		Batch: 100, MaxBackoff: 5 * time.Second, MaxAttempts: 10, Prefix: "marketmesh.",
		Metrics: prometheus.DefaultRegisterer,
	}
	for _, opt := range opts {
		opt(&o)
	}
	return &Relay{
		db: db, client: c, reg: reg, opts: o, cache: cache.New(reg, cache.WithTTL(cacheTTL)), wake: make(chan struct{}, 1), metrics: newRelayMetrics(o.Metrics),
		backoff: map[string]retryState{}, refusals: map[string]refusal{},
	}
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
	defer r.cache.Stop()
	var subs map[string]subscriber
	var names []string
	var listed, looked, pruned time.Time
	r.countDeadLetters()
	for {
		now := time.Now()
		if names == nil || now.Sub(listed) >= r.opts.Discover {
			if n, err := r.services(); err == nil {
				names, listed = n, now
			} else {
				slog.Debug("events: listing services failed", "err", err)
			}
		}
		if subs == nil || now.Sub(looked) >= min(time.Second, r.opts.Discover) {
			s := r.subscribers(names)
			r.metrics.forget(subs, s)
			subs, looked = s, now
		}
		more := false
		for svc, sub := range subs {
			more = r.deliver(ctx, svc, sub) || more
		}
		if now.Sub(pruned) >= time.Minute {
			r.prune(now)
			pruned = now
		}
		if more && ctx.Err() == nil {
			continue // a backlog: the next batch at once, not after a poll
		}
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		case <-r.wake:
		}
	}
}

// cacheTTL is how long the relay's registry cache trusts an entry without
// a watch event.
const cacheTTL = 10 * time.Minute

// services lists the names of the services with the relay's prefix.
func (r *Relay) services() ([]string, error) {
	list, err := r.reg.ListServices()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range list {
		if strings.HasPrefix(s.Name, r.opts.Prefix) && !slices.Contains(names, s.Name) {
			names = append(names, s.Name)
		}
	}
	return names, nil
}

// subscribers reads the node metadata of the named services for topics. A
// service starts from the latest event only if all its nodes ask for it.
func (r *Relay) subscribers(names []string) map[string]subscriber {
	out := map[string]subscriber{}
	for _, name := range names {
		full, err := r.cache.GetService(name)
		if err != nil {
			continue
		}
		sub, nodes, oldest := subscriber{}, 0, false
		for _, v := range full {
			for _, n := range v.Nodes {
				var topics int
				for _, t := range strings.Split(n.Metadata[SubscribesKey], ",") {
					if t = strings.TrimSpace(t); t != "" {
						topics++
						if !slices.Contains(sub.topics, t) {
							sub.topics = append(sub.topics, t)
						}
					}
				}
				if topics > 0 {
					nodes++
					since, ok := parseSince(n.Metadata[SubscribesFromKey])
					switch {
					case !ok:
						oldest = true
					case sub.since.IsZero() || since.Before(sub.since):
						sub.since = since
					}
				}
			}
		}
		if oldest {
			sub.since = time.Time{}
		}
		if nodes > 0 {
			out[name] = sub
		}
	}
	return out
}

// deliver sends the next batch of events for svc, stopping at the first
// failure so each subscriber sees its topics in order. An event refused
// MaxAttempts times in a row becomes a dead letter and the batch goes on.
// It reports whether a full batch went through and more events wait.
func (r *Relay) deliver(ctx context.Context, svc string, sub subscriber) (more bool) {
	r.mu.Lock()
	st := r.backoff[svc]
	r.mu.Unlock()
	if now := time.Now(); now.Before(st.until) {
		r.metrics.refreshLag(svc, now)
		return false
	}
	batch, err := r.pending(svc, sub)
	if err != nil {
		slog.Error("events: read outbox", "err", err)
		return false
	}
	delivered := batch.cursor
	var failure error
	oldest := batch.next // the first event after a full batch; zero otherwise
	for _, e := range batch.events {
		if err := r.send(ctx, svc, e.seq, e.ev); err != nil {
			if !r.refused(svc, e, err) {
				failure, oldest = err, e.ev.Time
				break
			}
		}
		r.forgetRefusals(svc)
		delivered = e.seq
	}
	if failure == nil && batch.scanned > delivered {
		delivered = batch.scanned // events of other topics after the last delivered one
	}
	if delivered != batch.cursor {
		if err := r.setCursor(svc, delivered); err != nil {
			slog.Error("events: save cursor", "subscriber", svc, "err", err)
		}
	}
	r.metrics.observe(svc, batch.last-min(delivered, batch.last), oldest, time.Now())
	r.mu.Lock()
	defer r.mu.Unlock()
	if failure == nil {
		delete(r.backoff, svc)
		return !batch.next.IsZero()
	}
	st.delay = min(max(2*st.delay, 250*time.Millisecond), r.opts.MaxBackoff)
	st.until = time.Now().Add(st.delay)
	r.backoff[svc] = st
	slog.Warn("events: delivery failed, will retry", "subscriber", svc, "retry_in", st.delay.String(), "err", failure)
	return false
}

// send delivers one event to svc and counts the result.
func (r *Relay) send(ctx context.Context, svc string, seq uint64, ev Event) error {
	ev.Seq = seq
	var ack Ack
	err := r.client.Call(ctx, r.client.NewRequest(svc, Endpoint, &ev), &ack)
	result := "ok"
	switch {
	case err == nil && ack.Duplicate:
		result = "duplicate"
	case err != nil && refusal503(err):
		result = "unavailable"
	case err != nil:
		result = "refused"
	}
	r.metrics.deliveries.WithLabelValues(svc, result).Inc()
	return err
}

// refusal503 says whether err means the subscriber could not be reached or
// could not answer (the client stack reports all of that as 503), rather
// than an answer of the subscriber about the event.
func refusal503(err error) bool {
	var me *merrors.Error
	return !errors.As(err, &me) || me.Code == 503 || me.Code == 0
}

// refused counts a failed delivery of e to svc. It reports true when the
// event has now been refused MaxAttempts times in a row and was recorded as
// a dead letter: the caller moves past it.
func (r *Relay) refused(svc string, e entry, err error) bool {
	if refusal503(err) {
		return false // the subscriber did not answer: not the event's fault
	}
	r.mu.Lock()
	rf := r.refusals[svc]
	if rf.seq != e.seq {
		rf = refusal{seq: e.seq}
	}
	rf.attempts++
	r.refusals[svc] = rf
	r.mu.Unlock()
	if rf.attempts < r.opts.MaxAttempts {
		return false
	}
	dl := DeadLetter{Subscriber: svc, Seq: e.seq, Event: e.ev, Attempts: rf.attempts, LastError: err.Error(), Time: time.Now().UTC()}
	if err := r.putDeadLetter(dl); err != nil {
		slog.Error("events: record dead letter", "subscriber", svc, "id", e.ev.ID, "err", err)
		return false
	}
	slog.Error("events: dead letter: the subscriber keeps refusing the event; moving on",
		"subscriber", svc, "id", e.ev.ID, "topic", e.ev.Topic, "attempts", rf.attempts, "err", err)
	r.countDeadLetters()
	return true
}

func (r *Relay) forgetRefusals(svc string) {
	r.mu.Lock()
	delete(r.refusals, svc)
	r.mu.Unlock()
}

// entry is an outbox event with its sequence.
type entry struct {
	seq uint64
	ev  Event
}

type pendingBatch struct {
	cursor  uint64 // the subscriber's cursor when read
	events  []entry
	scanned uint64    // last outbox sequence scanned
	full    bool      // the batch stopped at Batch events; more may follow
	next    time.Time // when full, the time of the next outbox event
	last    uint64    // the outbox's last sequence
}

// pending reads the subscriber's cursor, and the next batch of its events
// after it.
func (r *Relay) pending(svc string, sub subscriber) (pendingBatch, error) {
	var batch pendingBatch
	var seen bool
	err := r.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(cursorBucket).Get([]byte(svc))
		if seen = raw != nil; !seen {
			return nil
		}
		batch.cursor, _ = keySeq(raw)
		out := tx.Bucket(outboxBucket)
		batch.last = out.Sequence()
		c := out.Cursor()
		for k, v := c.Seek(seqKey(batch.cursor + 1)); k != nil; k, v = c.Next() {
			if len(batch.events) == r.opts.Batch {
				batch.full = true
				batch.next, _ = eventTime(v)
				return nil
			}
			seq, ok := keySeq(k)
			if !ok {
				continue
			}
			var ev Event
			if err := json.Unmarshal(v, &ev); err != nil {
				slog.Error("events: skipping unreadable outbox entry", "seq", seq, "err", err)
			} else if slices.Contains(sub.topics, ev.Topic) {
				batch.events = append(batch.events, entry{seq: seq, ev: ev})
			}
			batch.scanned = seq
		}
		return nil
	})
	if err == nil && !seen {
		if err = r.firstSight(svc, sub); err == nil {
			return r.pending(svc, sub)
		}
	}
	return batch, err
}

// parseSince reads a node's SubscribesFromKey: ok with the time for a
// subscriber that wants only events from that time on.
func parseSince(v string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, v)
	return t, err == nil
}

// firstSight gives a subscriber the relay has no cursor for one: 0 (every
// retained event) or, if it asked for events from a time on (FromLatest),
// the sequence just before the first event at or after that time (the end
// of the outbox when there is none). From then on its cursor also holds
// back pruning.
func (r *Relay) firstSight(svc string, sub subscriber) error {
	return r.db.Update(func(tx *bolt.Tx) error {
		cursors := tx.Bucket(cursorBucket)
		if cursors.Get([]byte(svc)) != nil {
			return nil
		}
		var start uint64
		if !sub.since.IsZero() {
			out := tx.Bucket(outboxBucket)
			start = out.Sequence()
			c := out.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				var ev struct {
					Time time.Time `json:"time"`
				}
				seq, ok := keySeq(k)
				if !ok || json.Unmarshal(v, &ev) != nil || ev.Time.Before(sub.since) {
					continue
				}
				start = seq - 1
				break
			}
		}
		slog.Info("events: new subscriber", "subscriber", svc, "since", sub.since, "cursor", start)
		return cursors.Put([]byte(svc), seqKey(start))
	})
}

func (r *Relay) setCursor(svc string, seq uint64) error {
	// A lost cursor update only means a redelivery, which the inbox absorbs,
	// so cursor writes can share fsyncs through Batch.
	return r.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(cursorBucket).Put([]byte(svc), seqKey(seq))
	})
}

// prune drops the events that every known subscriber (every one with a
// cursor: the relay gives one to each subscriber it sees) has acknowledged,
// at or below the lowest cursor, and that are older than the retention
// period. With no subscriber known at all, age alone decides. A subscriber
// gone for good holds events back until its cursor is deleted.
func (r *Relay) prune(now time.Time) {
	limit := now.Add(-r.opts.Retention)
	err := r.db.Update(func(tx *bolt.Tx) error {
		floor := ^uint64(0)
		if err := tx.Bucket(cursorBucket).ForEach(func(_, v []byte) error {
			seq, _ := keySeq(v)
			floor = min(floor, seq)
			return nil
		}); err != nil {
			return err
		}
		c := tx.Bucket(outboxBucket).Cursor()
		for k, v := c.First(); k != nil; k, v = c.First() {
			if seq, _ := keySeq(k); seq > floor {
				return nil
			}
			if at, err := eventTime(v); err == nil && !at.Before(limit) {
				return nil
			}
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

// eventTime decodes only the time of an outbox event.
func eventTime(raw []byte) (time.Time, error) {
	var ev struct {
		Time time.Time `json:"time"`
	}
	err := json.Unmarshal(raw, &ev)
	return ev.Time, err
}

func deadKey(svc string, seq uint64) []byte {
	return append(append([]byte(svc), 0), seqKey(seq)...)
}

func (r *Relay) putDeadLetter(dl DeadLetter) error {
	raw, err := json.Marshal(dl)
	if err != nil {
		return err
	}
	// The dead letter and the cursor past it commit together.
	return r.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(deadBucket).Put(deadKey(dl.Subscriber, dl.Seq), raw); err != nil {
			return err
		}
		cursors := tx.Bucket(cursorBucket)
		if cur, _ := keySeq(cursors.Get([]byte(dl.Subscriber))); cur >= dl.Seq {
			return nil
		}
		return cursors.Put([]byte(dl.Subscriber), seqKey(dl.Seq))
	})
}

// DeadLetters lists the dead letters of subscriber (all subscribers when
// empty), by subscriber then outbox order.
func (r *Relay) DeadLetters(subscriber string) ([]DeadLetter, error) {
	var out []DeadLetter
	err := r.db.View(func(tx *bolt.Tx) error {
		var prefix []byte
		if subscriber != "" {
			prefix = append([]byte(subscriber), 0)
		}
		c := tx.Bucket(deadBucket).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var dl DeadLetter
			if err := json.Unmarshal(v, &dl); err != nil {
				return fmt.Errorf("events: dead letter %q: %w", k, err)
			}
			out = append(out, dl)
		}
		return nil
	})
	return out, err
}

// ErrNoDeadLetter is returned by Replay for an unknown dead letter.
var ErrNoDeadLetter = errors.New("events: no such dead letter")

// Replay delivers the dead letter of subscriber at outbox sequence seq
// again, out of order with the subscriber's stream, and removes it once the
// subscriber acknowledges it (a duplicate counts). On failure the dead letter
// stays and the error is returned.
func (r *Relay) Replay(ctx context.Context, subscriber string, seq uint64) error {
	var dl DeadLetter
	err := r.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(deadBucket).Get(deadKey(subscriber, seq))
		if raw == nil {
			return ErrNoDeadLetter
		}
		return json.Unmarshal(raw, &dl)
	})
	if err != nil {
		return err
	}
	if err := r.send(ctx, subscriber, dl.Seq, dl.Event); err != nil {
		return fmt.Errorf("events: replay %s to %s: %w", dl.Event.ID, subscriber, err)
	}
	err = r.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(deadBucket).Delete(deadKey(subscriber, seq))
	})
	r.countDeadLetters()
	return err
}

// countDeadLetters sets the dead-letter gauge from the bucket.
func (r *Relay) countDeadLetters() {
	counts := map[string]int{}
	err := r.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(deadBucket).ForEach(func(k, _ []byte) error {
			if i := bytes.IndexByte(k, 0); i > 0 {
				counts[string(k[:i])]++
			}
			return nil
		})
	})
	if err != nil {
		slog.Error("events: count dead letters", "err", err)
		return
	}
	r.metrics.setDeadLetters(counts)
}
