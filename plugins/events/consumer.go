package events

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	merrors "go-micro.dev/v4/errors"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/svcauth"
)

// Handler applies one event inside tx, the same transaction that records it
// as handled: either both commit or neither does.
type Handler func(ctx context.Context, tx *bolt.Tx, ev Event) error

// Consumer receives events for one service.
type Consumer struct {
	db        *bolt.DB
	handlers  map[string]Handler
	retention time.Duration
}

// NewConsumer returns a consumer whose inbox lives in db.
func NewConsumer(db *bolt.DB) *Consumer {
	return &Consumer{db: db, handlers: map[string]Handler{}, retention: 8 * 24 * time.Hour}
}

// On subscribes h to topic; call before Attach.
func (c *Consumer) On(topic string, h Handler) { c.handlers[topic] = h }

// Topics lists the subscribed topics, sorted.
func (c *Consumer) Topics() []string {
	ts := make([]string, 0, len(c.handlers))
	for t := range c.handlers {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	return ts
}

// Server is the part of service.Service a consumer needs.
type Server interface {
	Handle(h any) error
	SetMetadata(key, value string)
	Go(fn func(context.Context))
}

// AttachOption changes how Attach announces the consumer.
type AttachOption func(*attachOptions)

type attachOptions struct{ latest bool }

// FromLatest makes this subscriber get only the events that happened after
// it first attached, instead of every event producers still retain: for
// effects that must only follow new facts (a welcome email must not reach
// people who registered before the sender existed). The time of that first
// attach is recorded in the consumer's database, so restarts keep it, and
// announced in the registry; a producer's relay that first sees the
// subscriber later (a discovery interval, a producer that was down) still
// starts at the first event at or after that time, by the event's own time.
// Once the relay holds a cursor for the subscriber, the subscriber gets
// everything after it, whatever it announces.
func FromLatest() AttachOption { return func(o *attachOptions) { o.latest = true } }

// Attach serves Events.Deliver on svc and announces the topics in the
// registry, where producers' relays find them. By default a subscriber new
// to a producer gets the events the producer still retains (history); see
// FromLatest.
func (c *Consumer) Attach(svc Server, opts ...AttachOption) error {
	var o attachOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := svc.Handle(&Events{c: c}); err != nil {
		return fmt.Errorf("events: %w", err)
	}
	svc.SetMetadata(SubscribesKey, strings.Join(c.Topics(), ","))
	if o.latest {
		since, err := c.since()
		if err != nil {
			return fmt.Errorf("events: %w", err)
		}
		svc.SetMetadata(SubscribesFromKey, since.Format(time.RFC3339Nano))
	}
	svc.Go(c.pruneInbox)
	return nil
}

// since returns when the consumer first attached FromLatest, recording now
// the first time.
func (c *Consumer) since() (time.Time, error) {
	var since time.Time
	err := c.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		if raw := b.Get(sinceKey); raw != nil {
			return since.UnmarshalText(raw)
		}
		since = time.Now().UTC()
		raw, _ := since.MarshalText()
		return b.Put(sinceKey, raw)
	})
	return since, err
}

// Events is the RPC handler type; its name makes the endpoint "Events.Deliver".
type Events struct{ c *Consumer }

// Deliver handles one event unless its ID is in the inbox already.
func (e *Events) Deliver(ctx context.Context, ev *Event, ack *Ack) error {
	return e.c.deliver(ctx, ev, ack)
}

func (c *Consumer) deliver(ctx context.Context, ev *Event, ack *Ack) error {
	if ev.ID == "" || ev.Topic == "" {
		return merrors.BadRequest("events", "event id and topic are required")
	}
	// Only the service that publishes a topic delivers it, as itself: its
	// certificate, not the event, says who it is (svcauth.MayPublish).
	if err := svcauth.MayPublish(ctx, "events", ev.Source, ev.Topic); err != nil {
		slog.WarnContext(ctx, "events: delivery refused", "topic", ev.Topic, "id", ev.ID, "source", ev.Source, "caller", svcauth.Caller(ctx), "err", err)
		return err
	}
	h, ok := c.handlers[ev.Topic]
	if !ok {
		return nil // not ours: acknowledge so the producer moves on
	}
	return c.db.Update(func(tx *bolt.Tx) error {
		inbox := tx.Bucket(inboxBucket)
		if inbox.Get([]byte(ev.ID)) != nil {
			ack.Duplicate = true
			return nil
		}
		if err := h(ctx, tx, *ev); err != nil {
			slog.ErrorContext(ctx, "events: handler failed", "topic", ev.Topic, "id", ev.ID, "err", err)
			return merrors.InternalServerError("events", "handling %s %s failed", ev.Topic, ev.ID)
		}
		return inbox.Put([]byte(ev.ID), []byte(time.Now().UTC().Format(time.RFC3339)))
	})
}

// pruneInbox forgets handled IDs older than any event a producer still retains.
func (c *Consumer) pruneInbox(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		limit := time.Now().Add(-c.retention).UTC().Format(time.RFC3339)
		_ = c.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(inboxBucket)
			var old [][]byte
			_ = b.ForEach(func(k, v []byte) error {
				if string(v) < limit {
					old = append(old, append([]byte(nil), k...))
				}
				return nil
			})
			for _, k := range old {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
	}
}
