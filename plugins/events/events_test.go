package events_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/meshtest"
	"github.com/marketmesh/marketmesh/plugins/rpcclient"
	"github.com/marketmesh/marketmesh/plugins/service"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
)

var testRPC = config.RPC{
	RequestTimeout:  config.Duration(time.Second),
	DialTimeout:     config.Duration(300 * time.Millisecond),
	ReadRetries:     1,
	BreakerFailures: 10,
	BreakerOpenFor:  config.Duration(time.Second),
}

// openDB opens a bbolt file in a temp folder with the events buckets.
func openDB(t *testing.T) *bolt.DB {
	t.Helper()
	return openPath(t, filepath.Join(t.TempDir(), "store.db"))
}

// openPath opens the bbolt file at path and sets up the events buckets
// (migrating what the previous version wrote).
func openPath(t *testing.T, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Update(events.CreateBuckets); err != nil {
		t.Fatal(err)
	}
	return db
}

// outbox lists the IDs of the events in db's outbox, in outbox order.
func outbox(t *testing.T, db *bolt.DB) []string {
	t.Helper()
	var ids []string
	err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(events.OutboxBucket).ForEach(func(_, v []byte) error {
			var ev events.Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return err
			}
			ids = append(ids, ev.ID)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

type order struct {
	N int `json:"n"`
}

// newEvent builds an event the way a producer does before its transaction:
// a new ULID and the current time, chosen by the caller.
func newEvent(t *testing.T, source, topic string, payload any) events.Event {
	t.Helper()
	ev, err := events.NewEvent(ulid.Make().String(), time.Now().UTC(), source, topic, payload)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestAppendEventIsPartOfTheTransaction(t *testing.T) {
	db := openDB(t)
	errRollback := errors.New("rollback")

	rolledBack := newEvent(t, "marketmesh.orders", "orders.created", order{N: 1})
	err := db.Update(func(tx *bolt.Tx) error {
		if _, err := events.AppendEvent(tx, rolledBack); err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("Update = %v", err)
	}
	if ids := outbox(t, db); len(ids) != 0 {
		t.Fatalf("a rolled-back transaction left events %v in the outbox", ids)
	}

	ev := newEvent(t, "marketmesh.orders", "orders.created", order{N: 2})
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := events.AppendEvent(tx, ev)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if ids := outbox(t, db); !slices.Equal(ids, []string{ev.ID}) {
		t.Fatalf("outbox %v after a commit, want [%s]", ids, ev.ID)
	}
	var got order
	if err := ev.Decode(&got); err != nil || got.N != 2 {
		t.Fatalf("Decode = %+v, %v", got, err)
	}
	if ev.Source != "marketmesh.orders" || ev.Topic != "orders.created" || ev.Time.IsZero() {
		t.Fatalf("event %+v", ev)
	}
}

func TestAppendEventNeedsTheBuckets(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "bare.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ev := newEvent(t, "s", "t", 1)
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := events.AppendEvent(tx, ev)
		return err
	})
	if err == nil {
		t.Fatal("AppendEvent without CreateBuckets succeeded")
	}
}

func TestEventIDsSortInAppendOrder(t *testing.T) {
	db := openDB(t)
	var want []string
	for i := range 50 {
		ev := newEvent(t, "s", "t", order{N: i})
		err := db.Update(func(tx *bolt.Tx) error {
			_, err := events.AppendEvent(tx, ev)
			return err
		})
		want = append(want, ev.ID)
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := outbox(t, db); !slices.Equal(got, want) {
		t.Fatal("outbox keys are not in append order")
	}
}

// producer is a service's outbox with its relay running.
type producer struct {
	db      *bolt.DB
	relay   *events.Relay
	metrics *prometheus.Registry
}

func startProducer(t *testing.T, agent *meshtest.Agent, opts ...events.RelayOption) *producer {
	t.Helper()
	return runProducer(t, agent, openDB(t), opts...)
}

// runProducer runs a relay over db's outbox.
func runProducer(t *testing.T, agent *meshtest.Agent, db *bolt.DB, opts ...events.RelayOption) *producer {
	t.Helper()
	reg := service.NewRegistry(config.Consul{Address: agent.Addr}, "", "")
	c := rpcclient.New(reg, config.NewLive(testRPC), rpcclient.Metrics(prometheus.NewRegistry()), rpcclient.Identity(agent.Identity(t, "marketmesh.producer")))
	metrics := prometheus.NewRegistry()
	opts = append([]events.RelayOption{events.Poll(100 * time.Millisecond), events.Discover(200 * time.Millisecond), events.Metrics(metrics)}, opts...)
	relay := events.NewRelay(db, c, reg, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		relay.Run(ctx)
	}()
	t.Cleanup(func() { // runs before the db is closed
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("relay did not stop")
		}
	})
	return &producer{db: db, relay: relay, metrics: metrics}
}

// append commits one event (or rolls it back) and wakes the relay.
func (p *producer) append(t *testing.T, topic string, n int, commit bool) events.Event {
	t.Helper()
	ev := newEvent(t, "marketmesh.producer", topic, order{N: n})
	err := p.db.Update(func(tx *bolt.Tx) error {
		if _, err := events.AppendEvent(tx, ev); err != nil {
			return err
		}
		if !commit {
			return errors.New("rolled back")
		}
		return nil
	})
	if commit && err != nil {
		t.Fatal(err)
	}
	p.relay.Notify()
	return ev
}

// cursor is the ID of the event at subscriber's cursor ("" if none).
func (p *producer) cursor(t *testing.T, subscriber string) string {
	t.Helper()
	var id string
	if err := p.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(events.CursorBucket).Get([]byte(subscriber))
		if c == nil {
			return nil
		}
		raw := tx.Bucket(events.OutboxBucket).Get(c)
		if raw == nil {
			return nil
		}
		var ev events.Event
		err := json.Unmarshal(raw, &ev)
		id = ev.ID
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return id
}

// cursorSeq is subscriber's cursor; ok is false when the relay has none.
func cursorSeq(t *testing.T, db *bolt.DB, subscriber string) (seq uint64, ok bool) {
	t.Helper()
	if err := db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(events.CursorBucket).Get([]byte(subscriber))
		if ok = c != nil; ok {
			if len(c) != 8 {
				return fmt.Errorf("cursor %q is not a sequence", c)
			}
			seq = binary.BigEndian.Uint64(c)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return seq, ok
}

// appendEvent commits ev with AppendEvent and wakes the relay.
func (p *producer) appendEvent(t *testing.T, ev events.Event) events.Event {
	t.Helper()
	if err := p.db.Update(func(tx *bolt.Tx) error {
		_, err := events.AppendEvent(tx, ev)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	p.relay.Notify()
	return ev
}

// consumer is a service that subscribes to topics and records what it handled.
type consumer struct {
	name string
	db   *bolt.DB

	mu       sync.Mutex
	handled  []events.Event
	attempts []string // "<id>:ok" or "<id>:fail", in call order
	failures map[string]int
}

// startConsumer runs a marketmesh service named name (a real service.Service:
// gRPC server, Consul registration with an HTTP check) whose handler for each
// topic records the event; failFirst makes the handler fail an event's first
// deliveries.
func startConsumer(t *testing.T, agent *meshtest.Agent, name string, failFirst map[string]int, topics ...string) *consumer {
	t.Helper()
	return startConsumerWith(t, agent, name, failFirst, nil, topics...)
}

// startConsumerWith is startConsumer attaching with opts.
func startConsumerWith(t *testing.T, agent *meshtest.Agent, name string, failFirst map[string]int, opts []events.AttachOption, topics ...string) *consumer {
	t.Helper()
	if failFirst == nil {
		failFirst = map[string]int{}
	}
	c := &consumer{db: openDB(t), failures: failFirst}
	con := events.NewConsumer(c.db)
	for _, topic := range topics {
		con.On(topic, c.handle)
	}

	mesh := config.Defaults()
	mesh.Consul.Address = agent.Addr
	mesh.Consul.CheckInterval = config.Duration(time.Second)
	mesh.RPC = testRPC
	mesh.Log.Level = "error"
	mesh.DataDir = agent.DataDir
	svc, err := service.New(name, mesh, config.Server{Address: "127.0.0.1:0"}, service.DrainDelay(0), service.Policy(svcauth.AllowAll()))
	if err != nil {
		t.Fatal(err)
	}
	if err := con.Attach(svc, opts...); err != nil {
		t.Fatal(err)
	}
	c.name = svc.Name()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("consumer Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("consumer did not stop")
		}
	})
	agent.WaitPassing(t, c.name, 1, 10*time.Second)
	return c
}

// handle is the events.Handler: it writes into the consumer's own bucket in
// the delivery transaction and records the event.
func (c *consumer) handle(_ context.Context, tx *bolt.Tx, ev events.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failures[ev.ID] > 0 {
		c.failures[ev.ID]--
		c.attempts = append(c.attempts, ev.ID+":fail")
		return fmt.Errorf("not now")
	}
	b, err := tx.CreateBucketIfNotExists([]byte("orders"))
	if err != nil {
		return err
	}
	if err := b.Put([]byte(ev.ID), ev.Payload); err != nil {
		return err
	}
	c.attempts = append(c.attempts, ev.ID+":ok")
	c.handled = append(c.handled, ev)
	return nil
}

func (c *consumer) handledIDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, len(c.handled))
	for i, ev := range c.handled {
		ids[i] = ev.ID
	}
	return ids
}

func (c *consumer) attemptLog() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.attempts)
}

// waitHandled waits until the consumer has handled exactly want, in order.
func (c *consumer) waitHandled(t *testing.T, want []string) {
	t.Helper()
	meshtest.Eventually(t, 10*time.Second, func() error {
		got := c.handledIDs()
		if len(got) > len(want) {
			t.Fatalf("%s handled %v, more than %v", c.name, got, want)
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("%s handled %v, want %v", c.name, got, want)
		}
		return nil
	})
}

func TestRelay(t *testing.T) {
	agent := meshtest.Consul(t)

	t.Run("events appended before the consumer starts reach it in order, and only its topics", func(t *testing.T) {
		p := startProducer(t, agent)
		var want []string
		for i := range 6 {
			switch i {
			case 2:
				p.append(t, "late.created", i, false) // rolled back: never delivered
			case 4:
				p.append(t, "late.other", i, true) // nobody subscribes
			default:
				want = append(want, p.append(t, "late.created", i, true).ID)
			}
		}

		c := startConsumer(t, agent, "events-late", nil, "late.created")
		c.waitHandled(t, want)

		c.mu.Lock()
		defer c.mu.Unlock()
		for i, ev := range c.handled {
			var o order
			if err := ev.Decode(&o); err != nil {
				t.Fatal(err)
			}
			if ev.Topic != "late.created" || ev.Source != "marketmesh.producer" || o.N == 2 || o.N == 4 {
				t.Fatalf("handled event %d: %+v (payload %+v)", i, ev, o)
			}
		}
		// The handler's writes committed with the delivery.
		err := c.db.View(func(tx *bolt.Tx) error {
			if n := tx.Bucket([]byte("orders")).Stats().KeyN; n != len(want) {
				return fmt.Errorf("orders bucket holds %d keys, want %d", n, len(want))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a redelivered event is acknowledged as a duplicate and not handled twice", func(t *testing.T) {
		c := startConsumer(t, agent, "events-dedupe", nil, "dedupe.created")
		reg := service.NewRegistry(config.Consul{Address: agent.Addr}, "", "")
		cl := rpcclient.New(reg, config.NewLive(testRPC), rpcclient.Metrics(prometheus.NewRegistry()), rpcclient.Identity(agent.Identity(t, "marketmesh.producer")))

		ev := events.Event{ID: ulid.Make().String(), Topic: "dedupe.created", Source: "marketmesh.producer", Time: time.Now().UTC(), Payload: []byte(`{"n":1}`)}
		for i, wantDup := range []bool{false, true, true} {
			var ack events.Ack
			if err := cl.Call(context.Background(), cl.NewRequest(c.name, events.Endpoint, &ev), &ack); err != nil {
				t.Fatalf("delivery %d: %v", i, err)
			}
			if ack.Duplicate != wantDup {
				t.Fatalf("delivery %d: Duplicate = %v, want %v", i, ack.Duplicate, wantDup)
			}
		}
		if got := c.handledIDs(); !slices.Equal(got, []string{ev.ID}) {
			t.Fatalf("handled %v, want the event once", got)
		}

		// An event without ID or topic is refused.
		var ack events.Ack
		err := cl.Call(context.Background(), cl.NewRequest(c.name, events.Endpoint, &events.Event{Topic: "dedupe.created"}), &ack)
		if err == nil {
			t.Fatal("an event without an ID was accepted")
		}

		// The relay redelivers everything after its cursor is lost: nothing runs twice.
		p := startProducer(t, agent)
		want := []string{ev.ID, p.append(t, "dedupe.created", 2, true).ID, p.append(t, "dedupe.created", 3, true).ID}
		c.waitHandled(t, want)
		last := want[len(want)-1]
		meshtest.Eventually(t, 15*time.Second, func() error {
			if got := p.cursor(t, c.name); got != last {
				return fmt.Errorf("cursor %q, want %q", got, last)
			}
			return nil
		})
		if err := p.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(events.CursorBucket).Delete([]byte(c.name))
		}); err != nil {
			t.Fatal(err)
		}
		p.relay.Notify()
		meshtest.Eventually(t, 15*time.Second, func() error {
			if got := p.cursor(t, c.name); got != last {
				return fmt.Errorf("cursor %q after the reset, want %q again", got, last)
			}
			return nil
		})
		if got := c.handledIDs(); !slices.Equal(got, want) {
			t.Fatalf("after redelivery handled %v, want %v", got, want)
		}
	})

	t.Run("an event whose handler fails is not acknowledged and is delivered again, still in order", func(t *testing.T) {
		p := startProducer(t, agent)
		first := p.append(t, "flaky.created", 1, true)
		second := p.append(t, "flaky.created", 2, true)
		c := startConsumer(t, agent, "events-flaky", map[string]int{first.ID: 2}, "flaky.created")

		c.waitHandled(t, []string{first.ID, second.ID})
		want := []string{first.ID + ":fail", first.ID + ":fail", first.ID + ":ok", second.ID + ":ok"}
		if got := c.attemptLog(); !slices.Equal(got, want) {
			t.Fatalf("attempts %v, want %v", got, want)
		}
		err := c.db.View(func(tx *bolt.Tx) error {
			if tx.Bucket(events.InboxBucket).Get([]byte(first.ID)) == nil {
				return errors.New("the handled event is not in the inbox")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
