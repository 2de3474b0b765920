package events

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/svcauth"
)

// inspectFixture is a bbolt file in a temp folder with the events buckets,
// written by the package's own code paths.
func inspectFixture(t *testing.T) (string, *bolt.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "svc.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Update(CreateBuckets); err != nil {
		t.Fatal(err)
	}
	return path, db
}

// appendAt appends an event of topic with ID id at time at, and returns its sequence.
func appendAt(t *testing.T, db *bolt.DB, id, topic string, at time.Time) uint64 {
	t.Helper()
	ev, err := NewEvent(id, at, "marketmesh.producer", topic, map[string]string{"id": id})
	if err != nil {
		t.Fatal(err)
	}
	var seq uint64
	if err := db.Update(func(tx *bolt.Tx) (err error) {
		seq, err = AppendEvent(tx, ev)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return seq
}

// closeAndInspect closes db and inspects its file opened read-only.
func closeAndInspect(t *testing.T, path string, db *bolt.DB) Snapshot {
	t.Helper()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := InspectFile(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestInspectReadsOutboxCursorsInboxAndDeadLetters(t *testing.T) {
	path, db := inspectFixture(t)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, topic := range []string{"a.created", "b.changed", "a.created", "b.changed", "a.created"} {
		if seq := appendAt(t, db, fmt.Sprintf("EV%d", i+1), topic, t0.Add(time.Duration(i)*time.Second)); seq != uint64(i+1) {
			t.Fatalf("sequence %d, want %d", seq, i+1)
		}
	}
	// The relay's side: subscriber x acknowledged up to 3, y refused 2 until
	// it became a dead letter, z has just been seen.
	r := &Relay{db: db}
	for _, svc := range []string{"svc.x", "svc.y", "svc.z"} {
		if err := r.firstSight(svc, subscriber{topics: []string{"a.created"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.setCursor("svc.x", 3); err != nil {
		t.Fatal(err)
	}
	dl := DeadLetter{Subscriber: "svc.y", Seq: 2, Event: Event{ID: "EV2", Topic: "b.changed"}, Attempts: 10, LastError: "nope", Time: t0}
	if err := r.putDeadLetter(dl); err != nil {
		t.Fatal(err)
	}
	// The consumer's side: this service also handled two events of another producer.
	c := NewConsumer(db)
	c.On("c.done", func(context.Context, *bolt.Tx, Event) error { return nil })
	before := time.Now().UTC().Truncate(time.Second)
	// What the server wrapper puts in the context of a call proven to come from the producer.
	fromProducer := svcauth.WithPolicy(svcauth.WithCaller(context.Background(), "marketmesh.other"), svcauth.AllowAll())
	for _, id := range []string{"OTHER1", "OTHER2", "OTHER1"} {
		var ack Ack
		if err := c.deliver(fromProducer, &Event{ID: id, Topic: "c.done", Source: "marketmesh.other"}, &ack); err != nil {
			t.Fatal(err)
		}
	}
	// Not its topic: acknowledged without an inbox entry.
	if err := c.deliver(fromProducer, &Event{ID: "NOTOURS", Topic: "d.other", Source: "marketmesh.other"}, &Ack{}); err != nil {
		t.Fatal(err)
	}

	s := closeAndInspect(t, path, db)
	if !s.Buckets || len(s.Unreadable) != 0 {
		t.Fatalf("Buckets %v, Unreadable %q", s.Buckets, s.Unreadable)
	}
	var got []string
	for _, e := range s.Outbox {
		got = append(got, fmt.Sprintf("%d %s %s %s", e.Seq, e.ID, e.Topic, e.Time.Format(time.TimeOnly)))
	}
	want := []string{"1 EV1 a.created 03:04:05", "2 EV2 b.changed 03:04:06", "3 EV3 a.created 03:04:07", "4 EV4 b.changed 03:04:08", "5 EV5 a.created 03:04:09"}
	if !slices.Equal(got, want) {
		t.Fatalf("outbox:\n%q\nwant\n%q", got, want)
	}
	var payload map[string]string
	if err := s.Outbox[2].Decode(&payload); err != nil || payload["id"] != "EV3" {
		t.Fatalf("payload of EV3: %v %v", payload, err)
	}
	if s.FirstSeq != 1 || s.LastSeq != 5 || s.Pruned() != 0 {
		t.Fatalf("FirstSeq %d LastSeq %d Pruned %d, want 1 5 0", s.FirstSeq, s.LastSeq, s.Pruned())
	}
	if want := map[string]uint64{"svc.x": 3, "svc.y": 2, "svc.z": 0}; !maps.Equal(s.Cursors, want) {
		t.Fatalf("cursors %v, want %v", s.Cursors, want)
	}
	if !s.Acknowledged("svc.x", 3) || s.Acknowledged("svc.x", 4) || !s.Acknowledged("svc.y", 2) || s.Acknowledged("svc.z", 1) || s.Acknowledged("svc.unknown", 0) {
		t.Fatal("Acknowledged does not follow the cursors")
	}
	if len(s.Inbox) != 2 {
		t.Fatalf("inbox %v, want OTHER1 and OTHER2 only", s.Inbox)
	}
	for _, id := range []string{"OTHER1", "OTHER2"} {
		if at, ok := s.Inbox[id]; !ok || at.Before(before) || at.After(time.Now().Add(time.Second)) {
			t.Fatalf("inbox %s handled at %v (present %v), want about now", id, at, ok)
		}
	}
	if len(s.DeadLetters) != 1 || s.DeadLetters[0].Subscriber != "svc.y" || s.DeadLetters[0].Seq != 2 || s.DeadLetters[0].Event.ID != "EV2" || s.DeadLetters[0].Attempts != 10 {
		t.Fatalf("dead letters %+v", s.DeadLetters)
	}
	if n := s.DeadLetterCounts(); len(n) != 1 || n["svc.y"] != 1 {
		t.Fatalf("dead letter counts %v", n)
	}
}

func TestInspectCountsPrunedEvents(t *testing.T) {
	path, db := inspectFixture(t)
	old := time.Now().Add(-time.Hour).UTC()
	for i := range 4 {
		appendAt(t, db, fmt.Sprintf("EV%d", i+1), "a.created", old)
	}
	r := &Relay{db: db, opts: RelayOptions{Retention: time.Minute}}
	if err := r.firstSight("svc.x", subscriber{topics: []string{"a.created"}}); err != nil {
		t.Fatal(err)
	}
	if err := r.setCursor("svc.x", 2); err != nil {
		t.Fatal(err)
	}
	r.prune(time.Now())

	s := closeAndInspect(t, path, db)
	if s.FirstSeq != 3 || s.LastSeq != 4 || s.Pruned() != 2 || len(s.Outbox) != 2 || s.Outbox[0].ID != "EV3" {
		t.Fatalf("after pruning 2 of 4: FirstSeq %d LastSeq %d Pruned %d outbox %+v", s.FirstSeq, s.LastSeq, s.Pruned(), s.Outbox)
	}
	for seq := range uint64(3) {
		if !s.Acknowledged("svc.x", seq) {
			t.Fatalf("sequence %d, at or below the cursor, is not acknowledged", seq)
		}
	}

	// Everything pruned: the sequence still says how many events there were.
	path, db = inspectFixture(t)
	appendAt(t, db, "EV1", "a.created", old)
	r = &Relay{db: db, opts: RelayOptions{Retention: time.Minute}}
	r.prune(time.Now()) // no subscriber known: age alone decides
	s = closeAndInspect(t, path, db)
	if s.FirstSeq != 0 || s.LastSeq != 1 || s.Pruned() != 1 || len(s.Outbox) != 0 {
		t.Fatalf("after pruning all: FirstSeq %d LastSeq %d Pruned %d outbox %+v", s.FirstSeq, s.LastSeq, s.Pruned(), s.Outbox)
	}
}

func TestInspectReportsUnreadableEntriesAndReadsTheRest(t *testing.T) {
	path, db := inspectFixture(t)
	appendAt(t, db, "EV1", "a.created", time.Now().UTC())
	if err := db.Update(func(tx *bolt.Tx) error {
		out := tx.Bucket(outboxBucket)
		for _, kv := range [][2][]byte{
			{seqKey(2), []byte("{not json")},
			{[]byte("01JOLDFORMATULIDKEY0000000"), []byte(`{"id":"OLD","topic":"a.created"}`)},
		} {
			if err := out.Put(kv[0], kv[1]); err != nil {
				return err
			}
		}
		if err := out.SetSequence(2); err != nil {
			return err
		}
		if err := tx.Bucket(cursorBucket).Put([]byte("svc.old"), []byte("01JOLDFORMATULIDKEY0000000")); err != nil {
			return err
		}
		if err := tx.Bucket(cursorBucket).Put([]byte("svc.x"), seqKey(1)); err != nil {
			return err
		}
		if err := tx.Bucket(inboxBucket).Put([]byte("EVBAD"), []byte("yesterday")); err != nil {
			return err
		}
		return tx.Bucket(deadBucket).Put(deadKey("svc.x", 2), []byte("{broken"))
	}); err != nil {
		t.Fatal(err)
	}

	s := closeAndInspect(t, path, db)
	if len(s.Unreadable) != 5 {
		t.Fatalf("unreadable: %d entries, want 5 (outbox value, outbox key, cursor, inbox, dead letter):\n%q", len(s.Unreadable), s.Unreadable)
	}
	if len(s.Outbox) != 1 || s.Outbox[0].ID != "EV1" || s.FirstSeq != 1 || s.LastSeq != 2 {
		t.Fatalf("outbox %+v FirstSeq %d LastSeq %d", s.Outbox, s.FirstSeq, s.LastSeq)
	}
	if want := map[string]uint64{"svc.x": 1}; !maps.Equal(s.Cursors, want) {
		t.Fatalf("cursors %v, want %v", s.Cursors, want)
	}
	if len(s.Inbox) != 0 {
		t.Fatalf("inbox %v, want the unreadable entry left out", s.Inbox)
	}
	// The dead letter still counts, from its key.
	if n := s.DeadLetterCounts(); n["svc.x"] != 1 || s.DeadLetters[0].Seq != 2 {
		t.Fatalf("dead letters %+v", s.DeadLetters)
	}
}

func TestInspectWithoutEventsBuckets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plain.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("images"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s := closeAndInspect(t, path, db)
	if s.Buckets || len(s.Outbox)+len(s.Cursors)+len(s.Inbox)+len(s.DeadLetters)+len(s.Unreadable) != 0 || s.Pruned() != 0 {
		t.Fatalf("a database without the events buckets: %+v", s)
	}
}

func TestInspectFileOnlyReads(t *testing.T) {
	path, db := inspectFixture(t)
	appendAt(t, db, "EV1", "a.created", time.Now().UTC())
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(path)
	// A read-only file: any write would fail.
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if s, err := InspectFile(path, time.Second); err != nil || len(s.Outbox) != 1 {
			t.Fatalf("InspectFile of a read-only file: %+v, %v", s, err)
		}
	}
	after, _ := os.ReadFile(path)
	if info2, _ := os.Stat(path); string(before) != string(after) || !info2.ModTime().Equal(info.ModTime()) {
		t.Fatal("InspectFile changed the file")
	}

	// Nothing is created for a missing file.
	missing := filepath.Join(t.TempDir(), "missing.db")
	if _, err := InspectFile(missing, time.Second); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("InspectFile of a missing file: %v, want not exist", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("InspectFile created %s", missing)
	}
}

func TestInspectFileWaitsForTheServingProcess(t *testing.T) {
	path, db := inspectFixture(t)
	appendAt(t, db, "EV1", "a.created", time.Now().UTC())
	// db is still open read-write (as a running service holds it): its
	// lock keeps a reader from seeing a file being written.
	if _, err := InspectFile(path, 100*time.Millisecond); !errors.Is(err, bolt.ErrTimeout) {
		t.Fatalf("InspectFile of a file in use: %v, want a timeout", err)
	}
	// Inspect itself works inside any read transaction, of a live database too.
	if err := db.View(func(tx *bolt.Tx) error {
		s, err := Inspect(tx)
		if err == nil && (len(s.Outbox) != 1 || s.Outbox[0].ID != "EV1") {
			err = fmt.Errorf("outbox %+v", s.Outbox)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
