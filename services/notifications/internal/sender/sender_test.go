package sender_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	merrors "go-micro.dev/v4/errors"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/notificationsrpc"
	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/meshtest"
	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/plugins/saasfake"
	"github.com/marketmesh/marketmesh/services/notifications/internal/delivery"
	"github.com/marketmesh/marketmesh/services/notifications/internal/provider"
	"github.com/marketmesh/marketmesh/services/notifications/internal/sender"
	"github.com/marketmesh/marketmesh/services/notifications/internal/store"
	"github.com/marketmesh/marketmesh/services/notifications/internal/template"
)

// settle bounds every wait for the sender: generous, for a loaded machine.
const settle = 20 * time.Second

const from = "marketmesh <no-reply@marketmesh.local>"

// users stands in for the users service behind sender.Users: it knows some
// recipients, records the device tokens it is told to remove, and can be
// switched to fail every Recipient call with a go-micro error code.
type users struct {
	mu       sync.Mutex
	people   map[string]usersrpc.Recipient
	failWith int32 // 0: answer; else the code every Recipient fails with
	asked    int
	removed  []removal
}

type removal struct{ user, token string }

func newUsers(rs ...usersrpc.Recipient) *users {
	u := &users{people: map[string]usersrpc.Recipient{}}
	for _, r := range rs {
		u.people[r.UserID] = r
	}
	return u
}

// Recipient answers the recipient, 404 for one it does not know, or the
// failure it was switched to.
func (u *users) Recipient(_ context.Context, userID string) (*usersrpc.Recipient, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.asked++
	switch u.failWith {
	case 0:
	case 404:
		return nil, merrors.NotFound(usersrpc.Service, "user %s not found", userID)
	default:
		return nil, merrors.New(usersrpc.Service, "users is unavailable", u.failWith)
	}
	r, ok := u.people[userID]
	if !ok {
		return nil, merrors.NotFound(usersrpc.Service, "user %s not found", userID)
	}
	r.Devices = slices.Clone(r.Devices)
	return &r, nil
}

// RemoveDeviceToken records the removal.
func (u *users) RemoveDeviceToken(_ context.Context, userID, token string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.removed = append(u.removed, removal{userID, token})
	return nil
}

func (u *users) fail(code int32) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.failWith = code
}

func (u *users) timesAsked() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.asked
}

func (u *users) removals() []removal {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.removed)
}

func ada() usersrpc.Recipient {
	return usersrpc.Recipient{UserID: "u-ada", Email: "ada@example.com", Name: "Ada",
		Preferences: usersrpc.Preferences{Email: true, Push: true}}
}

func devices(tokens ...string) []usersrpc.Device {
	out := make([]usersrpc.Device, 0, len(tokens))
	for _, tok := range tokens {
		out = append(out, usersrpc.Device{Token: tok, Platform: "android"})
	}
	return out
}

// timedEmail is the real email sender, with the start of every Send noted.
type timedEmail struct {
	provider.EmailSender
	mu     sync.Mutex
	starts []time.Time
}

func (e *timedEmail) Send(ctx context.Context, m provider.Email) (string, error) {
	e.mu.Lock()
	e.starts = append(e.starts, time.Now())
	e.mu.Unlock()
	return e.EmailSender.Send(ctx, m)
}

func (e *timedEmail) sends() []time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.starts)
}

// fixture is a store in a temporary file, the SaaS fakes, the real providers
// pointed at them, and the users stand-in.
type fixture struct {
	store   *store.Store
	fakes   *saasfake.Fakes
	users   *users
	email   *timedEmail
	push    provider.PushSender
	metrics *prometheus.Registry
}

func newFixture(t *testing.T, people ...usersrpc.Recipient) *fixture {
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
	fakes := saasfake.New(t)
	sg, err := provider.NewSendGrid(saasfake.DefaultSendGridKey, fakes.SendGrid.URL, from)
	if err != nil {
		t.Fatal(err)
	}
	fcm, err := provider.NewFCM(t.Context(), fakes.CredentialsFile, fakes.FCM.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{store: s, fakes: fakes, users: newUsers(people...), email: &timedEmail{EmailSender: sg},
		push: fcm, metrics: prometheus.NewRegistry()}
}

// newSender returns a sender over the fixture sending email through email.
func (f *fixture) newSender(workers int, email provider.EmailSender) *sender.Sender {
	return sender.New(f.store, f.users, email, f.push, sender.Options{
		Policy:     delivery.Policy{MaxAttempts: 3, Base: 50 * time.Millisecond, Max: 200 * time.Millisecond},
		Workers:    workers,
		UsersRetry: 100 * time.Millisecond,
		Metrics:    f.metrics,
	})
}

// running is a sender's Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// run runs s until stop is called or the test ends.
func run(t *testing.T, s *sender.Sender) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		s.Run(ctx)
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// wait waits for Run to return.
func (r *running) wait(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		select {
		case <-r.done:
		case <-time.After(settle):
			t.Error("Run did not return after its context ended")
		}
	})
}

// stop ends Run's context and waits for it to return.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	r.wait(t)
}

// start runs a sender with the fixture's email sender until the returned
// stop is called or the test ends.
func (f *fixture) start(t *testing.T, workers int) (*sender.Sender, func()) {
	t.Helper()
	s := f.newSender(workers, f.email)
	r := run(t, s)
	return s, func() { r.stop(t) }
}

// enqueue records ds as the event handler does, inside a bbolt Update, and
// wakes the sender once they are committed.
func (f *fixture) enqueue(t *testing.T, s *sender.Sender, ds ...delivery.Delivery) {
	t.Helper()
	err := f.store.Bolt().Update(func(tx *bolt.Tx) error {
		queued, err := store.Enqueue(tx, ds)
		if err == nil && queued {
			tx.OnCommit(s.Kick)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitStatus waits until the delivery id has left the queue with status.
func (f *fixture) waitStatus(t *testing.T, id, status string) delivery.Delivery {
	t.Helper()
	var d delivery.Delivery
	meshtest.Eventually(t, settle, func() (err error) {
		if d, err = f.store.Get(id); err != nil {
			return err
		}
		if d.Status != status {
			return fmt.Errorf("%s is %s (attempts %d, last error %q), want %s", id, d.Status, d.Attempts, d.LastError, status)
		}
		return nil
	})
	return d
}

// describe shows what a test checks of a delivery (not its payload bytes).
func describe(d delivery.Delivery) string {
	return fmt.Sprintf("%s: status %s, attempts %d, provider %q, message %q, last error %q, dead %v, targets %+v, sent at %v",
		d.ID, d.Status, d.Attempts, d.Provider, d.MessageID, d.LastError, d.Dead, d.Targets, d.SentAt)
}

var eventSeq atomic.Int64

// planned plans an event as the event handler does and returns the delivery
// to user on channel. The event happened a moment ago: it is due at once.
func planned(t *testing.T, topic string, payload any, user, channel string) delivery.Delivery {
	t.Helper()
	ev, err := events.NewEvent(fmt.Sprintf("ev-%s-%d", topic, eventSeq.Add(1)), time.Now().Add(-time.Second),
		"test", topic, payload)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := delivery.Plan(ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.UserID == user && d.Channel == channel {
			return d
		}
	}
	t.Fatalf("%s plans nothing to %s on %s: %+v", topic, user, channel, ds)
	return delivery.Delivery{}
}

func welcome(t *testing.T, r usersrpc.Recipient) delivery.Delivery {
	t.Helper()
	return planned(t, usersrpc.TopicUserRegistered, usersrpc.UserRegistered{UserID: r.UserID, Email: r.Email, Name: r.Name},
		r.UserID, notificationsrpc.ChannelEmail)
}

func orderPaid(t *testing.T, buyer, channel string) delivery.Delivery {
	t.Helper()
	usd := func(c int64) money.Money { return money.Money{Amount: c, Currency: "USD"} }
	return planned(t, ordersrpc.TopicOrderPaid, ordersrpc.OrderEvent{
		OrderID: "ord-1", BuyerID: buyer, SellerIDs: []string{"s-1"}, Status: ordersrpc.StatusPaid, Total: usd(2500),
		Lines: []ordersrpc.Line{{PublicationID: "p-1", SellerID: "s-1", Title: "Blue mug", Quantity: 2,
			UnitPrice: usd(1250), Subtotal: usd(2500)}},
		At: time.Now().UTC(),
	}, buyer, channel)
}

// tokens lists the tokens pushes went to, for failure messages.
func tokens(pushes []saasfake.Push) []string {
	out := make([]string, 0, len(pushes))
	for _, p := range pushes {
		out = append(out, p.Token)
	}
	return out
}

// mailsFor returns the accepted emails that carry delivery id.
func mailsFor(f *fixture, id string) []saasfake.Mail {
	var out []saasfake.Mail
	for _, m := range f.fakes.SendGrid.Messages() {
		if m.CustomArgs["delivery_id"] == id {
			out = append(out, m)
		}
	}
	return out
}

func TestAnEmailIsSentOnceThroughSendGridAndRecordedSent(t *testing.T) {
	f := newFixture(t, ada())
	s, _ := f.start(t, 4)
	d := welcome(t, ada())
	f.enqueue(t, s, d)

	got := f.waitStatus(t, d.ID, notificationsrpc.StatusSent)
	mails, err := f.fakes.SendGrid.WaitMessages(1, settle)
	if err != nil {
		t.Fatal(err)
	}
	if len(mails) != 1 || f.fakes.SendGrid.Attempts() != 1 {
		t.Fatalf("%d mails in %d attempts, want 1 in 1", len(mails), f.fakes.SendGrid.Attempts())
	}
	want, err := template.RenderEvent(d.Template, d.Payload, ada())
	if err != nil {
		t.Fatal(err)
	}
	m := mails[0]
	if m.Subject != want.Subject || m.HTML != want.HTML || m.Text != want.Text {
		t.Errorf("mail subject %q html %d bytes text %d bytes; want the rendered %q", m.Subject, len(m.HTML), len(m.Text), want.Subject)
	}
	if len(m.To) != 1 || m.To[0].Email != "ada@example.com" || m.To[0].Name != "Ada" {
		t.Errorf("mail to %+v", m.To)
	}
	if m.CustomArgs["delivery_id"] != d.ID || m.Headers[provider.DeliveryHeader] != d.ID {
		t.Errorf("custom_args %v, headers %v; want delivery_id and %s = %s", m.CustomArgs, m.Headers, provider.DeliveryHeader, d.ID)
	}
	if got.Provider != "sendgrid" || got.MessageID != m.MessageID || m.MessageID == "" || got.Attempts != 1 ||
		got.SentAt == nil || got.LastError != "" || got.Dead {
		t.Errorf("recorded %s; want sent by sendgrid as %q after 1 attempt", describe(got), m.MessageID)
	}
}

func TestARateLimitIsRetriedNoSoonerThanRetryAfter(t *testing.T) {
	f := newFixture(t, ada())
	f.fakes.SendGrid.FailNext(429, "1", 1)
	s, _ := f.start(t, 4)
	d := welcome(t, ada())
	f.enqueue(t, s, d)

	got := f.waitStatus(t, d.ID, notificationsrpc.StatusSent)
	if n := len(f.fakes.SendGrid.Messages()); n != 1 || f.fakes.SendGrid.Attempts() != 2 {
		t.Fatalf("%d mails in %d attempts, want 1 in 2", n, f.fakes.SendGrid.Attempts())
	}
	if got.Attempts != 2 {
		t.Errorf("recorded %d attempts, want 2", got.Attempts)
	}
	sends := f.email.sends()
	if len(sends) != 2 {
		t.Fatalf("%d sends, want 2", len(sends))
	}
	// SendGrid asked for 1 s; the policy alone would wait at most 50 ms.
	if gap := sends[1].Sub(sends[0]); gap < 950*time.Millisecond {
		t.Errorf("second attempt %v after the first, want at least the 1 s Retry-After", gap)
	}
}

func TestEmailFailuresEndAsDeadLetters(t *testing.T) {
	tests := []struct {
		name     string
		program  func(*saasfake.SendGrid)
		attempts int
		says     string
	}{
		{"a refusal fails at once with SendGrid's message", func(sg *saasfake.SendGrid) {
			sg.Fail(saasfake.MailFailure{Status: 400, Field: "from", Message: "The from address does not match a verified Sender Identity."}, 1)
		}, 1, "from: The from address does not match a verified Sender Identity."},
		{"server errors give up after the policy's attempts", func(sg *saasfake.SendGrid) {
			sg.FailNext(500, "", 3)
		}, 3, "gave up after 3 attempts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, ada())
			tt.program(f.fakes.SendGrid)
			s, _ := f.start(t, 4)
			d := welcome(t, ada())
			f.enqueue(t, s, d)

			got := f.waitStatus(t, d.ID, notificationsrpc.StatusFailed)
			if got.Attempts != tt.attempts || !got.Dead || got.FailedAt == nil || got.Provider != "sendgrid" ||
				!strings.Contains(got.LastError, tt.says) {
				t.Errorf("recorded %s; want dead after %d attempts saying %q", describe(got), tt.attempts, tt.says)
			}
			if n := f.fakes.SendGrid.Attempts(); n != tt.attempts || len(f.fakes.SendGrid.Messages()) != 0 {
				t.Errorf("SendGrid saw %d attempts and accepted %d mails, want %d and none", n, len(f.fakes.SendGrid.Messages()), tt.attempts)
			}
			dead, _, err := f.store.Dead(10, "")
			if err != nil || len(dead) != 1 || dead[0].ID != d.ID {
				t.Errorf("dead letters %v, %v; want %s", dead, err, d.ID)
			}
			if queued, _ := f.store.Queued(); queued != 0 {
				t.Errorf("%d still queued", queued)
			}
		})
	}
}

func TestPushSkipsAnUnregisteredTokenAndHasItRemoved(t *testing.T) {
	buyer := ada()
	buyer.Devices = devices("tok-gone", "tok-phone")
	f := newFixture(t, buyer)
	f.fakes.FCM.FailToken("tok-gone", saasfake.Unregistered)
	s, _ := f.start(t, 4)
	d := orderPaid(t, buyer.UserID, notificationsrpc.ChannelPush)
	f.enqueue(t, s, d)

	got := f.waitStatus(t, d.ID, notificationsrpc.StatusSent)
	pushes := f.fakes.FCM.Messages()
	if len(pushes) != 1 || pushes[0].Token != "tok-phone" {
		t.Fatalf("pushes to %v, want one to tok-phone", tokens(pushes))
	}
	if p := pushes[0]; p.Data["delivery_id"] != d.ID || p.Data["order_id"] != "ord-1" || p.Title == "" || p.Body == "" {
		t.Errorf("push %q %q with data %v; want a title, a body, the delivery and the order", p.Title, p.Body, p.Data)
	}
	if r := f.users.removals(); len(r) != 1 || r[0] != (removal{buyer.UserID, "tok-gone"}) {
		t.Errorf("removed %v, want tok-gone of %s", r, buyer.UserID)
	}
	if got.Provider != "fcm" || got.MessageID != pushes[0].Name || got.Attempts != 1 ||
		!strings.Contains(got.LastError, "some devices refused") {
		t.Errorf("recorded %s; want sent by fcm as %q, noting the refusal", describe(got), pushes[0].Name)
	}
	if len(got.Targets) != 2 ||
		got.Targets[0].Token != "tok-gone" || got.Targets[0].Status != notificationsrpc.StatusFailed || !strings.Contains(got.Targets[0].Error, "UNREGISTERED") ||
		got.Targets[1].Token != "tok-phone" || got.Targets[1].Status != notificationsrpc.StatusSent || got.Targets[1].MessageID != pushes[0].Name {
		t.Errorf("targets %+v", got.Targets)
	}
}

func TestAPushResumedAfterACrashSkipsTheTokenAlreadySent(t *testing.T) {
	buyer := ada()
	buyer.Devices = devices("tok-phone", "tok-tablet")
	f := newFixture(t, buyer)
	s, _ := f.start(t, 4)
	// The crash came after tok-phone's send was committed, before the outcome.
	d := orderPaid(t, buyer.UserID, notificationsrpc.ChannelPush)
	earlier := "projects/" + saasfake.DefaultProject + "/messages/earlier"
	d.Targets = []delivery.Target{{Token: "tok-phone", Status: notificationsrpc.StatusSent, MessageID: earlier}}
	f.enqueue(t, s, d)

	got := f.waitStatus(t, d.ID, notificationsrpc.StatusSent)
	if pushes := f.fakes.FCM.Messages(); len(pushes) != 1 || pushes[0].Token != "tok-tablet" {
		t.Fatalf("pushes to %v; want only tok-tablet", tokens(pushes))
	}
	if len(got.Targets) != 2 || got.Targets[1].Token != "tok-tablet" || got.Targets[1].Status != notificationsrpc.StatusSent ||
		got.MessageID != earlier || got.LastError != "" {
		t.Errorf("recorded %s", describe(got))
	}
}

func TestAPushGoesOutOnceThroughAnUnavailableFCM(t *testing.T) {
	buyer := ada()
	buyer.Devices = devices("tok-phone")
	f := newFixture(t, buyer)
	f.fakes.FCM.FailNext(saasfake.Unavailable, "", 1)
	s, _ := f.start(t, 4)
	d := orderPaid(t, buyer.UserID, notificationsrpc.ChannelPush)
	f.enqueue(t, s, d)

	got := f.waitStatus(t, d.ID, notificationsrpc.StatusSent)
	if pushes := f.fakes.FCM.Messages(); len(pushes) != 1 || got.MessageID != pushes[0].Name {
		t.Fatalf("pushes to %v, recorded %s; want exactly one", tokens(pushes), describe(got))
	}
}

func TestAChannelTheRecipientCannotUseIsSkipped(t *testing.T) {
	noEmail := usersrpc.Recipient{UserID: "u-quiet", Email: "quiet@example.com", Preferences: usersrpc.Preferences{Push: true},
		Devices: devices("tok-quiet")}
	noPush := usersrpc.Recipient{UserID: "u-nopush", Email: "np@example.com", Preferences: usersrpc.Preferences{Email: true},
		Devices: devices("tok-nopush")}
	noDevice := usersrpc.Recipient{UserID: "u-nodevice", Email: "nd@example.com", Preferences: usersrpc.Preferences{Email: true, Push: true}}
	tests := []struct {
		name  string
		d     func(t *testing.T) delivery.Delivery
		users int32 // the code users answers with, 0 for the recipient
		says  string
	}{
		{"email turned off", func(t *testing.T) delivery.Delivery { return welcome(t, noEmail) }, 0, "email notifications are off"},
		{"push turned off", func(t *testing.T) delivery.Delivery {
			return orderPaid(t, noPush.UserID, notificationsrpc.ChannelPush)
		}, 0, "push notifications are off"},
		{"push without a device", func(t *testing.T) delivery.Delivery {
			return orderPaid(t, noDevice.UserID, notificationsrpc.ChannelPush)
		}, 0, "no device registered"},
		{"a recipient users does not know", func(t *testing.T) delivery.Delivery { return welcome(t, ada()) }, 0, "recipient no longer exists"},
		{"a recipient users answers 404 for", func(t *testing.T) delivery.Delivery { return welcome(t, noDevice) }, 404, "recipient no longer exists"},
	}
	f := newFixture(t, noEmail, noPush, noDevice)
	s, _ := f.start(t, 4)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.users.fail(tt.users)
			defer f.users.fail(0)
			d := tt.d(t)
			f.enqueue(t, s, d)
			got := f.waitStatus(t, d.ID, notificationsrpc.StatusSkipped)
			if got.Attempts != 0 || got.Dead || !strings.Contains(got.LastError, tt.says) {
				t.Errorf("recorded %s; want skipped without an attempt because %q", describe(got), tt.says)
			}
		})
	}
	if f.fakes.SendGrid.Attempts() != 0 || f.fakes.FCM.Attempts() != 0 {
		t.Errorf("SendGrid saw %d requests and FCM %d, want none", f.fakes.SendGrid.Attempts(), f.fakes.FCM.Attempts())
	}
}

// gathered returns the value of the metric name whose labels include want.
func gathered(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) (float64, bool) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metrics
				}
			}
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), true
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			}
		}
	}
	return 0, false
}

func TestUnreachableUsersPostponeWithoutSpendingAnAttempt(t *testing.T) {
	f := newFixture(t, ada())
	f.users.fail(503)
	s, _ := f.start(t, 4)
	first, second := welcome(t, ada()), welcome(t, ada())
	f.enqueue(t, s, first, second)

	// Asked again after UsersRetry, and still waiting: no attempt spent.
	meshtest.Eventually(t, settle, func() error {
		if n := f.users.timesAsked(); n < 4 {
			return fmt.Errorf("users asked %d times, want each delivery postponed twice", n)
		}
		return nil
	})
	for _, id := range []string{first.ID, second.ID} {
		d, err := f.store.Get(id)
		if err != nil || d.Status != notificationsrpc.StatusQueued || d.Attempts != 0 || !strings.Contains(d.LastError, "users unavailable") {
			t.Errorf("while users is down: %s, %v; want queued, 0 attempts, users unavailable", describe(d), err)
		}
	}
	if f.fakes.SendGrid.Attempts() != 0 {
		t.Errorf("SendGrid saw %d requests while users was down", f.fakes.SendGrid.Attempts())
	}
	meshtest.Eventually(t, settle, func() error {
		if v, ok := gathered(t, f.metrics, "marketmesh_notifications_queued", nil); !ok || v != 2 {
			return fmt.Errorf("queued gauge %v (present %v), want 2", v, ok)
		}
		return nil
	})

	f.users.fail(0)
	for _, id := range []string{first.ID, second.ID} {
		if d := f.waitStatus(t, id, notificationsrpc.StatusSent); d.Attempts != 1 {
			t.Errorf("%s sent after %d attempts, want 1", id, d.Attempts)
		}
		if n := len(mailsFor(f, id)); n != 1 {
			t.Errorf("%s: %d mails, want 1", id, n)
		}
	}
	meshtest.Eventually(t, settle, func() error {
		if v, ok := gathered(t, f.metrics, "marketmesh_notifications_queued", nil); !ok || v != 0 {
			return fmt.Errorf("queued gauge %v (present %v), want 0 once everything is sent", v, ok)
		}
		return nil
	})
	outcome := func(result string) float64 {
		v, _ := gathered(t, f.metrics, "marketmesh_notifications_attempts_total",
			map[string]string{"channel": notificationsrpc.ChannelEmail, "result": result})
		return v
	}
	if sent, postponed := outcome("sent"), outcome("postponed"); sent != 2 || postponed < 4 {
		t.Errorf("attempts_total: %v sent, %v postponed; want 2 and at least 4", sent, postponed)
	}
}

func TestASentDeliveryIsNeverSentAgain(t *testing.T) {
	f := newFixture(t, ada())
	s, stop := f.start(t, 4)
	d := welcome(t, ada())
	f.enqueue(t, s, d)
	sent := f.waitStatus(t, d.ID, notificationsrpc.StatusSent)

	// Kicked again and again: a later delivery, sent after the kicks,
	// shows the sender looked at the queue since.
	for range 20 {
		s.Kick()
	}
	later := welcome(t, ada())
	f.enqueue(t, s, later)
	f.waitStatus(t, later.ID, notificationsrpc.StatusSent)

	// Restarted on the same store with one worker: due deliveries go
	// oldest first, so once the newest is sent an older one would have been.
	stop()
	s, _ = f.start(t, 1)
	s.Kick()
	last := welcome(t, ada())
	f.enqueue(t, s, last)
	f.waitStatus(t, last.ID, notificationsrpc.StatusSent)

	if n := len(mailsFor(f, d.ID)); n != 1 {
		t.Errorf("%d mails for %s, want 1", n, d.ID)
	}
	if n := len(f.fakes.SendGrid.Messages()); n != 3 {
		t.Errorf("%d mails in all, want 3 (one per delivery)", n)
	}
	if got, err := f.store.Get(d.ID); err != nil || got.Attempts != 1 || !got.SentAt.Equal(*sent.SentAt) {
		t.Errorf("after the restart: %s, %v; want untouched", describe(got), err)
	}
}

func TestNoDeliveryIsLeftBehindWhenManyAreQueuedAtOnce(t *testing.T) {
	buyer := ada()
	buyer.Devices = devices("tok-phone")
	f := newFixture(t, buyer)
	s, _ := f.start(t, 4)
	var ds []delivery.Delivery
	for range 10 {
		ds = append(ds, welcome(t, buyer), orderPaid(t, buyer.UserID, notificationsrpc.ChannelPush))
	}
	f.enqueue(t, s, ds...)
	for _, d := range ds {
		f.waitStatus(t, d.ID, notificationsrpc.StatusSent)
	}
	if m, p := len(f.fakes.SendGrid.Messages()), len(f.fakes.FCM.Messages()); m != 10 || p != 10 {
		t.Errorf("%d mails and %d pushes, want 10 each", m, p)
	}
	meshtest.Eventually(t, settle, func() error {
		if v, ok := gathered(t, f.metrics, "marketmesh_notifications_queued", nil); !ok || v != 0 {
			return fmt.Errorf("queued gauge %v (present %v), want 0", v, ok)
		}
		return nil
	})
}

// gate is a proxy in front of the SendGrid fake that holds every request
// until released.
type gate struct {
	URL      string
	arrived  chan struct{}
	released chan struct{}
	once     sync.Once
}

// release lets every held request, and every later one, through.
func (g *gate) release() { g.once.Do(func() { close(g.released) }) }

func newGate(t *testing.T, upstream string) *gate {
	t.Helper()
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{arrived: make(chan struct{}, 16), released: make(chan struct{})}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.arrived <- struct{}{}
		<-g.released
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(g.release) // never leave the server blocked
	g.URL = srv.URL
	return g
}

func TestStoppingWaitsForTheSendInFlightAndRecordsIt(t *testing.T) {
	f := newFixture(t, ada())
	g := newGate(t, f.fakes.SendGrid.URL)
	sg, err := provider.NewSendGrid(saasfake.DefaultSendGridKey, g.URL, from)
	if err != nil {
		t.Fatal(err)
	}
	s := f.newSender(4, sg)
	r := run(t, s)
	d := welcome(t, ada())
	f.enqueue(t, s, d)
	select {
	case <-g.arrived:
	case <-time.After(settle):
		t.Fatal("the email never reached SendGrid")
	}

	// Stopped while SendGrid holds the request: the send must not be cut
	// off (SendGrid may take it anyway), so Run waits for its answer.
	r.cancel()
	g.release()
	r.wait(t)

	got, err := f.store.Get(d.ID)
	if err != nil || got.Status != notificationsrpc.StatusSent || got.Attempts != 1 {
		t.Errorf("after the stop: %s, %v; want sent after 1 attempt", describe(got), err)
	}
	if n := len(f.fakes.SendGrid.Messages()); n != 1 {
		t.Errorf("%d mails, want 1", n)
	}
}

func TestAnOperatorsRetrySendsAPushEveryDeviceHadRefused(t *testing.T) {
	buyer := ada()
	buyer.Devices = devices("tok-phone")
	f := newFixture(t, buyer)
	// Our Firebase project is not the token's: permanent, the token is kept.
	f.fakes.FCM.FailToken("tok-phone", saasfake.SenderIDMismatch)
	s, _ := f.start(t, 4)
	d := orderPaid(t, buyer.UserID, notificationsrpc.ChannelPush)
	f.enqueue(t, s, d)
	if got := f.waitStatus(t, d.ID, notificationsrpc.StatusFailed); !got.Dead || !strings.Contains(got.LastError, "every device refused") {
		t.Fatalf("recorded %s; want a dead letter", describe(got))
	}

	// The project is fixed and an operator retries the dead letter, as
	// Notifications.Retry does.
	f.fakes.FCM.ClearFailures()
	if _, err := f.store.Update(d.ID, func(x *delivery.Delivery) error { return x.Requeue(time.Now()) }); err != nil {
		t.Fatal(err)
	}
	s.Kick()
	got := f.waitStatus(t, d.ID, notificationsrpc.StatusSent)
	if pushes := f.fakes.FCM.Messages(); len(pushes) != 1 || pushes[0].Token != "tok-phone" || got.MessageID != pushes[0].Name {
		t.Errorf("pushes to %v, recorded %s; want the retry to reach tok-phone", tokens(pushes), describe(got))
	}
	if len(f.users.removals()) != 0 {
		t.Errorf("removed %v; a sender ID mismatch keeps the token", f.users.removals())
	}
}
