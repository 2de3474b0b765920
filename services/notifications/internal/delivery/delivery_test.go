package delivery_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/contracts/notificationsrpc"
	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/services/notifications/internal/delivery"
)

var at = time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)

func event(t *testing.T, topic string, payload any) events.Event {
	t.Helper()
	ev, err := events.NewEvent("01JEVENT"+topic, at, "test", topic, payload)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

type key struct{ user, channel, template string }

func planned(t *testing.T, ev events.Event) map[key]delivery.Delivery {
	t.Helper()
	ds, err := delivery.Plan(ev)
	if err != nil {
		t.Fatal(err)
	}
	out := map[key]delivery.Delivery{}
	for _, d := range ds {
		k := key{d.UserID, d.Channel, d.Template}
		if _, dup := out[k]; dup {
			t.Fatalf("planned twice: %v", k)
		}
		if d.Status != notificationsrpc.StatusQueued || !d.CreatedAt.Equal(at) || !d.NextAt.Equal(at) || d.EventID != ev.ID {
			t.Errorf("%v: %+v", k, d)
		}
		out[k] = d
	}
	return out
}

func TestPlanMatrix(t *testing.T) {
	order := ordersrpc.OrderEvent{
		OrderID: "ord_1", BuyerID: "buyer", SellerIDs: []string{"s1", "s2", "buyer"},
		Lines: []ordersrpc.Line{{SellerID: "s1"}, {SellerID: "s3"}},
	}
	const e, p = notificationsrpc.ChannelEmail, notificationsrpc.ChannelPush
	for _, c := range []struct {
		topic   string
		payload any
		want    []key
	}{
		{usersrpc.TopicUserRegistered, usersrpc.UserRegistered{UserID: "u1", Email: "a@b.c"},
			[]key{{"u1", e, notificationsrpc.TemplateWelcome}}},
		{ordersrpc.TopicOrderPaid, order, []key{
			{"buyer", e, notificationsrpc.TemplateOrderPaidBuyer}, {"buyer", p, notificationsrpc.TemplateOrderPaidBuyer},
			{"s1", e, notificationsrpc.TemplateOrderPaidSeller}, {"s1", p, notificationsrpc.TemplateOrderPaidSeller},
			{"s2", e, notificationsrpc.TemplateOrderPaidSeller}, {"s2", p, notificationsrpc.TemplateOrderPaidSeller},
			{"s3", e, notificationsrpc.TemplateOrderPaidSeller}, {"s3", p, notificationsrpc.TemplateOrderPaidSeller},
		}},
		{ordersrpc.TopicOrderPaymentFailed, order, []key{
			{"buyer", e, notificationsrpc.TemplatePaymentFailed}, {"buyer", p, notificationsrpc.TemplatePaymentFailed}}},
		{ordersrpc.TopicOrderShipped, order, []key{
			{"buyer", e, notificationsrpc.TemplateOrderShipped}, {"buyer", p, notificationsrpc.TemplateOrderShipped}}},
		{ordersrpc.TopicOrderCancelled, order, []key{
			{"buyer", e, notificationsrpc.TemplateOrderCancelledBuyer}, {"buyer", p, notificationsrpc.TemplateOrderCancelledBuyer},
			{"s1", e, notificationsrpc.TemplateOrderCancelledSeller}, {"s1", p, notificationsrpc.TemplateOrderCancelledSeller},
			{"s2", e, notificationsrpc.TemplateOrderCancelledSeller}, {"s2", p, notificationsrpc.TemplateOrderCancelledSeller},
			{"s3", e, notificationsrpc.TemplateOrderCancelledSeller}, {"s3", p, notificationsrpc.TemplateOrderCancelledSeller},
		}},
		{ordersrpc.TopicOrderDelivered, order, nil},
	} {
		got := planned(t, event(t, c.topic, c.payload))
		if len(got) != len(c.want) {
			t.Errorf("%s: %d deliveries, want %d: %v", c.topic, len(got), len(c.want), got)
		}
		for _, k := range c.want {
			d, ok := got[k]
			if !ok {
				t.Errorf("%s: missing %v", c.topic, k)
				continue
			}
			if c.topic != usersrpc.TopicUserRegistered && d.OrderID != "ord_1" {
				t.Errorf("%s %v: order id %q", c.topic, k, d.OrderID)
			}
		}
	}
}

func TestPlanIsDeterministic(t *testing.T) {
	ev := event(t, ordersrpc.TopicOrderPaid, ordersrpc.OrderEvent{OrderID: "o", BuyerID: "b", SellerIDs: []string{"s"}})
	a, _ := delivery.Plan(ev)
	b, _ := delivery.Plan(ev)
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Fatalf("planning twice differs:\n%s\n%s", ja, jb)
	}
}

func TestPlanRefusesMalformedPayloads(t *testing.T) {
	for _, c := range []struct {
		topic   string
		payload json.RawMessage
	}{
		{usersrpc.TopicUserRegistered, json.RawMessage(`{"user_id":42}`)},
		{usersrpc.TopicUserRegistered, json.RawMessage(`{}`)},
		{ordersrpc.TopicOrderPaid, json.RawMessage(`"nope"`)},
		{ordersrpc.TopicOrderPaid, json.RawMessage(`{"order_id":"o"}`)},
	} {
		ev := events.Event{ID: "e", Topic: c.topic, Time: at, Payload: c.payload}
		if _, err := delivery.Plan(ev); !errors.Is(err, delivery.ErrMalformed) {
			t.Errorf("%s %s: %v, want ErrMalformed", c.topic, c.payload, err)
		}
		d := delivery.Malformed(ev, errors.New("bad"), at)
		if !d.Dead || d.Status != notificationsrpc.StatusFailed || d.LastError != "bad" {
			t.Errorf("malformed dead letter: %+v", d)
		}
	}
}

func TestBackoffGrowsWithJitterAndHonoursRetryAfter(t *testing.T) {
	p := delivery.Policy{MaxAttempts: 5, Base: time.Second, Max: 8 * time.Second}
	for attempts, step := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 9: 8 * time.Second} {
		for range 50 {
			d := p.Backoff(attempts, 0)
			if d < step/2 || d > step {
				t.Fatalf("attempt %d: backoff %v outside [%v, %v]", attempts, d, step/2, step)
			}
		}
	}
	if d := p.Backoff(1, 30*time.Second); d != 30*time.Second {
		t.Errorf("Retry-After 30s: backoff %v", d)
	}
}

func TestRetryGivesUpAfterMaxAttemptsAndRequeueStartsAfresh(t *testing.T) {
	p := delivery.Policy{MaxAttempts: 2, Base: time.Second, Max: time.Second}
	d := delivery.Delivery{ID: "n", Status: notificationsrpc.StatusQueued}
	d.Attempts = 1
	d.Retry(p, "sendgrid", "429", 0, at)
	if d.Status != notificationsrpc.StatusQueued || d.Dead || !d.NextAt.After(at) {
		t.Fatalf("after one failed attempt: %+v", d)
	}
	if err := d.Requeue(at); !errors.Is(err, delivery.ErrNotDead) {
		t.Fatalf("requeue of a queued delivery: %v", err)
	}
	d.Attempts = 2
	d.Retry(p, "sendgrid", "429", 0, at)
	if d.Status != notificationsrpc.StatusFailed || !d.Dead || d.FailedAt == nil {
		t.Fatalf("after the last attempt: %+v", d)
	}
	if err := d.Requeue(at); err != nil || d.Status != notificationsrpc.StatusQueued || d.Attempts != 0 || d.Dead {
		t.Fatalf("requeue: %v %+v", err, d)
	}
}
