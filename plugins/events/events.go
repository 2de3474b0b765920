// Package events delivers facts between services at least once, and makes
// handling them effectively once:
//
//   - the producer appends the event to an outbox bucket in the same bbolt
//     transaction as the state change (Append), so a committed change always
//     has its event and a rolled-back one never does;
//   - a Relay delivers outbox events, in order, to every service that
//     subscribes to their topic (found in the registry through node metadata),
//     and advances that subscriber's cursor only when the subscriber has
//     acknowledged; failures back off and retry until delivered. A subscriber
//     that appears later starts from the oldest retained event;
//   - the consumer records handled event IDs in an inbox bucket, in the same
//     transaction as its own effects, so a redelivery does nothing twice.
//
// Delivery is an RPC (Events.Deliver) through the shared client stack rather
// than go-micro's HTTP broker, which publishes asynchronously, discards the
// subscriber's answer and keeps its backlog in memory: it cannot tell the
// producer that an event was handled, and nothing survives a restart.
package events

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
)

// Event is one fact. IDs are ULIDs, so outbox keys sort by time.
type Event struct {
	ID      string          `json:"id"`
	Topic   string          `json:"topic"`
	Source  string          `json:"source"`
	Time    time.Time       `json:"time"`
	Payload json.RawMessage `json:"payload"`
}

// Decode unmarshals the payload into v.
func (e Event) Decode(v any) error {
	if err := json.Unmarshal(e.Payload, v); err != nil {
		return fmt.Errorf("event %s (%s): %w", e.ID, e.Topic, err)
	}
	return nil
}

// Ack is the consumer's answer to a delivery.
type Ack struct {
	// Duplicate is true when the event had been handled before.
	Duplicate bool `json:"duplicate"`
}

// Endpoint is the RPC endpoint consumers serve.
const Endpoint = "Events.Deliver"

// SubscribesKey is the registry node metadata listing a service's topics, comma-separated.
const SubscribesKey = "subscribes"

// Buckets used by this package, created by CreateBuckets.
var (
	outboxBucket = []byte("events.outbox")  // event ID → Event JSON
	cursorBucket = []byte("events.cursors") // subscriber service → last delivered event ID
	inboxBucket  = []byte("events.inbox")   // event ID → handled-at (RFC 3339)
)

// CreateBuckets creates the outbox, cursor and inbox buckets; call it from
// the service store's schema setup transaction.
func CreateBuckets(tx *bolt.Tx) error {
	for _, b := range [][]byte{outboxBucket, cursorBucket, inboxBucket} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return fmt.Errorf("events: create bucket %s: %w", b, err)
		}
	}
	return nil
}

// Append writes an event into the outbox as part of tx. Call Relay.Notify
// after tx commits to deliver it without waiting for the next poll.
func Append(tx *bolt.Tx, source, topic string, payload any) (Event, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return Event{}, fmt.Errorf("events: encode %s payload: %w", topic, err)
	}
	ev := Event{ID: ulid.Make().String(), Topic: topic, Source: source, Time: time.Now().UTC(), Payload: body}
	raw, err := json.Marshal(ev)
	if err != nil {
		return Event{}, err
	}
	b := tx.Bucket(outboxBucket)
	if b == nil {
		return Event{}, fmt.Errorf("events: outbox bucket missing (CreateBuckets not called)")
	}
	if err := b.Put([]byte(ev.ID), raw); err != nil {
		return Event{}, fmt.Errorf("events: append %s: %w", topic, err)
	}
	return ev, nil
}
