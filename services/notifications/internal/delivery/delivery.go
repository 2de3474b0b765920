// Package delivery is the notifications domain: which events notify whom on
// which channel (Plan), and the life of one delivery — queued, then sent,
// failed or skipped — with its retry schedule.
package delivery

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/marketmesh/marketmesh/contracts/notificationsrpc"
	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/events"
)

// Topics the service turns into deliveries.
var Topics = []string{
	usersrpc.TopicUserRegistered,
	ordersrpc.TopicOrderPaid,
	ordersrpc.TopicOrderPaymentFailed,
	ordersrpc.TopicOrderShipped,
	ordersrpc.TopicOrderCancelled,
}

// Delivery is one (event, recipient, channel): a message to send once.
type Delivery struct {
	ID       string          `json:"id"`
	EventID  string          `json:"event_id"`
	Topic    string          `json:"topic"`
	UserID   string          `json:"user_id"`
	OrderID  string          `json:"order_id,omitempty"`
	Channel  string          `json:"channel"`
	Template string          `json:"template"`
	Payload  json.RawMessage `json:"payload"` // the event's, rendered at send time

	Status    string   `json:"status"`
	Attempts  int      `json:"attempts"`
	Provider  string   `json:"provider,omitempty"`
	MessageID string   `json:"message_id,omitempty"` // the provider's, once sent
	Targets   []Target `json:"targets,omitempty"`    // push: one per device token
	LastError string   `json:"last_error,omitempty"`
	// Dead marks a failure an operator may retry (listed as a dead letter).
	Dead bool `json:"dead,omitempty"`

	CreatedAt time.Time  `json:"created_at"`
	NextAt    time.Time  `json:"next_at"` // queued: when the next attempt is due
	SentAt    *time.Time `json:"sent_at,omitempty"`
	FailedAt  *time.Time `json:"failed_at,omitempty"`
}

// Target is a push delivery's progress on one device: a token already sent
// to is never sent to again, whatever happens to the others.
type Target struct {
	Token     string `json:"token"`
	Status    string `json:"status"` // sent or failed
	MessageID string `json:"message_id,omitempty"`
	Error     string `json:"error,omitempty"`
}

// ID is the delivery's ID: the same event, recipient and channel always
// give the same ID, so planning an event twice records it once.
func ID(eventID, userID, channel, template string) string {
	h := sha256.Sum256([]byte(eventID + "\x00" + userID + "\x00" + channel + "\x00" + template))
	return "ntf_" + hex.EncodeToString(h[:12])
}

// Recipient of a planned message.
type recipient struct {
	userID   string
	template string
	channels []string
}

var both = []string{notificationsrpc.ChannelEmail, notificationsrpc.ChannelPush}

// ErrMalformed is wrapped by Plan for an event whose payload cannot be read.
var ErrMalformed = errors.New("malformed event payload")

// Plan turns an event into its deliveries, all queued now for the first
// attempt. Times come from the event, so planning is deterministic.
//
//	user.registered       → the user: welcome (email)
//	order.paid            → buyer: receipt (email, push); each seller: what to ship and where (email, push)
//	order.payment_failed  → buyer (email, push)
//	order.shipped         → buyer (email, push)
//	order.cancelled       → buyer and each seller (email, push)
func Plan(ev events.Event) ([]Delivery, error) {
	var rs []recipient
	var orderID string
	switch ev.Topic {
	case usersrpc.TopicUserRegistered:
		var p usersrpc.UserRegistered
		if err := json.Unmarshal(ev.Payload, &p); err != nil || p.UserID == "" {
			return nil, malformed(ev, err, "user_id")
		}
		rs = []recipient{{p.UserID, notificationsrpc.TemplateWelcome, []string{notificationsrpc.ChannelEmail}}}
	case ordersrpc.TopicOrderPaid, ordersrpc.TopicOrderPaymentFailed, ordersrpc.TopicOrderShipped, ordersrpc.TopicOrderCancelled:
		var p ordersrpc.OrderEvent
		if err := json.Unmarshal(ev.Payload, &p); err != nil || p.OrderID == "" || p.BuyerID == "" {
			return nil, malformed(ev, err, "order_id and buyer_id")
		}
		orderID = p.OrderID
		switch ev.Topic {
		case ordersrpc.TopicOrderPaid:
			rs = append(rs, recipient{p.BuyerID, notificationsrpc.TemplateOrderPaidBuyer, both})
			for _, s := range sellers(p) {
				rs = append(rs, recipient{s, notificationsrpc.TemplateOrderPaidSeller, both})
			}
		case ordersrpc.TopicOrderPaymentFailed:
			rs = append(rs, recipient{p.BuyerID, notificationsrpc.TemplatePaymentFailed, both})
		case ordersrpc.TopicOrderShipped:
			rs = append(rs, recipient{p.BuyerID, notificationsrpc.TemplateOrderShipped, both})
		case ordersrpc.TopicOrderCancelled:
			rs = append(rs, recipient{p.BuyerID, notificationsrpc.TemplateOrderCancelledBuyer, both})
			for _, s := range sellers(p) {
				rs = append(rs, recipient{s, notificationsrpc.TemplateOrderCancelledSeller, both})
			}
		}
	default:
		return nil, nil
	}
	at := ev.Time.UTC()
	var out []Delivery
	for _, r := range rs {
		for _, ch := range r.channels {
			out = append(out, Delivery{
				ID: ID(ev.ID, r.userID, ch, r.template), EventID: ev.ID, Topic: ev.Topic,
				UserID: r.userID, OrderID: orderID, Channel: ch, Template: r.template, Payload: ev.Payload,
				Status: notificationsrpc.StatusQueued, CreatedAt: at, NextAt: at,
			})
		}
	}
	return out, nil
}

// Malformed is the dead letter recorded for an event Plan cannot read: it
// is kept, with the reason, for an operator, and the stream goes on.
func Malformed(ev events.Event, err error, now time.Time) Delivery {
	return Delivery{
		ID: ID(ev.ID, "", "", "malformed"), EventID: ev.ID, Topic: ev.Topic, Payload: ev.Payload,
		Status: notificationsrpc.StatusFailed, LastError: err.Error(), Dead: true,
		CreatedAt: ev.Time.UTC(), FailedAt: &now,
	}
}

func malformed(ev events.Event, err error, required string) error {
	if err != nil {
		return fmt.Errorf("%w: %s %s: %v", ErrMalformed, ev.Topic, ev.ID, err)
	}
	return fmt.Errorf("%w: %s %s: %s required", ErrMalformed, ev.Topic, ev.ID, required)
}

// sellers are the order's sellers, each once, buyer excluded (buying from
// yourself gets the buyer's message only).
func sellers(p ordersrpc.OrderEvent) []string {
	var out []string
	add := func(s string) {
		if s != "" && s != p.BuyerID && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, s := range p.SellerIDs {
		add(s)
	}
	for _, l := range p.Lines {
		add(l.SellerID)
	}
	return out
}

// Policy bounds retries.
type Policy struct {
	MaxAttempts int           // provider attempts before a dead letter
	Base        time.Duration // first backoff; doubles per attempt
	Max         time.Duration // longest backoff
}

// Backoff is the pause before the next attempt after attempts failed ones:
// exponential with jitter (half to all of the step), never shorter than the
// provider's Retry-After.
func (p Policy) Backoff(attempts int, retryAfter time.Duration) time.Duration {
	step := p.Base
	for i := 1; i < attempts && step < p.Max; i++ {
		step *= 2
	}
	step = min(step, p.Max)
	d := step/2 + time.Duration(rand.Int64N(int64(step/2)+1))
	return max(d, retryAfter)
}

// Sent records success.
func (d *Delivery) Sent(provider, messageID string, now time.Time) {
	d.Status, d.Provider, d.MessageID, d.LastError = notificationsrpc.StatusSent, provider, messageID, ""
	d.SentAt, d.Dead = &now, false
}

// Skip records that the channel does not apply (preference off, no device).
func (d *Delivery) Skip(reason string) {
	d.Status, d.LastError = notificationsrpc.StatusSkipped, reason
}

// Fail records a failure for good: an operator may retry it.
func (d *Delivery) Fail(provider, reason string, now time.Time) {
	d.Status, d.Provider, d.LastError, d.Dead = notificationsrpc.StatusFailed, provider, reason, true
	d.FailedAt = &now
}

// Retry schedules another attempt after a retryable failure, or fails for
// good once the policy's attempts are spent.
func (d *Delivery) Retry(p Policy, provider, reason string, retryAfter time.Duration, now time.Time) {
	if d.Attempts >= p.MaxAttempts {
		d.Fail(provider, fmt.Sprintf("gave up after %d attempts: %s", d.Attempts, reason), now)
		return
	}
	d.Provider, d.LastError = provider, reason
	d.NextAt = now.Add(p.Backoff(d.Attempts, retryAfter))
}

// Postpone waits for something outside the provider (the users service):
// no attempt is spent.
func (d *Delivery) Postpone(reason string, after time.Duration, now time.Time) {
	d.LastError = reason
	d.NextAt = now.Add(after)
}

// ErrNotDead is returned for a retry of a delivery that is not a dead letter.
var ErrNotDead = errors.New("not a dead letter")

// Requeue is an operator's retry of a dead letter: fresh attempts, due now.
// The push devices that refused are tried again (the retry is for after
// the cause was fixed); those already sent to are not.
func (d *Delivery) Requeue(now time.Time) error {
	if !d.Dead {
		return fmt.Errorf("notification %s is %s: %w", d.ID, d.Status, ErrNotDead)
	}
	d.Status, d.Dead, d.Attempts, d.FailedAt, d.NextAt = notificationsrpc.StatusQueued, false, 0, nil, now
	d.Targets = slices.DeleteFunc(d.Targets, func(t Target) bool { return t.Status != notificationsrpc.StatusSent })
	return nil
}

// TargetDone reports whether token was already sent to (or refused it for good).
func (d *Delivery) TargetDone(token string) bool {
	for _, t := range d.Targets {
		if t.Token == token {
			return true
		}
	}
	return false
}

// View is the delivery as its recipient sees it.
func (d Delivery) View() notificationsrpc.Notification {
	return notificationsrpc.Notification{
		ID: d.ID, Channel: d.Channel, Template: d.Template, Status: d.Status, Attempts: d.Attempts,
		CreatedAt: d.CreatedAt, SentAt: d.SentAt, OrderID: d.OrderID,
	}
}

// DeadLetter is the delivery as an operator sees it.
func (d Delivery) DeadLetter() notificationsrpc.DeadLetter {
	dl := notificationsrpc.DeadLetter{
		Notification: d.View(), UserID: d.UserID, EventID: d.EventID, Topic: d.Topic,
		Provider: d.Provider, LastError: d.LastError,
	}
	if d.FailedAt != nil {
		dl.FailedAt = *d.FailedAt
	}
	return dl
}
