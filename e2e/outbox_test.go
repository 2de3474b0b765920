package e2e

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/meshtest"
	"github.com/marketmesh/marketmesh/plugins/service"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
)

// subscriber is an in-process service that records user.registered events,
// standing in for the notifications service.
type subscriber struct {
	mu       sync.Mutex
	received []usersrpc.UserRegistered
	handled  int
}

func (s *subscriber) seen() ([]usersrpc.UserRegistered, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]usersrpc.UserRegistered(nil), s.received...), s.handled
}

func TestUserRegisteredReachesASubscriberThatStartsLater(t *testing.T) {
	t0 := time.Now()
	m := startMesh(t)
	t.Logf("mesh up after %v", time.Since(t0).Round(time.Millisecond))
	// The event is written while nobody subscribes.
	id, _ := m.signup("gina@example.com")

	db, err := bolt.Open(filepath.Join(t.TempDir(), "sub.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Update(events.CreateBuckets); err != nil {
		t.Fatal(err)
	}
	sub := &subscriber{}
	consumer := events.NewConsumer(db)
	consumer.On(usersrpc.TopicUserRegistered, func(_ context.Context, _ *bolt.Tx, ev events.Event) error {
		var p usersrpc.UserRegistered
		if err := ev.Decode(&p); err != nil {
			return err
		}
		sub.mu.Lock()
		defer sub.mu.Unlock()
		sub.received = append(sub.received, p)
		sub.handled++
		return nil
	})
	mesh := config.Defaults()
	mesh.Consul.Address = m.consul.Addr
	mesh.Consul.CheckInterval = config.Duration(time.Second)
	mesh.Log.Level = "warn"
	mesh.DataDir = m.data
	// A subscriber the call table does not know: it lets any service of the
	// mesh (a Connect certificate) deliver, as long as the event's source is
	// the caller itself.
	svc, err := service.New("e2esubscriber", mesh, config.Server{Address: "127.0.0.1:0"}, service.DrainDelay(0), service.Policy(svcauth.AllowAll()))
	if err != nil {
		t.Fatal(err)
	}
	if err := consumer.Attach(svc); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	t1 := time.Now()
	var got []usersrpc.UserRegistered
	meshtest.Eventually(t, 30*time.Second, func() error {
		got, _ = sub.seen()
		if len(got) == 0 {
			return errors.New("no user.registered yet")
		}
		return nil
	})
	t.Logf("the event written before the subscriber existed arrived %v after it started", time.Since(t1).Round(time.Millisecond))
	if got[0].UserID != id || got[0].Email != "gina@example.com" {
		t.Fatalf("received %+v, want the registration of %s", got, id)
	}

	// A redelivery of the same event (as after a lost acknowledgement) is
	// acknowledged as a duplicate and not handled again.
	var ev events.Event
	err = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("events.inbox")).ForEach(func(k, _ []byte) error {
			ev.ID = string(k)
			return nil
		})
	})
	if err != nil || ev.ID == "" {
		t.Fatalf("inbox has no handled event ID: %v", err)
	}
	ev.Topic, ev.Source, ev.Payload = usersrpc.TopicUserRegistered, usersrpc.Service, []byte(`{"user_id":"`+id+`"}`)
	var ack events.Ack
	client := m.consul.Caller(t, usersrpc.Service) // as the publisher: anyone else is refused
	if err := client.Call(context.Background(), client.NewRequest("marketmesh.e2esubscriber", events.Endpoint, &ev), &ack); err != nil {
		t.Fatalf("redeliver: %v", err)
	}
	if !ack.Duplicate {
		t.Fatal("a redelivered event was not recognized as a duplicate")
	}
	if _, handled := sub.seen(); handled != 1 {
		t.Fatalf("handler ran %d times for one event", handled)
	}

	// A later registration is delivered too, exactly once.
	m.signup("hank@example.com")
	meshtest.Eventually(t, 10*time.Second, func() error {
		if got, _ = sub.seen(); len(got) != 2 {
			return fmt.Errorf("%d events received, want 2", len(got))
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond) // a second, unwanted delivery would show up here
	if got, handled := sub.seen(); handled != 2 || got[1].Email != "hank@example.com" {
		t.Fatalf("after the second registration: %+v (%d handled)", got, handled)
	}
}
