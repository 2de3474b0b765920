package handler_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	merrors "go-micro.dev/v4/errors"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/notificationsrpc"
	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
	"github.com/marketmesh/marketmesh/services/notifications/internal/delivery"
	"github.com/marketmesh/marketmesh/services/notifications/internal/handler"
	"github.com/marketmesh/marketmesh/services/notifications/internal/store"
)

var t0 = time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)

func open(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "notifications.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return s
}

// kicks counts the sender's wake-ups.
type kicks struct{ n atomic.Int32 }

func (k *kicks) kick()      { k.n.Add(1) }
func (k *kicks) count() int { return int(k.n.Load()) }

// user is the context of a call the api makes for a signed-in user, as the
// server hands it to the handler.
func user(id string) context.Context { return rpcmeta.WithCaller(context.Background(), id) }

// operator is the context of a call the api proved it made (svcauth).
func operator() context.Context {
	return svcauth.WithCaller(context.Background(), "marketmesh.api")
}

func queued(id, userID, order string, at time.Time) delivery.Delivery {
	return delivery.Delivery{ID: id, EventID: "ev-" + id, Topic: ordersrpc.TopicOrderPaid, UserID: userID, OrderID: order,
		Channel: notificationsrpc.ChannelEmail, Template: notificationsrpc.TemplateOrderPaidBuyer,
		Payload: json.RawMessage(`{}`), Status: notificationsrpc.StatusQueued, CreatedAt: at, NextAt: at}
}

func enqueue(t *testing.T, s *store.Store, ds ...delivery.Delivery) {
	t.Helper()
	err := s.Bolt().Update(func(tx *bolt.Tx) error {
		_, err := store.Enqueue(tx, ds)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// update applies fn to a stored delivery, as the sender records outcomes.
func update(t *testing.T, s *store.Store, id string, fn func(*delivery.Delivery)) {
	t.Helper()
	if _, err := s.Update(id, func(d *delivery.Delivery) error { fn(d); return nil }); err != nil {
		t.Fatal(err)
	}
}

func event(t *testing.T, id, topic string, payload any) events.Event {
	t.Helper()
	ev, err := events.NewEvent(id, t0, "test", topic, payload)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// deliver runs the event handler in a bbolt transaction as the events
// consumer does; rollback aborts the transaction after the handler returns.
// It returns the handler's error and the kicks seen before the commit.
func deliver(t *testing.T, s *store.Store, k *kicks, ev events.Event, rollback bool) (handlerErr error, kicksInTx int) {
	t.Helper()
	h := handler.OnEvent(k.kick, func() time.Time { return t0.Add(time.Minute) })
	errRollback := errors.New("rolled back")
	err := s.Bolt().Update(func(tx *bolt.Tx) error {
		handlerErr = h(context.Background(), tx, ev)
		kicksInTx = k.count()
		if handlerErr != nil {
			return handlerErr
		}
		if rollback {
			return errRollback
		}
		return nil
	})
	if err != nil && !errors.Is(err, errRollback) && !errors.Is(err, handlerErr) {
		t.Fatal(err)
	}
	return handlerErr, kicksInTx
}

// code returns the go-micro status and ID of err, 0 and "" for another error.
func code(err error) (int32, string) {
	var me *merrors.Error
	if errors.As(err, &me) {
		return me.Code, me.Id
	}
	return 0, ""
}

func all(t *testing.T, s *store.Store) map[string]int {
	t.Helper()
	counts, err := s.Counts()
	if err != nil {
		t.Fatal(err)
	}
	return counts
}

func TestAnEventQueuesItsDeliveriesAndWakesTheSenderAfterTheCommit(t *testing.T) {
	s := open(t)
	k := &kicks{}
	ev := event(t, "ev-1", usersrpc.TopicUserRegistered, usersrpc.UserRegistered{UserID: "u-ada", Email: "ada@example.com", Name: "Ada"})
	id := delivery.ID(ev.ID, "u-ada", notificationsrpc.ChannelEmail, notificationsrpc.TemplateWelcome)

	// Rolled back: nothing recorded, nobody woken.
	if err, _ := deliver(t, s, k, ev, true); err != nil {
		t.Fatalf("handler = %v", err)
	}
	if _, err := s.Get(id); !errors.Is(err, store.ErrNotFound) || k.count() != 0 {
		t.Fatalf("after a rollback: Get = %v, %d kicks; want nothing recorded and no kick", err, k.count())
	}

	err, inTx := deliver(t, s, k, ev, false)
	if err != nil {
		t.Fatalf("handler = %v", err)
	}
	if inTx != 0 || k.count() != 1 {
		t.Errorf("%d kicks inside the transaction, %d after the commit; want 0 and 1", inTx, k.count())
	}
	d, err := s.Get(id)
	if err != nil || d.Status != notificationsrpc.StatusQueued || d.Attempts != 0 || d.UserID != "u-ada" ||
		d.Template != notificationsrpc.TemplateWelcome || !d.NextAt.Equal(t0) {
		t.Fatalf("recorded %+v, %v; want the welcome email queued for u-ada", d, err)
	}

	// Redelivered: still one delivery, nothing new to wake for.
	if err, _ := deliver(t, s, k, ev, false); err != nil {
		t.Fatalf("handler again = %v", err)
	}
	if counts := all(t, s); counts[notificationsrpc.StatusQueued] != 1 || len(counts) != 1 {
		t.Errorf("after the same event twice: %v, want one queued delivery", counts)
	}
	if k.count() != 1 {
		t.Errorf("%d kicks after a redelivery, want still 1", k.count())
	}
}

func TestAMalformedEventIsKeptAsADeadLetterAndAcknowledged(t *testing.T) {
	tests := []struct {
		name    string
		topic   string
		payload any
		says    string
	}{
		{"user.registered without a user", usersrpc.TopicUserRegistered, map[string]string{"email": "ada@example.com"}, "user_id required"},
		{"user.registered whose user is not a string", usersrpc.TopicUserRegistered, map[string]int{"user_id": 42}, "cannot unmarshal"},
		{"order.paid without a buyer", ordersrpc.TopicOrderPaid, map[string]string{"order_id": "ord-1"}, "order_id and buyer_id required"},
		{"order.shipped that is not an object", ordersrpc.TopicOrderShipped, []string{"ord-1"}, "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			k := &kicks{}
			ev := event(t, "ev-bad", tt.topic, tt.payload)
			if err, _ := deliver(t, s, k, ev, false); err != nil {
				t.Fatalf("handler = %v, want nil: the event is acknowledged", err)
			}
			dead, _, err := s.Dead(10, "")
			if err != nil || len(dead) != 1 {
				t.Fatalf("dead letters %v, %v; want one", dead, err)
			}
			d := dead[0]
			if d.Status != notificationsrpc.StatusFailed || !d.Dead || d.Channel != "" || d.EventID != ev.ID || d.Topic != tt.topic ||
				d.FailedAt == nil || !strings.Contains(d.LastError, "malformed event payload") || !strings.Contains(d.LastError, tt.says) {
				t.Errorf("dead letter %+v; want failed, no channel, naming %q", d, tt.says)
			}
			if counts := all(t, s); len(counts) != 1 || counts[notificationsrpc.StatusFailed] != 1 {
				t.Errorf("recorded %v, want only the dead letter", counts)
			}
			if k.count() != 0 {
				t.Errorf("%d kicks for a dead letter, want none", k.count())
			}
			// Redelivered: still one.
			if err, _ := deliver(t, s, k, ev, false); err != nil {
				t.Fatal(err)
			}
			if dead, _, _ := s.Dead(10, ""); len(dead) != 1 {
				t.Errorf("%d dead letters after a redelivery, want 1", len(dead))
			}
		})
	}
}

func TestAnEventOfAnotherTopicRecordsNothing(t *testing.T) {
	s := open(t)
	k := &kicks{}
	ev := event(t, "ev-2", ordersrpc.TopicOrderDelivered, ordersrpc.OrderEvent{OrderID: "ord-1", BuyerID: "u-ada"})
	if err, _ := deliver(t, s, k, ev, false); err != nil {
		t.Fatalf("handler = %v", err)
	}
	if counts := all(t, s); len(counts) != 0 || k.count() != 0 {
		t.Errorf("recorded %v with %d kicks, want nothing", counts, k.count())
	}
}

func ids(ns []notificationsrpc.Notification) []string {
	out := make([]string, 0, len(ns))
	for _, n := range ns {
		out = append(out, n.ID)
	}
	return out
}

func TestListPagesTheCallersNotificationsNewestFirst(t *testing.T) {
	s := open(t)
	h := handler.New(s, func() {})
	enqueue(t, s,
		queued("a1", "u-ada", "ord-1", t0),
		queued("b1", "u-bob", "ord-1", t0.Add(time.Second)),
		queued("a2", "u-ada", "", t0.Add(2*time.Second)),
		queued("a3", "u-ada", "ord-2", t0.Add(3*time.Second)),
		queued("x1", "u-ada2", "", t0.Add(4*time.Second)), // a user ID that extends ada's
	)
	update(t, s, "a2", func(d *delivery.Delivery) { d.Attempts++; d.Sent("sendgrid", "msg-a2", t0.Add(time.Hour)) })

	var first notificationsrpc.Page
	if err := h.List(user("u-ada"), &notificationsrpc.PageRequest{PageSize: 2}, &first); err != nil {
		t.Fatal(err)
	}
	if got := ids(first.Items); strings.Join(got, ",") != "a3,a2" || first.NextPageToken == "" {
		t.Fatalf("first page %v, token %q; want a3,a2 and a token", got, first.NextPageToken)
	}
	if n := first.Items[1]; n.Status != notificationsrpc.StatusSent || n.Attempts != 1 || n.SentAt == nil ||
		n.Channel != notificationsrpc.ChannelEmail || n.Template != notificationsrpc.TemplateOrderPaidBuyer {
		t.Errorf("a2 listed as %+v", n)
	}
	var second notificationsrpc.Page
	if err := h.List(user("u-ada"), &notificationsrpc.PageRequest{PageSize: 2, PageToken: first.NextPageToken}, &second); err != nil {
		t.Fatal(err)
	}
	if got := ids(second.Items); strings.Join(got, ",") != "a1" || second.NextPageToken != "" {
		t.Fatalf("second page %v, token %q; want a1 and no token", got, second.NextPageToken)
	}
	var none notificationsrpc.Page
	if err := h.List(user("u-carol"), &notificationsrpc.PageRequest{}, &none); err != nil || none.Items == nil || len(none.Items) != 0 {
		t.Errorf("a user with nothing: %+v, %v; want an empty list", none, err)
	}

	errs := []struct {
		name string
		ctx  context.Context
		req  notificationsrpc.PageRequest
		code int32
	}{
		{"a garbage token is 400", user("u-ada"), notificationsrpc.PageRequest{PageToken: "garbage"}, 400},
		{"another user's token is 400", user("u-bob"), notificationsrpc.PageRequest{PageToken: first.NextPageToken}, 400},
		{"no caller is 401", context.Background(), notificationsrpc.PageRequest{}, 401},
		{"a service credential is not a user: 401", operator(), notificationsrpc.PageRequest{}, 401},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			var page notificationsrpc.Page
			if c, _ := code(h.List(tt.ctx, &tt.req, &page)); c != tt.code {
				t.Fatalf("List = %d, want %d", c, tt.code)
			}
		})
	}
}

func TestForOrderListsOnlyTheCallersNotificationsOfThatOrder(t *testing.T) {
	s := open(t)
	h := handler.New(s, func() {})
	push := queued("a1p", "u-ada", "ord-1", t0)
	push.Channel = notificationsrpc.ChannelPush
	enqueue(t, s,
		queued("a1", "u-ada", "ord-1", t0),
		push,
		queued("b1", "u-bob", "ord-1", t0),
		queued("a2", "u-ada", "ord-2", t0.Add(time.Second)),
		queued("a3", "u-ada", "ord-1", t0.Add(2*time.Second)),
		queued("a4", "u-ada", "ord-10", t0.Add(3*time.Second)), // an order ID that extends ord-1
	)
	var rsp notificationsrpc.OrderNotifications
	if err := h.ForOrder(user("u-ada"), &notificationsrpc.OrderRequest{OrderID: "ord-1"}, &rsp); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ids(rsp.Items), ","); got != "a3,a1,a1p" {
		t.Errorf("ForOrder = %v, want a3,a1,a1p (newest first)", got)
	}
	var none notificationsrpc.OrderNotifications
	if err := h.ForOrder(user("u-carol"), &notificationsrpc.OrderRequest{OrderID: "ord-1"}, &none); err != nil ||
		none.Items == nil || len(none.Items) != 0 {
		t.Errorf("another user: %+v, %v; want an empty list", none, err)
	}

	errs := []struct {
		name  string
		ctx   context.Context
		order string
		code  int32
	}{
		{"no order is 400", user("u-ada"), "", 400},
		{"an order ID over 64 bytes is 400", user("u-ada"), strings.Repeat("o", 65), 400},
		{"an order ID with a NUL is 400", user("u-ada"), "ord-1\x00a1", 400},
		{"no caller is 401", context.Background(), "ord-1", 401},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			var rsp notificationsrpc.OrderNotifications
			if c, _ := code(h.ForOrder(tt.ctx, &notificationsrpc.OrderRequest{OrderID: tt.order}, &rsp)); c != tt.code {
				t.Fatalf("ForOrder = %d, want %d", c, tt.code)
			}
		})
	}
}

// deadLetters records: a delivery that failed for good, one sent, one
// still queued, and a malformed event's dead letter; it returns the latter's ID.
func deadLetters(t *testing.T, s *store.Store, k *kicks) string {
	t.Helper()
	enqueue(t, s, queued("dead", "u-ada", "ord-1", t0), queued("sent", "u-ada", "", t0), queued("waiting", "u-ada", "", t0))
	update(t, s, "dead", func(d *delivery.Delivery) {
		d.Attempts = 3
		d.Fail("sendgrid", "gave up after 3 attempts: sendgrid: retryable (HTTP 500)", t0.Add(2*time.Minute))
	})
	update(t, s, "sent", func(d *delivery.Delivery) { d.Attempts++; d.Sent("sendgrid", "msg-1", t0) })
	bad := event(t, "ev-bad", usersrpc.TopicUserRegistered, map[string]string{})
	if err, _ := deliver(t, s, k, bad, false); err != nil {
		t.Fatal(err)
	}
	return delivery.ID(bad.ID, "", "", "malformed")
}

func TestOnlyTheAPIMayListAndRetryDeadLetters(t *testing.T) {
	s := open(t)
	k := &kicks{}
	h := handler.New(s, k.kick)
	deadLetters(t, s, k)
	callers := []struct {
		name string
		ctx  context.Context
	}{
		{"no credential", context.Background()},
		{"a signed-in user without a service credential", user("u-admin")},
		{"another service", svcauth.WithCaller(context.Background(), "marketmesh.orders")},
		{"another service acting for a user", svcauth.WithCaller(user("u-admin"), "marketmesh.orders")},
	}
	for _, c := range callers {
		t.Run(c.name, func(t *testing.T) {
			var page notificationsrpc.DeadLetterPage
			if got, _ := code(h.DeadLetters(c.ctx, &notificationsrpc.PageRequest{}, &page)); got != 403 || len(page.Items) != 0 {
				t.Errorf("DeadLetters = %d with %d items, want 403 and nothing", got, len(page.Items))
			}
			var dl notificationsrpc.DeadLetter
			if got, _ := code(h.Retry(c.ctx, &notificationsrpc.RetryRequest{ID: "dead"}, &dl)); got != 403 {
				t.Errorf("Retry = %d, want 403", got)
			}
		})
	}
	if d, _ := s.Get("dead"); d.Status != notificationsrpc.StatusFailed || !d.Dead || k.count() != 0 {
		t.Errorf("after refused retries: %s dead=%v with %d kicks; want untouched", d.Status, d.Dead, k.count())
	}
}

func TestDeadLettersListsWhatFailedForGoodNewestFirst(t *testing.T) {
	s := open(t)
	k := &kicks{}
	h := handler.New(s, k.kick)
	malformed := deadLetters(t, s, k)

	var page notificationsrpc.DeadLetterPage
	if err := h.DeadLetters(operator(), &notificationsrpc.PageRequest{PageSize: 1}, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 || page.Items[0].ID != "dead" || page.NextPageToken == "" {
		t.Fatalf("first page %+v; want dead (failed at t0+2m) and a token", page)
	}
	var rest notificationsrpc.DeadLetterPage
	if err := h.DeadLetters(operator(), &notificationsrpc.PageRequest{PageSize: 1, PageToken: page.NextPageToken}, &rest); err != nil {
		t.Fatal(err)
	}
	if len(rest.Items) != 1 || rest.Items[0].ID != malformed || rest.NextPageToken != "" {
		t.Fatalf("second page %+v; want the malformed event (failed at t0+1m) and no token", rest)
	}
	got := map[string]notificationsrpc.DeadLetter{"dead": page.Items[0], malformed: rest.Items[0]}
	if dl := got["dead"]; dl.UserID != "u-ada" || dl.Provider != "sendgrid" || dl.Attempts != 3 || dl.OrderID != "ord-1" ||
		!strings.Contains(dl.LastError, "gave up after 3 attempts") || !dl.FailedAt.Equal(t0.Add(2*time.Minute)) ||
		dl.Status != notificationsrpc.StatusFailed || dl.EventID != "ev-dead" {
		t.Errorf("dead listed as %+v", dl)
	}
	if dl := got[malformed]; dl.Channel != "" || dl.Topic != usersrpc.TopicUserRegistered || !strings.Contains(dl.LastError, "malformed") {
		t.Errorf("malformed listed as %+v", dl)
	}
	if c, _ := code(h.DeadLetters(operator(), &notificationsrpc.PageRequest{PageToken: "garbage"}, &page)); c != 400 {
		t.Errorf("a garbage token: %d, want 400", c)
	}
}

func TestRetryQueuesADeadLetterAgainAndNothingElse(t *testing.T) {
	s := open(t)
	k := &kicks{}
	h := handler.New(s, k.kick)
	malformed := deadLetters(t, s, k)

	var dl notificationsrpc.DeadLetter
	before := time.Now()
	if err := h.Retry(operator(), &notificationsrpc.RetryRequest{ID: "dead"}, &dl); err != nil {
		t.Fatal(err)
	}
	if dl.ID != "dead" || dl.Status != notificationsrpc.StatusQueued || dl.Attempts != 0 {
		t.Errorf("Retry answered %+v; want dead queued with 0 attempts", dl)
	}
	if k.count() != 1 {
		t.Errorf("%d kicks, want 1", k.count())
	}
	d, err := s.Get("dead")
	if err != nil || d.Status != notificationsrpc.StatusQueued || d.Dead || d.Attempts != 0 || d.FailedAt != nil ||
		d.NextAt.Before(before.Add(-time.Second)) || d.NextAt.After(time.Now().Add(time.Second)) {
		t.Errorf("stored %+v, %v; want queued now with fresh attempts", d, err)
	}
	due, _, err := s.Due(time.Now().Add(time.Second), 10, func(string) bool { return false })
	if err != nil || len(due) != 2 || (due[0].ID != "dead" && due[1].ID != "dead") {
		t.Errorf("due: %v, %v; want dead beside waiting", due, err)
	}
	if dead, _, _ := s.Dead(10, ""); len(dead) != 1 || dead[0].ID != malformed {
		t.Errorf("dead letters after the retry: %v, want only the malformed event", dead)
	}

	refusals := []struct {
		name string
		id   string
		code int32
		as   string
	}{
		{"a retried one, now queued, is not dead", "dead", 409, notificationsrpc.CodeNotDead},
		{"a sent one is not dead", "sent", 409, notificationsrpc.CodeNotDead},
		{"a queued one is not dead", "waiting", 409, notificationsrpc.CodeNotDead},
		{"a malformed event has nothing to send", malformed, 409, notificationsrpc.CodeNotDead},
		{"an unknown one is not found", "ntf_nope", 404, notificationsrpc.CodeNotificationNotFound},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := s.Get(tt.id)
			var dl notificationsrpc.DeadLetter
			if c, id := code(h.Retry(operator(), &notificationsrpc.RetryRequest{ID: tt.id}, &dl)); c != tt.code || id != tt.as {
				t.Fatalf("Retry = %d %q, want %d %q", c, id, tt.code, tt.as)
			}
			if after, _ := s.Get(tt.id); after.Status != before.Status || after.Attempts != before.Attempts || after.Dead != before.Dead {
				t.Errorf("changed from %+v to %+v", before, after)
			}
		})
	}
	if k.count() != 1 {
		t.Errorf("%d kicks after the refusals, want still 1", k.count())
	}
}

func TestRetryOfAPushTriesTheDevicesThatRefusedAgain(t *testing.T) {
	s := open(t)
	h := handler.New(s, func() {})
	d := queued("push", "u-ada", "ord-1", t0)
	d.Channel = notificationsrpc.ChannelPush
	enqueue(t, s, d)
	update(t, s, "push", func(d *delivery.Delivery) {
		d.Targets = []delivery.Target{{Token: "tok-phone", Status: notificationsrpc.StatusFailed, Error: "fcm: permanent (HTTP 403) SENDER_ID_MISMATCH"}}
		d.Attempts++
		d.Fail("fcm", "every device refused: fcm: permanent (HTTP 403) SENDER_ID_MISMATCH", t0)
	})
	var dl notificationsrpc.DeadLetter
	if err := h.Retry(operator(), &notificationsrpc.RetryRequest{ID: "push"}, &dl); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get("push"); err != nil || got.Status != notificationsrpc.StatusQueued || len(got.Targets) != 0 {
		t.Errorf("stored %s with targets %+v, %v; want queued with the refusing device to try again", got.Status, got.Targets, err)
	}
}
