package events_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/meshtest"
)

// eventAt is an event of topic whose ID and time are at.
func eventAt(t *testing.T, topic string, at time.Time, n int) events.Event {
	t.Helper()
	ev, err := events.NewEvent(ulid.MustNew(ulid.Timestamp(at), ulid.DefaultEntropy()).String(), at.UTC(), "marketmesh.producer", topic, order{N: n})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// raw lists db's outbox as key → value.
func raw(t *testing.T, db *bolt.DB) [][2]string {
	t.Helper()
	var kv [][2]string
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(events.OutboxBucket).ForEach(func(k, v []byte) error {
			kv = append(kv, [2]string{string(k), string(v)})
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return kv
}

func seqKey(seq uint64) string { return string(binary.BigEndian.AppendUint64(nil, seq)) }

func TestOutboxKeysAreSequencesNotIDs(t *testing.T) {
	db := openDB(t)
	now := time.Now()
	// The clock steps back an hour between the two events.
	first, second := eventAt(t, "t", now, 1), eventAt(t, "t", now.Add(-time.Hour), 2)
	for i, ev := range []events.Event{first, second} {
		err := db.Update(func(tx *bolt.Tx) error {
			seq, err := events.AppendEvent(tx, ev)
			if err == nil && seq != uint64(i+1) {
				err = fmt.Errorf("AppendEvent = %d, want %d", seq, i+1)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	kv := raw(t, db)
	if len(kv) != 2 || kv[0][0] != seqKey(1) || kv[1][0] != seqKey(2) {
		t.Fatalf("outbox keys %q, want the sequences 1 and 2", kv)
	}
	if got := outbox(t, db); !slices.Equal(got, []string{first.ID, second.ID}) {
		t.Fatalf("outbox %v, want append order %v", got, []string{first.ID, second.ID})
	}
}

func TestAppendEventWritesTheCallersEventExactly(t *testing.T) {
	ev := eventAt(t, "t", time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), 7)
	var outs [][][2]string
	for range 2 { // the same write applied to two copies of the same state
		db := openDB(t)
		if err := db.Update(func(tx *bolt.Tx) error { _, err := events.AppendEvent(tx, ev); return err }); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, raw(t, db))
	}
	if !slices.Equal(outs[0], outs[1]) {
		t.Fatalf("the same AppendEvent wrote %q and %q", outs[0], outs[1])
	}
	var got events.Event
	if err := json.Unmarshal([]byte(outs[0][0][1]), &got); err != nil || got.ID != ev.ID || !got.Time.Equal(ev.Time) {
		t.Fatalf("stored %+v (%v), want the caller's ID and time %s %s", got, err, ev.ID, ev.Time)
	}

	db := openDB(t)
	for _, bad := range []events.Event{{Topic: "t", Time: ev.Time}, {ID: ev.ID, Topic: "t"}, {ID: ev.ID, Time: ev.Time}} {
		err := db.Update(func(tx *bolt.Tx) error { _, err := events.AppendEvent(tx, bad); return err })
		if err == nil {
			t.Fatalf("AppendEvent(%+v) without an ID, topic or time succeeded", bad)
		}
	}
}

// writeOldFormat writes a bbolt file the way the previous version did:
// outbox keys are event IDs, cursors hold event IDs.
func writeOldFormat(t *testing.T, path string, evs []events.Event, cursors map[string]string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		out, err := tx.CreateBucketIfNotExists(events.OutboxBucket)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			v, _ := json.Marshal(ev)
			if err := out.Put([]byte(ev.ID), v); err != nil {
				return err
			}
		}
		cur, err := tx.CreateBucketIfNotExists(events.CursorBucket)
		if err != nil {
			return err
		}
		for svc, id := range cursors {
			if err := cur.Put([]byte(svc), []byte(id)); err != nil {
				return err
			}
		}
		_, err = tx.CreateBucketIfNotExists(events.InboxBucket)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCreateBucketsMigratesTheIDKeyedOutbox(t *testing.T) {
	base := time.Now().Add(-time.Hour)
	var evs []events.Event
	for i := range 4 {
		evs = append(evs, eventAt(t, "t", base.Add(time.Duration(i)*time.Minute), i))
	}
	gone := eventAt(t, "t", base.Add(-time.Hour), 9).ID         // pruned before the upgrade
	between := eventAt(t, "t", base.Add(150*time.Second), 9).ID // not in the outbox, after evs[2]
	path := filepath.Join(t.TempDir(), "old.db")
	writeOldFormat(t, path, evs, map[string]string{"a": evs[1].ID, "b": gone, "c": between, "d": evs[3].ID})

	db := openPath(t, path)
	check := func() {
		t.Helper()
		kv := raw(t, db)
		if len(kv) != 4 {
			t.Fatalf("outbox %q after the migration", kv)
		}
		for i, e := range kv {
			if e[0] != seqKey(uint64(i+1)) {
				t.Fatalf("key %d is %q, want sequence %d", i, e[0], i+1)
			}
		}
		if got, want := outbox(t, db), []string{evs[0].ID, evs[1].ID, evs[2].ID, evs[3].ID}; !slices.Equal(got, want) {
			t.Fatalf("outbox %v, want %v", got, want)
		}
		for svc, want := range map[string]uint64{"a": 2, "b": 0, "c": 3, "d": 4} {
			if got, ok := cursorSeq(t, db, svc); !ok || got != want {
				t.Fatalf("cursor of %s = %d (%v), want %d", svc, got, ok, want)
			}
		}
	}
	check()
	// Once only: opening again changes nothing, and new events follow.
	if err := db.Update(events.CreateBuckets); err != nil {
		t.Fatal(err)
	}
	check()
	next := eventAt(t, "t", time.Now(), 5)
	if err := db.Update(func(tx *bolt.Tx) error {
		seq, err := events.AppendEvent(tx, next)
		if err == nil && seq != 5 {
			err = fmt.Errorf("the first event after the migration got sequence %d, want 5", seq)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func TestPruneKeepsWhatASubscriberHasNotAcknowledged(t *testing.T) {
	db := openDB(t)
	old := time.Now().Add(-30 * 24 * time.Hour)
	for i := range 4 {
		at := old
		if i == 3 {
			at = time.Now() // acknowledged by all, but recent
		}
		if err := db.Update(func(tx *bolt.Tx) error { _, err := events.AppendEvent(tx, eventAt(t, "t", at, i)); return err }); err != nil {
			t.Fatal(err)
		}
	}
	all := outbox(t, db)
	setCursor := func(svc string, seq uint64) {
		t.Helper()
		if err := db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(events.CursorBucket).Put([]byte(svc), []byte(seqKey(seq)))
		}); err != nil {
			t.Fatal(err)
		}
	}
	relay := events.NewRelay(db, nil, nil, events.Metrics(prometheus.NewRegistry()))

	setCursor("fast", 4)
	setCursor("slow", 1) // has acknowledged only the first event
	relay.Prune(time.Now())
	if got := outbox(t, db); !slices.Equal(got, all[1:]) {
		t.Fatalf("outbox %v after the prune, want %v: only what every subscriber acknowledged", got, all[1:])
	}
	setCursor("slow", 4)
	relay.Prune(time.Now())
	if got := outbox(t, db); !slices.Equal(got, all[3:]) {
		t.Fatalf("outbox %v after the prune, want %v: acknowledged by all but recent stays", got, all[3:])
	}
}

// metricValue is the value of the series of name for subscriber (with
// result when not empty), or 0 when there is none.
func metricValue(t *testing.T, reg *prometheus.Registry, name, subscriber, result string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if (l.GetName() == "subscriber" && l.GetValue() != subscriber) || (l.GetName() == "result" && l.GetValue() != result) {
					continue series
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func TestRelayReliability(t *testing.T) {
	agent := meshtest.Consul(t)

	t.Run("an event whose ID and time are before the cursor (the clock stepped back) is still delivered", func(t *testing.T) {
		p := startProducer(t, agent)
		c := startConsumer(t, agent, "events-clock", nil, "clock.created")
		now := time.Now()
		first := p.appendEvent(t, eventAt(t, "clock.created", now, 1))
		c.waitHandled(t, []string{first.ID})
		second := p.appendEvent(t, eventAt(t, "clock.created", now.Add(-time.Hour), 2))
		c.waitHandled(t, []string{first.ID, second.ID})
	})

	t.Run("an outbox and cursors written by the previous version resume where they were", func(t *testing.T) {
		base := time.Now().Add(-time.Hour)
		var evs []events.Event
		for i := range 4 {
			evs = append(evs, eventAt(t, "upgrade.created", base.Add(time.Duration(i)*time.Minute), i))
		}
		path := filepath.Join(t.TempDir(), "old.db")
		writeOldFormat(t, path, evs, map[string]string{"marketmesh.events-upgrade": evs[1].ID})
		p := runProducer(t, agent, openPath(t, path))
		c := startConsumer(t, agent, "events-upgrade", nil, "upgrade.created")
		c.waitHandled(t, []string{evs[2].ID, evs[3].ID})
		next := p.appendEvent(t, eventAt(t, "upgrade.created", time.Now(), 5))
		c.waitHandled(t, []string{evs[2].ID, evs[3].ID, next.ID})
	})

	t.Run("a subscriber attached FromLatest gets only the events from its first attach on, however late the relay sees it", func(t *testing.T) {
		// A slow discovery: the relay sees new subscribers a while after they attach.
		p := startProducer(t, agent, events.Discover(2*time.Second))
		hourAgo := time.Now().Add(-time.Hour)
		past := []string{
			p.appendEvent(t, eventAt(t, "fresh.created", hourAgo, 1)).ID,
			p.appendEvent(t, eventAt(t, "fresh.created", hourAgo, 2)).ID,
		}
		fresh := startConsumerWith(t, agent, "events-fresh", nil, []events.AttachOption{events.FromLatest()}, "fresh.created")
		// After the attach, before the relay's next discovery: still the subscriber's.
		between := p.append(t, "fresh.created", 3, true).ID
		history := startConsumer(t, agent, "events-history", nil, "fresh.created")
		next := p.append(t, "fresh.created", 4, true).ID
		history.waitHandled(t, append(past, between, next))
		fresh.waitHandled(t, []string{between, next})
		if seq, ok := cursorSeq(t, p.db, fresh.name); !ok || seq != 4 {
			t.Fatalf("cursor of the new subscriber %d (%v), want 4", seq, ok)
		}
	})

	t.Run("an event the subscriber keeps refusing becomes a dead letter, the stream goes on, and a replay delivers it", func(t *testing.T) {
		p := startProducer(t, agent, events.MaxAttempts(3), events.MaxBackoff(100*time.Millisecond))
		poison := eventAt(t, "poison.created", time.Now().Add(-time.Hour), 1)
		c := startConsumer(t, agent, "events-poison", map[string]int{poison.ID: 1 << 30}, "poison.created")
		p.appendEvent(t, poison)
		after := p.append(t, "poison.created", 2, true)
		c.waitHandled(t, []string{after.ID})
		if got, want := c.attemptLog(), []string{poison.ID + ":fail", poison.ID + ":fail", poison.ID + ":fail", after.ID + ":ok"}; !slices.Equal(got, want) {
			t.Fatalf("attempts %v, want %v", got, want)
		}
		dead, err := p.relay.DeadLetters("")
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) != 1 || dead[0].Subscriber != c.name || dead[0].Seq != 1 || dead[0].Event.ID != poison.ID ||
			dead[0].Attempts != 3 || dead[0].LastError == "" || dead[0].Time.IsZero() {
			t.Fatalf("dead letters %+v", dead)
		}
		meshtest.Eventually(t, 10*time.Second, func() error {
			if seq, _ := cursorSeq(t, p.db, c.name); seq != 2 {
				return fmt.Errorf("cursor %d, want 2: past the dead letter and the next event", seq)
			}
			if n := metricValue(t, p.metrics, "marketmesh_events_outbox_backlog", c.name, ""); n != 0 {
				return fmt.Errorf("backlog %v", n)
			}
			return nil
		})
		for name, want := range map[string]float64{"marketmesh_events_dead_letters": 1, "marketmesh_events_lag_seconds": 0} {
			if got := metricValue(t, p.metrics, name, c.name, ""); got != want {
				t.Fatalf("%s = %v, want %v", name, got, want)
			}
		}
		for result, want := range map[string]float64{"refused": 3, "ok": 1} {
			if got := metricValue(t, p.metrics, "marketmesh_events_deliveries_total", c.name, result); got != want {
				t.Fatalf("deliveries %s = %v, want %v", result, got, want)
			}
		}

		if err := p.relay.Replay(context.Background(), c.name, 1); err == nil {
			t.Fatal("a replay the subscriber refuses succeeded")
		}
		if dead, _ := p.relay.DeadLetters(c.name); len(dead) != 1 {
			t.Fatalf("a refused replay left dead letters %+v", dead)
		}
		c.mu.Lock()
		c.failures[poison.ID] = 0
		c.mu.Unlock()
		if err := p.relay.Replay(context.Background(), c.name, 1); err != nil {
			t.Fatal(err)
		}
		c.waitHandled(t, []string{after.ID, poison.ID})
		if dead, _ := p.relay.DeadLetters(c.name); len(dead) != 0 {
			t.Fatalf("dead letters %+v after a successful replay", dead)
		}
		if got := metricValue(t, p.metrics, "marketmesh_events_dead_letters", c.name, ""); got != 0 {
			t.Fatalf("dead letters gauge %v after the replay", got)
		}
		if err := p.relay.Replay(context.Background(), c.name, 1); !errors.Is(err, events.ErrNoDeadLetter) {
			t.Fatalf("replaying it again = %v, want ErrNoDeadLetter", err)
		}
	})

	t.Run("backlog and lag show a subscriber that is behind", func(t *testing.T) {
		p := startProducer(t, agent, events.MaxBackoff(100*time.Millisecond), events.MaxAttempts(1<<30))
		stuck := eventAt(t, "behind.created", time.Now().Add(-time.Hour), 1)
		c := startConsumer(t, agent, "events-behind", map[string]int{stuck.ID: 1 << 30}, "behind.created")
		p.appendEvent(t, stuck)
		p.append(t, "behind.other", 2, true)
		later := p.append(t, "behind.created", 3, true)
		meshtest.Eventually(t, 10*time.Second, func() error {
			backlog := metricValue(t, p.metrics, "marketmesh_events_outbox_backlog", c.name, "")
			lag := metricValue(t, p.metrics, "marketmesh_events_lag_seconds", c.name, "")
			if backlog != 3 || lag < 3600 {
				return fmt.Errorf("backlog %v, lag %v; want 3 and at least an hour", backlog, lag)
			}
			return nil
		})
		c.mu.Lock()
		c.failures[stuck.ID] = 0
		c.mu.Unlock()
		c.waitHandled(t, []string{stuck.ID, later.ID})
		meshtest.Eventually(t, 10*time.Second, func() error {
			backlog := metricValue(t, p.metrics, "marketmesh_events_outbox_backlog", c.name, "")
			lag := metricValue(t, p.metrics, "marketmesh_events_lag_seconds", c.name, "")
			if backlog != 0 || lag != 0 {
				return fmt.Errorf("backlog %v, lag %v after catching up; want 0 and 0", backlog, lag)
			}
			return nil
		})
	})
}
