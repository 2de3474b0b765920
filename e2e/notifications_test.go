package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/plugins/meshtest"
	"github.com/marketmesh/marketmesh/plugins/saasfake"
)

// Notifications: events become emails (SendGrid v3) and pushes (FCM v1),
// sent through the real client libraries to protocol fakes, once each.

// deliveryWait bounds how long a message may take: a retry with backoff on
// race-built binaries on a loaded 2-core machine.
const deliveryWait = 60 * time.Second

// mailsTo returns the accepted emails to addr.
func mailsTo(f *saasfake.Fakes, addr string) []saasfake.Mail {
	var out []saasfake.Mail
	for _, m := range f.SendGrid.Messages() {
		for _, to := range m.To {
			if strings.EqualFold(to.Email, addr) {
				out = append(out, m)
			}
		}
	}
	return out
}

// pushesTo returns the accepted pushes to token.
func pushesTo(f *saasfake.Fakes, token string) []saasfake.Push {
	var out []saasfake.Push
	for _, p := range f.FCM.Messages() {
		if p.Token == token {
			out = append(out, p)
		}
	}
	return out
}

// waitCount waits until count() reaches want, then checks it stays there
// (no duplicate arrives) for a short settle time.
func waitCount(t *testing.T, what string, want int, count func() int) {
	t.Helper()
	meshtest.Eventually(t, deliveryWait, func() error {
		if n := count(); n < want {
			return fmt.Errorf("%s: %d of %d", what, n, want)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	if n := count(); n != want {
		t.Fatalf("%s: %d delivered, want exactly %d", what, n, want)
	}
}

// noDuplicates counts the fakes' messages per delivery ID (SendGrid custom
// args, FCM data and token) and fails on any that arrived twice or without one.
func noDuplicates(t *testing.T, f *saasfake.Fakes) {
	t.Helper()
	seen := map[string]int{}
	for _, m := range f.SendGrid.Messages() {
		if m.CustomArgs["delivery_id"] == "" {
			t.Errorf("email without a delivery ID: %+v", m)
		}
		seen["email "+m.CustomArgs["delivery_id"]]++
	}
	for _, p := range f.FCM.Messages() {
		if p.Data["delivery_id"] == "" {
			t.Errorf("push without a delivery ID: %+v", p)
		}
		seen["push "+p.Data["delivery_id"]+" to "+p.Token]++
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s arrived %d times", k, n)
		}
	}
}

// notifications reads every page of the caller's notifications.
func (m *mesh) notifications(t *testing.T, token string) []map[string]any {
	t.Helper()
	var out []map[string]any
	page := ""
	for range 50 {
		a := m.send("GET", "/v1/notifications?page_size=100&page_token="+url.QueryEscape(page), token, nil, nil)
		body := expectAnswer(t, "GET /v1/notifications", a, http.StatusOK)
		items, _ := body["items"].([]any)
		for _, it := range items {
			out = append(out, it.(map[string]any))
		}
		page, _ = body["next_page_token"].(string)
		if page == "" {
			return out
		}
	}
	t.Fatal("GET /v1/notifications: more than 50 pages")
	return nil
}

func addDevice(t *testing.T, m *mesh, token, device string) {
	t.Helper()
	a := m.send("POST", "/v1/users/me/devices", token, map[string]any{"token": device, "platform": "android"}, nil)
	if a.status != http.StatusCreated && a.status != http.StatusOK {
		t.Fatalf("add device: %s", a)
	}
}

func devices(t *testing.T, m *mesh, token string) []string {
	t.Helper()
	body := expectAnswer(t, "GET devices", m.send("GET", "/v1/users/me/devices", token, nil, nil), http.StatusOK)
	var out []string
	for _, d := range body["items"].([]any) {
		out = append(out, d.(map[string]any)["token"].(string))
	}
	return out
}

func TestNotificationsWelcomeOrderAndTheCallersList(t *testing.T) {
	m := startMesh(t)
	f := m.saas

	// SendGrid is rate limiting when the first welcome email goes out: it is
	// retried after Retry-After and arrives once.
	f.SendGrid.FailNext(http.StatusTooManyRequests, "1", 1)
	_, buyer := m.signup("ada@example.com")
	_, seller := m.signup("grace@example.com")
	waitCount(t, "welcome email to ada", 1, func() int { return len(mailsTo(f, "ada@example.com")) })
	welcome := mailsTo(f, "ada@example.com")[0]
	if welcome.Subject == "" || !strings.Contains(welcome.HTML, "<") || welcome.Text == "" || welcome.CustomArgs["delivery_id"] == "" {
		t.Fatalf("welcome email lacks a subject, an HTML part, a text part or its delivery ID: %+v", welcome)
	}
	if !strings.Contains(welcome.Text, "User ada@example.com") {
		t.Errorf("welcome email does not greet the user by name:\n%s", welcome.Text)
	}

	addDevice(t, m, buyer, "tok-ada-phone")
	addDevice(t, m, seller, "tok-grace-phone")
	// FCM is briefly unavailable for the first push: retried, one push.
	f.FCM.FailNext(saasfake.Unavailable, "", 1)

	pub := m.seedPublication(seller, "Analytical Engine", 125000, "GBP", 3)
	order := expectAnswer(t, "order", m.placeOrder(buyer, orderBody(pub, 2, "tok_visa"), ""), http.StatusCreated)
	orderID := order["id"].(string)

	waitCount(t, "receipt to ada", 1, func() int {
		n := 0
		for _, mail := range mailsTo(f, "ada@example.com") {
			if strings.Contains(mail.Text, orderID) || strings.Contains(mail.Subject, "Analytical") || strings.Contains(mail.Text, "Analytical Engine") {
				n++
			}
		}
		return n
	})
	waitCount(t, "order email to grace", 1, func() int { return len(mailsTo(f, "grace@example.com")) - 1 }) // minus her welcome
	waitCount(t, "push to ada", 1, func() int { return len(pushesTo(f, "tok-ada-phone")) })
	waitCount(t, "push to grace", 1, func() int { return len(pushesTo(f, "tok-grace-phone")) })

	var receipt, toShip saasfake.Mail
	for _, mail := range mailsTo(f, "ada@example.com") {
		if mail.CustomArgs["delivery_id"] != welcome.CustomArgs["delivery_id"] {
			receipt = mail
		}
	}
	for _, mail := range mailsTo(f, "grace@example.com") {
		if strings.Contains(mail.Text, "Lovelace") || strings.Contains(mail.Text, "SW1Y") {
			toShip = mail
		}
	}
	for _, want := range []string{"Analytical Engine", "£2,500.00"} {
		if !strings.Contains(receipt.Text, want) || !strings.Contains(receipt.HTML, want) {
			t.Errorf("receipt lacks %q:\ntext: %s\nhtml: %s", want, receipt.Text, receipt.HTML)
		}
	}
	for _, want := range []string{"Analytical Engine", "SW1Y 4JH", "London"} {
		if !strings.Contains(toShip.Text, want) {
			t.Errorf("seller's email lacks %q (what to ship and where):\n%s", want, toShip.Text)
		}
	}
	if p := pushesTo(f, "tok-ada-phone")[0]; p.Title == "" || p.Body == "" || p.Data["order_id"] != orderID {
		t.Errorf("buyer's push: %+v", p)
	}
	noDuplicates(t, f)

	// The caller's list: only their own deliveries, newest first, statuses.
	mine := m.notifications(t, buyer)
	templates := map[string]string{}
	for i, n := range mine {
		templates[n["template"].(string)+"/"+n["channel"].(string)] = n["status"].(string)
		if i > 0 && n["created_at"].(string) > mine[i-1]["created_at"].(string) {
			t.Errorf("notifications not newest first: %v", mine)
		}
	}
	want := map[string]string{"welcome/email": "sent", "order_paid_buyer/email": "sent", "order_paid_buyer/push": "sent"}
	for k, st := range want {
		if templates[k] != st {
			t.Errorf("ada's %s: %q, want %q (all: %v)", k, templates[k], st, templates)
		}
	}
	for k := range templates {
		if strings.Contains(k, "seller") {
			t.Errorf("ada sees a seller's notification: %s", k)
		}
	}
	// The order page shows the caller's deliveries for the order.
	page := expectAnswer(t, "order page", m.send("GET", "/v1/orders/"+orderID, buyer, nil, nil), http.StatusOK)
	ns, _ := page["notifications"].([]any)
	if len(ns) != 2 {
		t.Errorf("order page notifications: %v", page["notifications"])
	}
}

func TestNotificationsPreferencesAndInvalidTokens(t *testing.T) {
	m := startMesh(t)
	f := m.saas
	_, buyer := m.signup("carol@example.com")
	_, seller := m.signup("dan@example.com")
	waitCount(t, "welcome emails", 2, func() int { return len(f.SendGrid.Messages()) })

	// carol turns email off; dan's only device is unregistered at FCM.
	expectAnswer(t, "preferences", m.send("PUT", "/v1/users/me/notification-preferences", buyer,
		map[string]any{"email": false, "push": true}, nil), http.StatusOK)
	addDevice(t, m, buyer, "tok-carol")
	addDevice(t, m, seller, "tok-dan-gone")
	f.FCM.FailToken("tok-dan-gone", saasfake.Unregistered)

	pub := m.seedPublication(seller, "Difference Engine", 5000, "USD", 5)
	expectAnswer(t, "order", m.placeOrder(buyer, orderBody(pub, 1, "tok_visa"), ""), http.StatusCreated)

	waitCount(t, "push to carol", 1, func() int { return len(pushesTo(f, "tok-carol")) })
	waitCount(t, "order email to dan", 1, func() int { return len(mailsTo(f, "dan@example.com")) - 1 })
	meshtest.Eventually(t, deliveryWait, func() error {
		if d := devices(t, m, seller); slices.Contains(d, "tok-dan-gone") {
			return fmt.Errorf("dan's devices: %v", d)
		}
		return nil
	})
	if n := len(mailsTo(f, "carol@example.com")); n != 1 { // her welcome, sent before she turned email off
		t.Errorf("carol turned email off, yet %d emails reached her", n)
	}
	statuses := map[string]string{}
	meshtest.Eventually(t, deliveryWait, func() error {
		for _, n := range m.notifications(t, buyer) {
			statuses[n["template"].(string)+"/"+n["channel"].(string)] = n["status"].(string)
		}
		if statuses["order_paid_buyer/email"] != "skipped" || statuses["order_paid_buyer/push"] != "sent" {
			return fmt.Errorf("carol's statuses: %v", statuses)
		}
		return nil
	})
	danStatuses := map[string]string{}
	for _, n := range m.notifications(t, seller) {
		danStatuses[n["template"].(string)+"/"+n["channel"].(string)] = n["status"].(string)
	}
	if danStatuses["order_paid_seller/push"] != "failed" || danStatuses["order_paid_seller/email"] != "sent" {
		t.Errorf("dan's statuses: %v", danStatuses)
	}
	noDuplicates(t, f)
}

func TestNotificationsSurviveTheirOwnAndUsersOutages(t *testing.T) {
	m := startMesh(t)
	f := m.saas
	_, buyer := m.signup("eve@example.com")
	_, seller := m.signup("frank@example.com")
	waitCount(t, "welcome emails", 2, func() int { return len(f.SendGrid.Messages()) })
	pub := m.seedPublication(seller, "Jacquard Loom", 900, "EUR", 50)

	// notifications stopped while orders are placed: the relay keeps the
	// events, and every message goes out once when it is back.
	m.procs["notifications"].stop()
	const orders = 3
	for range orders {
		expectAnswer(t, "order", m.placeOrder(buyer, orderBody(pub, 1, "tok_visa"), ""), http.StatusCreated)
	}
	time.Sleep(time.Second)
	if n := len(f.SendGrid.Messages()); n != 2 {
		t.Fatalf("%d emails while notifications was stopped", n)
	}
	m.procs["notifications"].start()
	waitCount(t, "receipts to eve", orders, func() int { return len(mailsTo(f, "eve@example.com")) - 1 })
	waitCount(t, "order emails to frank", orders, func() int { return len(mailsTo(f, "frank@example.com")) - 1 })

	// users down: recipients cannot be looked up; the deliveries wait and go
	// out once users is back.
	m.users.stop()
	expectAnswer(t, "order with users down", m.placeOrder(buyer, orderBody(pub, 1, "tok_visa"), ""), http.StatusCreated)
	time.Sleep(2 * time.Second)
	if n := len(mailsTo(f, "eve@example.com")) - 1; n != orders {
		t.Fatalf("%d receipts with users down, want still %d", n, orders)
	}
	m.users.start()
	waitCount(t, "receipts to eve after users returned", orders+1, func() int { return len(mailsTo(f, "eve@example.com")) - 1 })
	waitCount(t, "order emails to frank after users returned", orders+1, func() int { return len(mailsTo(f, "frank@example.com")) - 1 })
	noDuplicates(t, f)
}
