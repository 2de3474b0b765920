package events_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go-micro.dev/v4/client"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/meshtest"
	"github.com/marketmesh/marketmesh/plugins/rpcclient"
	"github.com/marketmesh/marketmesh/plugins/rpcfake"
	"github.com/marketmesh/marketmesh/plugins/service"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
)

// adminMesh is the mesh configuration of the test's services: the agent's
// Consul and data dir, where the shared mesh key lives.
func adminMesh(agent *meshtest.Agent) config.Mesh {
	mesh := config.Defaults()
	mesh.Consul.Address = agent.Addr
	mesh.Consul.CheckInterval = config.Duration(time.Second)
	mesh.RPC = testRPC
	mesh.Log.Level = "error"
	mesh.DataDir = agent.DataDir
	return mesh
}

// startAdminProducer runs a producing service the way services/*/main.go
// do: a real service.Service whose relay delivers its outbox and whose
// EventsAdmin handler serves that relay's dead letters. It returns the
// producer and the service's registry name.
func startAdminProducer(t *testing.T, agent *meshtest.Agent, opts ...events.RelayOption) (*producer, string) {
	t.Helper()
	db := openDB(t)
	svc, err := service.New("producer", adminMesh(agent), config.Server{Address: "127.0.0.1:0"}, service.DrainDelay(0), service.Policy(svcauth.AllowAll()))
	if err != nil {
		t.Fatal(err)
	}
	metrics := prometheus.NewRegistry()
	opts = append([]events.RelayOption{events.Poll(100 * time.Millisecond), events.Discover(200 * time.Millisecond), events.Metrics(metrics)}, opts...)
	relay := events.NewRelay(db, svc.Client(), svc.Registry(), opts...)
	if err := svc.Handle(events.NewAdmin(relay)); err != nil {
		t.Fatal(err)
	}
	svc.Go(relay.Run)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- svc.Run(ctx) }()
	t.Cleanup(func() { // runs before the db is closed
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("producer Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("producer did not stop")
		}
	})
	agent.WaitPassing(t, svc.Name(), 1, 10*time.Second)
	return &producer{db: db, relay: relay, metrics: metrics}, svc.Name()
}

// callerClient is a client stack proving the service named as with a
// certificate from agent's Connect CA (in plain text, without any
// certificate, when agent is nil).
func callerClient(t *testing.T, agent *meshtest.Agent, reg *meshtest.Agent, as string) client.Client {
	t.Helper()
	opts := []rpcclient.Option{rpcclient.Metrics(prometheus.NewRegistry())}
	if agent != nil {
		opts = append(opts, rpcclient.Identity(agent.Identity(t, as)))
	}
	return rpcclient.New(service.NewRegistry(config.Consul{Address: reg.Addr}, "", ""), config.NewLive(testRPC), opts...)
}

func TestAdminListsAndReplaysDeadLettersOverRPC(t *testing.T) {
	agent := meshtest.Consul(t)
	p, producerName := startAdminProducer(t, agent, events.MaxAttempts(2), events.MaxBackoff(100*time.Millisecond))
	poison := eventAt(t, "admin.created", time.Now().Add(-time.Minute), 1)
	c := startConsumer(t, agent, "events-admin-subscriber", map[string]int{poison.ID: 1 << 30}, "admin.created")
	p.appendEvent(t, poison)
	after := p.append(t, "admin.created", 2, true)
	c.waitHandled(t, []string{after.ID})
	meshtest.Eventually(t, 10*time.Second, func() error {
		if seq, _ := cursorSeq(t, p.db, c.name); seq != 2 {
			return fmt.Errorf("cursor %d, want 2: past the dead letter", seq)
		}
		return nil
	})

	asAPI := events.NewAdminClient(callerClient(t, agent, agent, events.AdminCaller), producerName)
	ctx := context.Background()
	stillDead := func(t *testing.T) {
		t.Helper()
		if dead, err := p.relay.DeadLetters(c.name); err != nil || len(dead) != 1 || dead[0].Seq != 1 {
			t.Fatalf("dead letters %+v (%v), want the poison event still there", dead, err)
		}
	}

	t.Run("the api lists the dead letters of every subscriber or of one", func(t *testing.T) {
		for _, subscriber := range []string{"", c.name} {
			items, err := asAPI.DeadLetters(ctx, subscriber)
			if err != nil {
				t.Fatal(err)
			}
			if len(items) != 1 {
				t.Fatalf("DeadLetters(%q) = %+v, want the poison event", subscriber, items)
			}
			dl := items[0]
			if dl.Subscriber != c.name || dl.Seq != 1 || dl.Event.ID != poison.ID || dl.Event.Topic != "admin.created" ||
				dl.Attempts != 2 || dl.LastError == "" || dl.Time.IsZero() || !bytes.Equal(dl.Event.Payload, poison.Payload) {
				t.Fatalf("DeadLetters(%q) = %+v", subscriber, dl)
			}
		}
		items, err := asAPI.DeadLetters(ctx, "marketmesh.nobody")
		if err != nil || len(items) != 0 {
			t.Fatalf("DeadLetters of a subscriber without any = %+v, %v; want none", items, err)
		}
	})

	t.Run("only the api may call EventsAdmin", func(t *testing.T) {
		admin := events.NewAdminClient(callerClient(t, agent, agent, "marketmesh.orders"), producerName)
		_, err := admin.DeadLetters(ctx, "")
		if me := rpcfake.RequireCode(t, err, "events", 403); !strings.Contains(me.Detail, events.AdminDeadLettersEndpoint) {
			t.Errorf("another service: DeadLetters refused with %q, which does not name the endpoint", me.Detail)
		}
		rpcfake.RequireCode(t, admin.Replay(ctx, c.name, 1), "events", 403)
		// Without a certificate from the mesh's CA there is no call at all:
		// the TLS handshake fails and the client reports the service unavailable.
		foreign := meshtest.Consul(t) // another Consul: another CA
		for name, cl := range map[string]client.Client{
			"a caller without a certificate":        callerClient(t, nil, agent, ""),
			"the api's name from another mesh's CA": callerClient(t, foreign, agent, events.AdminCaller),
		} {
			t.Run(name, func(t *testing.T) {
				admin := events.NewAdminClient(cl, producerName)
				_, err := admin.DeadLetters(ctx, "")
				rpcfake.RequireCode(t, err, producerName, 503)
				rpcfake.RequireCode(t, admin.Replay(ctx, c.name, 1), producerName, 503)
			})
		}
		stillDead(t)
	})

	t.Run("an unknown dead letter is 404 dead_letter_not_found", func(t *testing.T) {
		rpcfake.RequireCode(t, asAPI.Replay(ctx, c.name, 2), events.CodeDeadLetterNotFound, 404)
		rpcfake.RequireCode(t, asAPI.Replay(ctx, "marketmesh.nobody", 1), events.CodeDeadLetterNotFound, 404)
	})

	t.Run("a replay without subscriber or sequence is 400", func(t *testing.T) {
		rpcfake.RequireCode(t, asAPI.Replay(ctx, "", 1), "events", 400)
		rpcfake.RequireCode(t, asAPI.Replay(ctx, c.name, 0), "events", 400)
	})

	t.Run("a replay the subscriber refuses again is 409 with its answer, and the dead letter stays", func(t *testing.T) {
		me := rpcfake.RequireCode(t, asAPI.Replay(ctx, c.name, 1), events.CodeReplayRefused, 409)
		// The consumer's answer to a failed handler: "handling <topic> <id> failed".
		if !strings.Contains(me.Detail, c.name) || !strings.Contains(me.Detail, "handling admin.created "+poison.ID) {
			t.Errorf("409 detail %q does not name the subscriber and its answer", me.Detail)
		}
		stillDead(t)
	})

	t.Run("a replay to a subscriber that cannot be reached is 503, and the dead letter stays", func(t *testing.T) {
		// A subscriber gone from the registry since its event died. The key
		// is the dead-letter bucket's layout: subscriber, 0, big-endian seq.
		gone := events.DeadLetter{Subscriber: "marketmesh.events-admin-gone", Seq: 1, Event: poison, Attempts: 2, LastError: "x", Time: time.Now().UTC()}
		raw, err := json.Marshal(gone)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.db.Update(func(tx *bolt.Tx) error {
			k := binary.BigEndian.AppendUint64(append([]byte(gone.Subscriber), 0), gone.Seq)
			return tx.Bucket(events.DeadBucket).Put(k, raw)
		}); err != nil {
			t.Fatal(err)
		}
		me := rpcfake.RequireCode(t, asAPI.Replay(ctx, gone.Subscriber, 1), "events", 503)
		if !strings.Contains(me.Detail, gone.Subscriber) {
			t.Errorf("503 detail %q does not name the subscriber", me.Detail)
		}
		if dead, err := p.relay.DeadLetters(gone.Subscriber); err != nil || len(dead) != 1 {
			t.Fatalf("dead letters %+v (%v) after a failed replay, want it kept", dead, err)
		}
	})

	t.Run("a replay the subscriber accepts delivers the event and removes the dead letter", func(t *testing.T) {
		c.mu.Lock()
		c.failures[poison.ID] = 0
		c.mu.Unlock()
		if err := asAPI.Replay(ctx, c.name, 1); err != nil {
			t.Fatal(err)
		}
		c.waitHandled(t, []string{after.ID, poison.ID})
		items, err := asAPI.DeadLetters(ctx, c.name)
		if err != nil || len(items) != 0 {
			t.Fatalf("dead letters %+v (%v) after the replay, want none", items, err)
		}
		rpcfake.RequireCode(t, asAPI.Replay(ctx, c.name, 1), events.CodeDeadLetterNotFound, 404)
	})
}

func TestAdminClientMatchesTheHandler(t *testing.T) {
	fake := &rpcfake.Client{}
	admin := events.NewAdminClient(fake, "marketmesh.orders")
	ctx := context.Background()
	rpcfake.CheckContract(t, "marketmesh.orders", "EventsAdmin.", &events.EventsAdmin{}, fake, map[string]func() error{
		"DeadLetters": func() error { _, err := admin.DeadLetters(ctx, "marketmesh.products"); return err },
		"Replay":      func() error { return admin.Replay(ctx, "marketmesh.products", 3) },
	})
	fake.Reset()
	if err := admin.Replay(ctx, "marketmesh.products", 3); err != nil {
		t.Fatal(err)
	}
	if calls := fake.Calls(); len(calls) != 1 || *calls[0].Req.(*events.ReplayRequest) != (events.ReplayRequest{Subscriber: "marketmesh.products", Seq: 3}) {
		t.Errorf("Replay sent %+v", calls)
	}
}
