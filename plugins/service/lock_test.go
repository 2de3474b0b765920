package service_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/boltdb"
	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/meshtest"
	"github.com/marketmesh/marketmesh/plugins/service"
)

// stateful starts a service named name that serves the bbolt file at path
// as its single instance.
func stateful(t *testing.T, agent *meshtest.Agent, name, path string) (*service.Service, *running) {
	t.Helper()
	db, err := boltdb.Open(path, func(*bolt.Tx) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc, err := service.New(name, mesh(agent), config.Server{Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Handle(Pinger{}); err != nil {
		t.Fatal(err)
	}
	if err := svc.Exclusive(db); err != nil {
		t.Fatal(err)
	}
	return svc, run(t, svc)
}

func lockValue(t *testing.T, agent *meshtest.Agent, key string) (holder map[string]any, session string) {
	t.Helper()
	pair, _, err := agent.Client.KV().Get(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pair == nil {
		return nil, ""
	}
	if err := json.Unmarshal(pair.Value, &holder); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return holder, pair.Session
}

// waitingFor waits until the instance's /readyz says it waits for the lock
// and why, and returns that report.
func waitingFor(t *testing.T, svc *service.Service) string {
	t.Helper()
	var body string
	meshtest.Eventually(t, 15*time.Second, func() error {
		r := get(t, "http://"+svc.OpsAddr()+"/readyz")
		body = r.body
		if r.status != 503 || !strings.Contains(r.body, "single-instance lock") {
			return fmt.Errorf("readyz %d %s", r.status, r.body)
		}
		return nil
	})
	return body
}

func TestExclusive(t *testing.T) {
	agent := meshtest.Consul(t)

	t.Run("a second instance with other data waits unregistered, and never takes over", func(t *testing.T) {
		dir := t.TempDir()
		first, firstRun := stateful(t, agent, "single", filepath.Join(dir, "a.db"))
		agent.WaitPassing(t, first.Name(), 1, 30*time.Second)
		holder, session := lockValue(t, agent, service.LockPrefix+first.Name())
		want := holder["dataset"]
		if want == nil || want == "" || session == "" {
			t.Fatalf("lock key: %v session %q", holder, session)
		}

		second, secondRun := stateful(t, agent, "single", filepath.Join(dir, "b.db"))
		waitingFor(t, second)
		entries, _, err := agent.Client.Catalog().Service(first.Name(), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Fatalf("%d instances registered while one waits, want 1", len(entries))
		}

		firstRun.cancel() // the holder stops for good: the lock is free, the key still names its data
		<-firstRun.done
		if firstRun.err != nil {
			t.Fatalf("first Run: %v", firstRun.err)
		}
		agent.WaitGone(t, first.Name(), 30*time.Second)
		holder, session = lockValue(t, agent, service.LockPrefix+first.Name())
		if session != "" || holder["dataset"] != want {
			t.Fatalf("after release: holder %v session %q, want unlocked key naming %s", holder, session, want)
		}
		// The waiter watches the key (a blocking query), so it saw the release at once;
		// give it two check intervals to do the wrong thing.
		time.Sleep(2 * time.Second)
		if r := get(t, "http://"+second.OpsAddr()+"/readyz"); r.status != 503 {
			t.Fatalf("the instance with other data is ready after the holder left: %d %s", r.status, r.body)
		}
		if entries, _ := agent.Passing(first.Name()); len(entries) != 0 {
			t.Fatalf("the instance with other data registered: %d passing", len(entries))
		}
		select {
		case <-secondRun.done:
			t.Fatalf("waiting instance's Run returned: %v", secondRun.err)
		default:
		}

		// An operator abandons the old data on purpose: the waiter takes over.
		if _, err := agent.Client.KV().Delete(service.LockPrefix+first.Name(), nil); err != nil {
			t.Fatal(err)
		}
		agent.WaitPassing(t, second.Name(), 1, 30*time.Second)
	})

	t.Run("a restart on the same data takes over from a holder that died without releasing", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "c.db")
		db, err := boltdb.Open(path, func(*bolt.Tx) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		id, err := boltdb.Dataset(db)
		if err != nil {
			t.Fatal(err)
		}
		db.Close()
		// The dead process's session outlives it by its TTL (and Consul's grace).
		key := service.LockPrefix + service.FullName("restarted")
		sess, _, err := agent.Client.Session().Create(&consul.SessionEntry{TTL: "60s", LockDelay: time.Millisecond}, nil)
		if err != nil {
			t.Fatal(err)
		}
		value, _ := json.Marshal(map[string]any{"dataset": id, "instance": "marketmesh.restarted-dead", "pid": 1})
		if ok, _, err := agent.Client.KV().Acquire(&consul.KVPair{Key: key, Value: value, Session: sess}, nil); err != nil || !ok {
			t.Fatalf("acquire as the dead process: %v %v", ok, err)
		}

		start := time.Now()
		svc, _ := stateful(t, agent, "restarted", path)
		agent.WaitPassing(t, svc.Name(), 1, 30*time.Second)
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("took over after %s: waited for the dead session's TTL", took)
		}
		holder, session := lockValue(t, agent, key)
		if session == sess || session == "" || holder["dataset"] != id {
			t.Fatalf("lock after takeover: %v session %q (dead one %q)", holder, session, sess)
		}
	})

	t.Run("the holder takes the lock again when Consul forgets it, and stops when another process took it", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "d.db")
		svc, r := stateful(t, agent, "forgetful", path)
		agent.WaitPassing(t, svc.Name(), 1, 30*time.Second)
		key := service.LockPrefix + svc.Name()
		holder, session := lockValue(t, agent, key)

		// Consul forgets (a dev agent restarted): session and key gone.
		if _, err := agent.Client.Session().Destroy(session, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := agent.Client.KV().Delete(key, nil); err != nil {
			t.Fatal(err)
		}
		meshtest.Eventually(t, 30*time.Second, func() error {
			h, s := lockValue(t, agent, key)
			if s == "" || s == session || h["dataset"] != holder["dataset"] {
				return fmt.Errorf("lock %v session %q", h, s)
			}
			return nil
		})

		// Another process on the same data took it over (it believed this one
		// dead): this one must stop instead of serving beside it.
		_, session = lockValue(t, agent, key)
		if _, err := agent.Client.Session().Destroy(session, nil); err != nil {
			t.Fatal(err)
		}
		other, _, err := agent.Client.Session().Create(&consul.SessionEntry{TTL: "60s", LockDelay: time.Millisecond}, nil)
		if err != nil {
			t.Fatal(err)
		}
		value, _ := json.Marshal(map[string]any{"dataset": holder["dataset"], "instance": "marketmesh.forgetful-other", "host": "elsewhere", "pid": 2})
		if ok, _, err := agent.Client.KV().Acquire(&consul.KVPair{Key: key, Value: value, Session: other}, nil); err != nil || !ok {
			t.Fatalf("acquire as the other process: %v %v", ok, err)
		}
		select {
		case <-r.done:
			if r.err == nil || !strings.Contains(r.err.Error(), "marketmesh.forgetful-other") {
				t.Fatalf("Run returned %v, want the lock-lost error naming the new holder", r.err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the instance kept serving after another process took its lock")
		}
		agent.WaitGone(t, svc.Name(), 30*time.Second)
	})
}
