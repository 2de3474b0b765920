// Package sender works the delivery queue: for each due delivery it looks
// the recipient up at users, applies their preferences, renders the
// template and hands the message to the channel's provider, then records
// the outcome — sent, skipped, failed, or queued again with backoff.
//
// A delivery recorded as sent is never sent again. The one window for a
// repeat is a crash after the provider accepted a message and before the
// outcome was committed: at most that one message (per push token) goes out
// twice, and carries the same delivery ID (SendGrid custom_args and header,
// FCM data) so the duplicate can be traced.
package sender

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/contracts/notificationsrpc"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/services/notifications/internal/delivery"
	"github.com/marketmesh/marketmesh/services/notifications/internal/provider"
	"github.com/marketmesh/marketmesh/services/notifications/internal/store"
	"github.com/marketmesh/marketmesh/services/notifications/internal/template"
)

// Users is the part of the users client the sender needs.
type Users interface {
	Recipient(ctx context.Context, userID string) (*usersrpc.Recipient, error)
	RemoveDeviceToken(ctx context.Context, userID, token string) error
}

// Options tune the sender.
type Options struct {
	Policy  delivery.Policy
	Workers int           // deliveries worked at once
	Poll    time.Duration // longest sleep when nothing is due
	// UsersRetry is the pause when users cannot be reached (no attempt spent).
	UsersRetry time.Duration
	Now        func() time.Time
	// Metrics is where the sender's collectors register (default: the
	// process's default registry, served on /metrics).
	Metrics prometheus.Registerer
}

// Sender works the queue until its context ends.
type Sender struct {
	store   *store.Store
	users   Users
	email   provider.EmailSender
	push    provider.PushSender
	opts    Options
	metrics *metrics
	wake    chan struct{}

	mu     sync.Mutex
	active map[string]bool // deliveries being worked
}

// New returns a sender.
func New(s *store.Store, users Users, email provider.EmailSender, push provider.PushSender, o Options) *Sender {
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.UsersRetry <= 0 {
		o.UsersRetry = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Metrics == nil {
		o.Metrics = prometheus.DefaultRegisterer
	}
	return &Sender{store: s, users: users, email: email, push: push, opts: o, metrics: newMetrics(o.Metrics),
		wake: make(chan struct{}, 1), active: map[string]bool{}}
}

// Kick wakes the sender: something was queued (call after the commit).
func (s *Sender) Kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Sender) busy(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active[id]
}

// Run works the queue until ctx ends; in-flight sends finish first.
func (s *Sender) Run(ctx context.Context) {
	work := make(chan delivery.Delivery)
	var wg sync.WaitGroup
	for range s.opts.Workers {
		wg.Go(func() {
			// A send under way finishes even when Run is asked to stop: an
			// abandoned request may still have been accepted, and would be
			// sent again. Providers bound each call with their own timeout.
			sendCtx := context.WithoutCancel(ctx)
			for d := range work {
				s.work(sendCtx, d)
				s.mu.Lock()
				delete(s.active, d.ID)
				s.mu.Unlock()
				s.Kick()
			}
		})
	}
	defer func() { close(work); wg.Wait() }()
	var counted time.Time // when the queued gauge was last set
	for {
		now := s.opts.Now()
		due, next, err := s.store.Due(now, s.opts.Workers*4, s.busy)
		if err != nil {
			slog.Error("notifications: read queue", "err", err)
		}
		if now.Sub(counted) >= time.Second { // counting walks the queue: once a second is enough for a gauge
			if n, err := s.store.Queued(); err == nil {
				s.metrics.queued.Set(float64(n))
				counted = now
			}
		}
		for _, d := range due {
			s.mu.Lock()
			s.active[d.ID] = true
			s.mu.Unlock()
			select {
			case work <- d:
			case <-ctx.Done():
				return
			}
		}
		sleep := s.opts.Poll
		if !next.IsZero() {
			sleep = min(sleep, max(next.Sub(s.opts.Now()), 0))
		}
		if len(due) > 0 {
			continue // look again at once: more may be due
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// work makes one attempt at d and records the outcome.
func (s *Sender) work(ctx context.Context, d delivery.Delivery) {
	log := slog.With("delivery", d.ID, "template", d.Template, "channel", d.Channel, "user", d.UserID)
	rcpt, err := s.users.Recipient(ctx, d.UserID)
	if err != nil {
		var me *merrors.Error
		if errors.As(err, &me) && me.Code == http.StatusNotFound {
			s.count(d.Channel, "", "skipped")
			s.record(d.ID, func(x *delivery.Delivery) { x.Skip("recipient no longer exists") })
			return
		}
		s.count(d.Channel, "", "postponed")
		log.Warn("notifications: users unavailable; the delivery waits", "err", err)
		s.record(d.ID, func(x *delivery.Delivery) {
			x.Postpone("users unavailable: "+err.Error(), s.opts.UsersRetry, s.opts.Now())
		})
		return
	}
	msg, err := template.RenderEvent(d.Template, d.Payload, *rcpt)
	if err != nil {
		s.record(d.ID, func(x *delivery.Delivery) { x.Fail("", "render: "+err.Error(), s.opts.Now()) })
		return
	}
	switch d.Channel {
	case notificationsrpc.ChannelEmail:
		s.sendEmail(ctx, d, rcpt, msg)
	case notificationsrpc.ChannelPush:
		s.sendPush(ctx, d, rcpt, msg)
	default:
		s.record(d.ID, func(x *delivery.Delivery) { x.Fail("", "unknown channel "+d.Channel, s.opts.Now()) })
	}
}

func (s *Sender) sendEmail(ctx context.Context, d delivery.Delivery, r *usersrpc.Recipient, m template.Message) {
	if !r.Preferences.Email {
		s.count(d.Channel, "", "skipped")
		s.record(d.ID, func(x *delivery.Delivery) { x.Skip("email notifications are off") })
		return
	}
	if r.Email == "" {
		s.count(d.Channel, "", "skipped")
		s.record(d.ID, func(x *delivery.Delivery) { x.Skip("no email address") })
		return
	}
	name := s.email.Name()
	id, err := s.email.Send(ctx, provider.Email{
		DeliveryID: d.ID, To: r.Email, ToName: r.Name, Subject: m.Subject, HTML: m.HTML, Text: m.Text,
	})
	if x, ok := s.record(d.ID, func(x *delivery.Delivery) {
		x.Attempts++
		s.outcome(x, name, id, err)
	}); ok {
		s.count(x.Channel, name, result(&x))
	}
}

// outcome records one provider answer on x.
func (s *Sender) outcome(x *delivery.Delivery, name, id string, err error) {
	now := s.opts.Now()
	if err == nil {
		x.Sent(name, id, now)
		return
	}
	if retry, after := provider.Retryable(err); retry {
		x.Retry(s.opts.Policy, name, err.Error(), after, now)
		return
	}
	x.Fail(name, err.Error(), now)
}

// result names a delivery's state after an attempt, for the metrics.
func result(x *delivery.Delivery) string {
	if x.Status == notificationsrpc.StatusQueued {
		return "retry"
	}
	return x.Status
}

func (s *Sender) sendPush(ctx context.Context, d delivery.Delivery, r *usersrpc.Recipient, m template.Message) {
	if !r.Preferences.Push {
		s.count(d.Channel, "", "skipped")
		s.record(d.ID, func(x *delivery.Delivery) { x.Skip("push notifications are off") })
		return
	}
	var pending []string
	for _, dev := range r.Devices {
		if !d.TargetDone(dev.Token) {
			pending = append(pending, dev.Token)
		}
	}
	if len(r.Devices) == 0 {
		s.count(d.Channel, "", "skipped")
		s.record(d.ID, func(x *delivery.Delivery) { x.Skip("no device registered") })
		return
	}
	name := s.push.Name()
	var retryErr error
	var retryAfter time.Duration
	for _, token := range pending {
		id, err := s.push.Send(ctx, provider.Push{
			DeliveryID: d.ID, Token: token, Title: m.PushTitle, Body: m.PushBody,
			Data: map[string]string{"delivery_id": d.ID, "template": d.Template, "order_id": d.OrderID},
		})
		target := delivery.Target{Token: token, Status: notificationsrpc.StatusSent, MessageID: id}
		switch {
		case err == nil:
		case provider.TokenInvalid(err):
			target.Status, target.Error = notificationsrpc.StatusFailed, err.Error()
			if rerr := s.users.RemoveDeviceToken(ctx, d.UserID, token); rerr != nil {
				slog.Warn("notifications: could not remove an invalid device token", "user", d.UserID, "err", rerr)
			}
		default:
			if retry, after := provider.Retryable(err); retry {
				retryErr, retryAfter = err, max(retryAfter, after)
				continue // try this token again next attempt
			}
			target.Status, target.Error = notificationsrpc.StatusFailed, err.Error()
		}
		// Each token's outcome is committed before the next send: a sent
		// token is never sent again, even after a crash.
		s.record(d.ID, func(x *delivery.Delivery) { x.Targets = append(x.Targets, target) })
		d.Targets = append(d.Targets, target)
	}
	x, ok := s.record(d.ID, func(x *delivery.Delivery) {
		x.Attempts++
		now := s.opts.Now()
		sent, failed := 0, ""
		for _, t := range x.Targets {
			if t.Status == notificationsrpc.StatusSent {
				sent++
			} else {
				failed = t.Error
			}
		}
		switch {
		case retryErr != nil:
			x.Retry(s.opts.Policy, name, retryErr.Error(), retryAfter, now)
			if x.Status == notificationsrpc.StatusFailed && sent > 0 {
				x.Sent(name, firstSent(x.Targets), now) // gave up on some devices only
				x.LastError = "some devices unreachable: " + retryErr.Error()
			}
		case sent > 0:
			x.Sent(name, firstSent(x.Targets), now)
			if failed != "" {
				x.LastError = "some devices refused: " + failed
			}
		default:
			x.Fail(name, fmt.Sprintf("every device refused: %s", failed), now)
		}
	})
	if ok {
		s.count(x.Channel, name, result(&x))
	}
}

func firstSent(ts []delivery.Target) string {
	for _, t := range ts {
		if t.Status == notificationsrpc.StatusSent {
			return t.MessageID
		}
	}
	return ""
}

// record applies fn to the stored delivery and returns the result; a
// failure to write is logged and the delivery stays due (worked again: see
// the package comment). fn may run more than once (store.Update batches).
func (s *Sender) record(id string, fn func(*delivery.Delivery)) (delivery.Delivery, bool) {
	d, err := s.store.Update(id, func(d *delivery.Delivery) error { fn(d); return nil })
	if err != nil {
		slog.Error("notifications: record outcome", "delivery", id, "err", err)
		return d, false
	}
	return d, true
}

// count records one outcome in the metrics.
func (s *Sender) count(channel, provider, result string) {
	s.metrics.outcomes.WithLabelValues(channel, provider, result).Inc()
}
