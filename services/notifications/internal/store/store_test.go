package store_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/notificationsrpc"
	"github.com/marketmesh/marketmesh/plugins/paging"
	"github.com/marketmesh/marketmesh/services/notifications/internal/delivery"
	"github.com/marketmesh/marketmesh/services/notifications/internal/store"
)

var t0 = time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)

func open(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "n.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func queued(id, user, order string, at time.Time) delivery.Delivery {
	return delivery.Delivery{ID: id, UserID: user, OrderID: order, Channel: notificationsrpc.ChannelEmail,
		Template: notificationsrpc.TemplateWelcome, Status: notificationsrpc.StatusQueued, CreatedAt: at, NextAt: at}
}

func enqueue(t *testing.T, s *store.Store, ds ...delivery.Delivery) bool {
	t.Helper()
	var q bool
	err := s.Bolt().Update(func(tx *bolt.Tx) (err error) {
		q, err = store.Enqueue(tx, ds)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func never(string) bool { return false }

func TestEnqueueOnceAndDueOrder(t *testing.T) {
	s := open(t)
	if !enqueue(t, s, queued("b", "u", "", t0.Add(time.Second)), queued("a", "u", "", t0)) {
		t.Fatal("nothing reported queued")
	}
	// the same deliveries again (a redelivered event): nothing changes
	if enqueue(t, s, queued("a", "u", "", t0.Add(time.Hour))) {
		t.Fatal("a recorded delivery was queued again")
	}
	due, next, err := s.Due(t0, 10, never)
	if err != nil || len(due) != 1 || due[0].ID != "a" || !next.Equal(t0.Add(time.Second)) {
		t.Fatalf("due at t0: %v next %v err %v", due, next, err)
	}
	due, next, _ = s.Due(t0.Add(time.Minute), 10, func(id string) bool { return id == "a" })
	if len(due) != 1 || due[0].ID != "b" || !next.IsZero() {
		t.Fatalf("due later, a busy: %v next %v", due, next)
	}
	// sent: leaves the queue
	if _, err := s.Update("a", func(d *delivery.Delivery) error { d.Sent("log", "m1", t0); return nil }); err != nil {
		t.Fatal(err)
	}
	due, _, _ = s.Due(t0.Add(time.Minute), 10, never)
	if len(due) != 1 || due[0].ID != "b" {
		t.Fatalf("after a was sent: %v", due)
	}
	// an aborted update writes nothing
	boom := errors.New("boom")
	if _, err := s.Update("b", func(d *delivery.Delivery) error { d.Status = "sent"; return boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if d, _ := s.Get("b"); d.Status != notificationsrpc.StatusQueued {
		t.Fatalf("aborted update was written: %+v", d)
	}
	if _, err := s.Get("nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
}

func TestByUserPagesNewestFirstAndOnlyTheirs(t *testing.T) {
	s := open(t)
	var ds []delivery.Delivery
	for i := range 25 {
		ds = append(ds, queued(fmt.Sprintf("n%02d", i), "alice", "", t0.Add(time.Duration(i)*time.Second)))
	}
	ds = append(ds, queued("bob1", "bob", "", t0.Add(time.Hour)))
	enqueue(t, s, ds...)
	var seen []string
	token := ""
	for {
		page, next, err := s.ByUser("alice", 10, token)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range page {
			if d.UserID != "alice" {
				t.Fatalf("another user's delivery in alice's list: %+v", d)
			}
			seen = append(seen, d.ID)
		}
		if next == "" {
			break
		}
		token = next
	}
	if len(seen) != 25 || seen[0] != "n24" || seen[24] != "n00" {
		t.Fatalf("alice's pages: %v", seen)
	}
	if _, _, err := s.ByUser("bob", 10, token); !errors.Is(err, paging.ErrBadToken) {
		t.Fatalf("alice's token on bob's list: %v", err)
	}
	if _, _, err := s.ByUser("alice", 10, "garbage"); !errors.Is(err, paging.ErrBadToken) {
		t.Fatalf("garbage token: %v", err)
	}
}

func TestDeadLettersAndByOrder(t *testing.T) {
	s := open(t)
	enqueue(t, s, queued("x", "u", "o1", t0), queued("y", "v", "o1", t0), queued("z", "u", "o2", t0))
	for i, id := range []string{"x", "z"} {
		_, err := s.Update(id, func(d *delivery.Delivery) error {
			d.Fail("sendgrid", "400 bad", t0.Add(time.Duration(i)*time.Minute))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	dead, _, err := s.Dead(10, "")
	if err != nil || len(dead) != 2 || dead[0].ID != "z" || dead[1].ID != "x" {
		t.Fatalf("dead letters: %v %v", dead, err)
	}
	if _, err := s.Update("x", func(d *delivery.Delivery) error { return d.Requeue(t0) }); err != nil {
		t.Fatal(err)
	}
	dead, _, _ = s.Dead(10, "")
	if len(dead) != 1 || dead[0].ID != "z" {
		t.Fatalf("after retrying x: %v", dead)
	}
	if due, _, _ := s.Due(t0, 10, never); len(due) != 2 { // x again, and y
		t.Fatalf("due after retry: %v", due)
	}
	mine, err := s.ByOrder("u", "o1")
	if err != nil || len(mine) != 1 || mine[0].ID != "x" {
		t.Fatalf("u's deliveries for o1: %v %v", mine, err)
	}
}
