package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Snapshot is what one service's database holds of the event pipeline, as
// Inspect read it: as a producer, its outbox and the cursors and dead letters
// of its subscribers; as a consumer, its inbox. It is for checks and tools
// (the chaos test's delivery audit), not for the delivery path.
type Snapshot struct {
	// Buckets is false when the database has none of the events buckets (a
	// service that neither produces nor consumes events); the rest is then empty.
	Buckets bool
	// Outbox lists the readable retained events in sequence (delivery) order.
	Outbox []OutboxEntry
	// FirstSeq is the lowest sequence still in the outbox, readable or not
	// (0 when the outbox is empty); the relay prunes from the front only.
	FirstSeq uint64
	// LastSeq is the last sequence the outbox assigned (its bucket sequence),
	// pruned or not.
	LastSeq uint64
	// Cursors maps each subscriber the relay has seen to the last sequence
	// it acknowledged, skipped (another topic) or dead-lettered.
	Cursors map[string]uint64
	// Inbox maps each event ID this service handled to when it handled it.
	Inbox map[string]time.Time
	// DeadLetters lists the dead letters by subscriber, then sequence.
	DeadLetters []DeadLetter
	// Unreadable describes the entries that could not be decoded: outbox,
	// cursor, inbox or dead-letter values that are not what this package
	// writes, and outbox keys or cursors of the format before sequences (a
	// file CreateBuckets has not migrated yet). They are left out of the
	// fields above, except a dead letter whose key still names its
	// subscriber and sequence.
	Unreadable []string
}

// OutboxEntry is one retained outbox event with its sequence.
type OutboxEntry struct {
	Seq uint64
	Event
}

// Pruned is how many sequences before the first retained one are gone: the
// events the relay pruned, every one acknowledged (or dead-lettered) by
// every subscriber it knew when it pruned them.
func (s Snapshot) Pruned() uint64 {
	if s.FirstSeq == 0 {
		return s.LastSeq
	}
	return s.FirstSeq - 1
}

// Acknowledged reports whether subscriber's cursor is at or past seq: the
// relay is done with that event for it (delivered and acknowledged, skipped
// as another topic, or dead-lettered).
func (s Snapshot) Acknowledged(subscriber string, seq uint64) bool {
	cur, ok := s.Cursors[subscriber]
	return ok && cur >= seq
}

// DeadLetterCounts counts the dead letters per subscriber.
func (s Snapshot) DeadLetterCounts() map[string]int {
	n := map[string]int{}
	for _, dl := range s.DeadLetters {
		n[dl.Subscriber]++
	}
	return n
}

// Inspect reads the events buckets in tx. It only reads, so it works on a
// database opened read-only (bolt.Options.ReadOnly) as well as inside any
// View; missing buckets read as empty.
func Inspect(tx *bolt.Tx) (Snapshot, error) {
	s := Snapshot{Cursors: map[string]uint64{}, Inbox: map[string]time.Time{}}
	bad := func(format string, a ...any) { s.Unreadable = append(s.Unreadable, fmt.Sprintf(format, a...)) }

	if out := tx.Bucket(outboxBucket); out != nil {
		s.Buckets = true
		s.LastSeq = out.Sequence()
		err := out.ForEach(func(k, v []byte) error {
			seq, ok := keySeq(k)
			if !ok {
				bad("outbox key %q is not a sequence (the format before sequence keys)", k)
				return nil
			}
			if s.FirstSeq == 0 {
				s.FirstSeq = seq
			}
			var ev Event
			if err := json.Unmarshal(v, &ev); err != nil {
				bad("outbox %d: %v", seq, err)
				return nil
			}
			s.Outbox = append(s.Outbox, OutboxEntry{Seq: seq, Event: ev})
			return nil
		})
		if err != nil {
			return Snapshot{}, fmt.Errorf("events: inspect outbox: %w", err)
		}
	}

	if cursors := tx.Bucket(cursorBucket); cursors != nil {
		s.Buckets = true
		err := cursors.ForEach(func(k, v []byte) error {
			seq, ok := keySeq(v)
			if !ok {
				bad("cursor of %s is %q, not a sequence (the format before sequence keys)", k, v)
				return nil
			}
			s.Cursors[string(k)] = seq
			return nil
		})
		if err != nil {
			return Snapshot{}, fmt.Errorf("events: inspect cursors: %w", err)
		}
	}

	if inbox := tx.Bucket(inboxBucket); inbox != nil {
		s.Buckets = true
		err := inbox.ForEach(func(k, v []byte) error {
			at, err := time.Parse(time.RFC3339, string(v))
			if err != nil {
				bad("inbox %s: handled-at %q: %v", k, v, err)
				return nil
			}
			s.Inbox[string(k)] = at
			return nil
		})
		if err != nil {
			return Snapshot{}, fmt.Errorf("events: inspect inbox: %w", err)
		}
	}

	if dead := tx.Bucket(deadBucket); dead != nil {
		s.Buckets = true
		err := dead.ForEach(func(k, v []byte) error {
			var dl DeadLetter
			err := json.Unmarshal(v, &dl)
			if err == nil {
				s.DeadLetters = append(s.DeadLetters, dl)
				return nil
			}
			bad("dead letter %q: %v", k, err)
			// Counted all the same, from its key (subscriber 0x00 sequence).
			if i := bytes.IndexByte(k, 0); i > 0 {
				seq, _ := keySeq(k[i+1:])
				s.DeadLetters = append(s.DeadLetters, DeadLetter{Subscriber: string(k[:i]), Seq: seq})
			}
			return nil
		})
		if err != nil {
			return Snapshot{}, fmt.Errorf("events: inspect dead letters: %w", err)
		}
	}
	return s, nil
}

// InspectFile opens the bbolt file at path read-only, waiting up to timeout
// for its lock (a process serving the file holds it; stop that process
// first), and inspects it. It never creates the file or writes to it.
func InspectFile(path string, timeout time.Duration) (Snapshot, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: timeout})
	if err != nil {
		return Snapshot{}, fmt.Errorf("events: inspect %s: %w", path, err)
	}
	defer db.Close()
	var s Snapshot
	err = db.View(func(tx *bolt.Tx) error {
		var err error
		s, err = Inspect(tx)
		return err
	})
	return s, err
}

// Outbox returns the events db's outbox retains, in sequence (delivery)
// order, for tests and tools that check what a write appended.
func Outbox(db *bolt.DB) ([]Event, error) {
	var out []Event
	err := db.View(func(tx *bolt.Tx) error {
		s, err := Inspect(tx)
		if err != nil {
			return err
		}
		if len(s.Unreadable) > 0 {
			return fmt.Errorf("events: unreadable outbox entries: %v", s.Unreadable)
		}
		for _, e := range s.Outbox {
			out = append(out, e.Event)
		}
		return nil
	})
	return out, err
}
