// Package events delivers facts between services at least once, and makes
// handling them effectively once:
//
//   - the producer builds the event (NewEvent) with an ID (a ULID) and a
//     time it decides before its store transaction, from the command it
//     handles, and appends it (AppendEvent) to an outbox bucket in the same
//     bbolt transaction as the state change, so a committed change always has
//     its event and a rolled-back one never does. Nothing is generated inside
//     the transaction: a transaction function that runs again (bbolt's
//     db.Batch may retry one) writes the same event. Outbox keys are the
//     bucket's own sequence (8-byte big-endian), so the order is the commit
//     order whatever the clocks do;
//   - a Relay delivers outbox events, in order, to every service that
//     subscribes to their topic (found in the registry through node metadata),
//     and advances that subscriber's cursor (a sequence number) only when the
//     subscriber has acknowledged; failures back off and retry. An event the
//     subscriber keeps refusing (it answers with an error MaxAttempts times in
//     a row) becomes a dead letter for that subscriber, and the stream goes
//     on; the relay lists and replays dead letters. Failures to reach the
//     subscriber at all (503 from the client stack) are retried without limit;
//   - a subscriber chooses where it starts when a relay first sees it:
//     Consumer.Attach asks for history (every event the producer still
//     retains), Attach with FromLatest() for only the events appended after
//     that moment, for effects that must not replay the past (a welcome
//     email). The choice is announced in the registry (SubscribesFromKey) and
//     only matters while the relay holds no cursor for the subscriber;
//   - the relay prunes an event only once every known subscriber has
//     acknowledged it (it is at or below the lowest cursor) and it is older
//     than the retention;
//   - the consumer records handled event IDs in an inbox bucket, in the same
//     transaction as its own effects, so a redelivery does nothing twice.
//
// Delivery is an RPC (Events.Deliver) through the shared client stack rather
// than go-micro's HTTP broker, which publishes asynchronously, discards the
// subscriber's answer and keeps its backlog in memory: it cannot tell the
// producer that an event was handled, and nothing survives a restart.
package events

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Event is one fact. IDs are ULIDs, unique per event; the order of delivery
// is the outbox order, not the ID order.
type Event struct {
	ID      string          `json:"id"`
	Topic   string          `json:"topic"`
	Source  string          `json:"source"`
	Time    time.Time       `json:"time"`
	Payload json.RawMessage `json:"payload"`
	// Seq is the event's outbox sequence at its producer: the commit order
	// of the producer's writes, set by the relay on delivery (not stored).
	// A subscriber keeping the latest state of something compares Seq (from
	// one producer), never IDs or times, which are chosen before commit.
	Seq uint64 `json:"seq,omitempty"`
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

// SubscribesFromKey is the registry node metadata saying where a new
// subscriber starts: absent (or anything but a time) for every retained
// event; an RFC 3339 time for the events from that time on (FromLatest).
const SubscribesFromKey = "subscribes_from"

// Buckets used by this package, created by CreateBuckets.
var (
	outboxBucket = []byte("events.outbox")      // sequence (8-byte big-endian) → Event JSON
	cursorBucket = []byte("events.cursors")     // subscriber service → last acknowledged sequence (8-byte big-endian)
	inboxBucket  = []byte("events.inbox")       // event ID → handled-at (RFC 3339)
	deadBucket   = []byte("events.deadletters") // subscriber 0x00 sequence → DeadLetter JSON
	metaBucket   = []byte("events.meta")        // consumer facts: sinceKey → when it first attached FromLatest
	sinceKey     = []byte("subscribed_since")
)

// CreateBuckets creates the outbox, cursor, dead-letter and inbox buckets;
// call it from the service store's schema setup transaction. It also
// migrates, once, an outbox and cursors written by the previous format
// (event-ID keys and cursors): see migrate.
func CreateBuckets(tx *bolt.Tx) error {
	for _, b := range [][]byte{outboxBucket, cursorBucket, inboxBucket, deadBucket, metaBucket} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return fmt.Errorf("events: create bucket %s: %w", b, err)
		}
	}
	if err := migrate(tx); err != nil {
		return fmt.Errorf("events: migrate outbox: %w", err)
	}
	return nil
}

// seqKey encodes an outbox sequence as its key.
func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// keySeq decodes an outbox key or cursor; ok is false for the previous
// format (ULID strings).
func keySeq(k []byte) (seq uint64, ok bool) {
	if len(k) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(k), true
}

// migrate re-keys events stored under their ID (the format before sequence
// keys) after the current last sequence, in their old key order, and turns
// each cursor holding an event ID into the sequence of the last migrated
// event at or before it (0, everything again, when there is none; the inbox
// absorbs the redelivery). It does nothing on an outbox in the current format.
func migrate(tx *bolt.Tx) error {
	out := tx.Bucket(outboxBucket)
	type moved struct {
		oldKey string
		seq    uint64
	}
	var old []moved
	var values [][]byte
	last := out.Sequence()
	err := out.ForEach(func(k, v []byte) error {
		if seq, ok := keySeq(k); ok {
			last = max(last, seq)
			return nil
		}
		old = append(old, moved{oldKey: string(k)})
		values = append(values, append([]byte(nil), v...))
		return nil
	})
	if err != nil {
		return err
	}
	if err := out.SetSequence(last); err != nil {
		return err
	}
	for i := range old { // ForEach visits keys in order, so old is in the old order
		if err := out.Delete([]byte(old[i].oldKey)); err != nil {
			return err
		}
		seq, err := out.NextSequence()
		if err != nil {
			return err
		}
		old[i].seq = seq
		if err := out.Put(seqKey(seq), values[i]); err != nil {
			return err
		}
	}
	cursors := tx.Bucket(cursorBucket)
	var stale [][2][]byte
	err = cursors.ForEach(func(k, v []byte) error {
		if _, ok := keySeq(v); ok {
			return nil
		}
		var seq uint64 // the previous cursor was the last delivered (or skipped) key
		for _, m := range old {
			if m.oldKey > string(v) {
				break
			}
			seq = m.seq
		}
		stale = append(stale, [2][]byte{append([]byte(nil), k...), seqKey(seq)})
		return nil
	})
	if err != nil {
		return err
	}
	for _, kv := range stale {
		if err := cursors.Put(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// NewEvent builds an event with the caller's ID and time, encoding payload.
// Pass IDs and times decided outside the store transaction (the request's
// ID, the handler's clock) so applying the same write twice writes the same
// bytes.
func NewEvent(id string, at time.Time, source, topic string, payload any) (Event, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return Event{}, fmt.Errorf("events: encode %s payload: %w", topic, err)
	}
	return Event{ID: id, Topic: topic, Source: source, Time: at, Payload: body}, nil
}

// AppendEvent writes ev into the outbox as part of tx, under the outbox's
// next sequence number, which it returns. ev must carry its ID, topic and
// time; nothing is generated here. Call Relay.Notify after tx commits to
// deliver it without waiting for the next poll.
func AppendEvent(tx *bolt.Tx, ev Event) (uint64, error) {
	if ev.ID == "" || ev.Topic == "" || ev.Time.IsZero() {
		return 0, errors.New("events: an event needs an ID, a topic and a time")
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		return 0, fmt.Errorf("events: encode %s: %w", ev.Topic, err)
	}
	b := tx.Bucket(outboxBucket)
	if b == nil {
		return 0, errors.New("events: outbox bucket missing (CreateBuckets not called)")
	}
	seq, err := b.NextSequence()
	if err != nil {
		return 0, fmt.Errorf("events: append %s: %w", ev.Topic, err)
	}
	if err := b.Put(seqKey(seq), raw); err != nil {
		return 0, fmt.Errorf("events: append %s: %w", ev.Topic, err)
	}
	return seq, nil
}
