package server_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"go-micro.dev/v4/client"
	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/api/internal/server"
	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/contracts/notificationsrpc"
	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/plugins/rpcfake"
)

// notificationsDown is how the RPC stack reports the notifications service
// unreachable.
var notificationsDown = merrors.New("go.micro.client", "service marketmesh.notifications: not found", 503)

// A recipient's notifications, one sent and about an order, one not yet sent.
var (
	notifiedAt = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	sentAt     = notifiedAt.Add(5 * time.Second)
	sentPush   = notificationsrpc.Notification{ID: "ntf_89abcdef0123456789abcdef", Channel: notificationsrpc.ChannelPush,
		Template: notificationsrpc.TemplateOrderPaidBuyer, Status: notificationsrpc.StatusSent, Attempts: 1,
		CreatedAt: notifiedAt, SentAt: &sentAt, OrderID: "o1"}
	queuedMail = notificationsrpc.Notification{ID: "ntf_0123456789abcdef01234567", Channel: notificationsrpc.ChannelEmail,
		Template: notificationsrpc.TemplateWelcome, Status: notificationsrpc.StatusQueued, CreatedAt: notifiedAt}
)

// callsTo returns the calls the fake received at endpoint.
func callsTo(f *rpcfake.Client, endpoint string) []rpcfake.Call {
	var out []rpcfake.Call
	for _, c := range f.Calls() {
		if c.Endpoint == endpoint {
			out = append(out, c)
		}
	}
	return out
}

// decodeStrict decodes body into v, refusing members v does not name.
func decodeStrict(t *testing.T, body []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
}

func TestListNotifications(t *testing.T) {
	ta := newTestAPI(t)
	tok := ta.token(t, "01HCALLER")
	ta.users.Answer = func(endpoint string, _ any) (any, error) {
		if endpoint != "Notifications.List" {
			return nil, merrors.InternalServerError("test", "unexpected %s", endpoint)
		}
		return &notificationsrpc.Page{Items: []notificationsrpc.Notification{sentPush, queuedMail}, NextPageToken: "next-1"}, nil
	}

	t.Run("the caller's notifications, as the service lists them for the caller", func(t *testing.T) {
		ta.users.Reset()
		rec := ta.do(t, req{method: "GET", path: "/v1/notifications", bearer: tok})
		if rec.Code != 200 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		checkAgainstSchema(t, "NotificationPage", rec.Body.Bytes())
		calls := ta.users.Calls()
		if len(calls) != 1 || calls[0].Service != notificationsrpc.Service || calls[0].Endpoint != "Notifications.List" {
			t.Fatalf("calls %+v, want one Notifications.List", calls)
		}
		if calls[0].Caller != "01HCALLER" {
			t.Errorf("caller in metadata = %q, want 01HCALLER: the service lists the caller's own", calls[0].Caller)
		}
		if r := *calls[0].Req.(*notificationsrpc.PageRequest); r != (notificationsrpc.PageRequest{PageSize: 20}) {
			t.Errorf("page request %+v, want the default size", r)
		}
		var raw struct {
			Items         []map[string]any `json:"items"`
			NextPageToken string           `json:"next_page_token"`
		}
		decodeStrict(t, rec.Body.Bytes(), &raw)
		if len(raw.Items) != 2 || raw.NextPageToken != "next-1" {
			t.Fatalf("answer %s", rec.Body)
		}
		sent, queued := raw.Items[0], raw.Items[1]
		if sent["id"] != sentPush.ID || sent["channel"] != "push" || sent["template"] != "order_paid_buyer" || sent["status"] != "sent" ||
			sent["attempts"] != 1.0 || sent["created_at"] != "2024-05-01T12:00:00Z" || sent["sent_at"] != "2024-05-01T12:00:05Z" || sent["order_id"] != "o1" {
			t.Errorf("sent item %v", sent)
		}
		if v, ok := queued["sent_at"]; !ok || v != nil {
			t.Errorf("an unsent item's sent_at = %v (present %v), want null", v, ok)
		}
		if _, ok := queued["order_id"]; ok {
			t.Errorf("an item about no order has order_id: %v", queued)
		}
	})

	t.Run("page_size and page_token reach the service, next_page_token comes back", func(t *testing.T) {
		ta.users.Reset()
		rec := ta.do(t, req{method: "GET", path: "/v1/notifications?page_size=5&page_token=abc", bearer: tok})
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"next_page_token":"next-1"`) {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		calls := ta.users.Calls()
		if r := *calls[0].Req.(*notificationsrpc.PageRequest); r != (notificationsrpc.PageRequest{PageSize: 5, PageToken: "abc"}) {
			t.Errorf("page request %+v", r)
		}
	})

	t.Run("no notifications is an empty list", func(t *testing.T) {
		ta := newTestAPI(t)
		rec := ta.do(t, req{method: "GET", path: "/v1/notifications", bearer: ta.token(t, "u1")})
		if want := `{"items":[],"next_page_token":""}` + "\n"; rec.Code != 200 || rec.Body.String() != want {
			t.Errorf("%d %s, want %s", rec.Code, rec.Body, want)
		}
	})

	for _, q := range []string{"?page_size=0", "?page_size=101", "?page_size=ten", "?page_token=" + strings.Repeat("t", 513), "?page_size=%zz"} {
		t.Run("a bad page query is 400 without a call: "+q[:min(len(q), 20)], func(t *testing.T) {
			ta.users.Reset()
			wantError(t, ta.do(t, req{method: "GET", path: "/v1/notifications" + q, bearer: tok}), 400, "bad_request")
			if n := len(ta.users.Calls()); n != 0 {
				t.Errorf("%d calls reached the service", n)
			}
		})
	}

	t.Run("a page token the service did not issue is 400", func(t *testing.T) {
		ta := newTestAPI(t)
		ta.users.Answer = func(string, any) (any, error) {
			return nil, merrors.BadRequest(notificationsrpc.Service, "paging: page_token is not valid")
		}
		msg := wantError(t, ta.do(t, req{method: "GET", path: "/v1/notifications?page_token=forged", bearer: ta.token(t, "u1")}), 400, "bad_request")
		if !strings.Contains(msg, "page_token") {
			t.Errorf("message %q does not name page_token", msg)
		}
	})

	t.Run("notifications down is 503", func(t *testing.T) {
		ta := newTestAPI(t)
		ta.users.Answer = func(string, any) (any, error) { return nil, notificationsDown }
		wantError(t, ta.do(t, req{method: "GET", path: "/v1/notifications", bearer: ta.token(t, "u1")}), 503, "unavailable")
	})

	t.Run("without a token it is 401", func(t *testing.T) {
		ta.users.Reset()
		wantError(t, ta.do(t, req{method: "GET", path: "/v1/notifications"}), 401, "unauthenticated")
		if n := len(ta.users.Calls()); n != 0 {
			t.Errorf("%d calls reached the service", n)
		}
	})
}

// notificationDeadLetter is a push the provider refused for good.
var notificationDeadLetter = notificationsrpc.DeadLetter{
	Notification: notificationsrpc.Notification{ID: "ntf_fedcba9876543210fedcba98", Channel: notificationsrpc.ChannelPush,
		Template: notificationsrpc.TemplateOrderShipped, Status: notificationsrpc.StatusFailed, Attempts: 5, CreatedAt: notifiedAt, OrderID: "o1"},
	UserID: "01HBUYER", EventID: "01HEVENT", Topic: ordersrpc.TopicOrderShipped, Provider: "fcm", LastError: "fcm: UNREGISTERED",
	FailedAt: notifiedAt.Add(time.Minute),
}

func TestNotificationDeadLetters(t *testing.T) {
	ta := newTestAPI(t)
	admin := ta.adminToken(t)
	// An event the service could not read: nothing to send, no provider.
	malformed := notificationsrpc.DeadLetter{
		Notification: notificationsrpc.Notification{ID: "ntf_00000000000000000000000a", Status: notificationsrpc.StatusFailed, CreatedAt: notifiedAt},
		EventID:      "01HEVENT2", Topic: ordersrpc.TopicOrderPaid, LastError: "malformed event", FailedAt: notifiedAt,
	}
	ta.users.Answer = func(endpoint string, _ any) (any, error) {
		if endpoint != "Notifications.DeadLetters" {
			return nil, merrors.InternalServerError("test", "unexpected %s", endpoint)
		}
		return &notificationsrpc.DeadLetterPage{Items: []notificationsrpc.DeadLetter{notificationDeadLetter, malformed}, NextPageToken: "n2"}, nil
	}

	t.Run("an admin lists the dead letters with their recipient, event and error", func(t *testing.T) {
		rec := ta.do(t, req{method: "GET", path: "/v1/admin/notifications/dead-letters?page_size=2&page_token=p1", bearer: admin})
		if rec.Code != 200 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control = %q, want no-store", cc)
		}
		checkAgainstSchema(t, "NotificationDeadLetterPage", rec.Body.Bytes())
		calls := callsTo(ta.users, "Notifications.DeadLetters")
		if len(calls) != 1 || *calls[0].Req.(*notificationsrpc.PageRequest) != (notificationsrpc.PageRequest{PageSize: 2, PageToken: "p1"}) {
			t.Fatalf("calls %+v", calls)
		}
		var out struct {
			Items         []map[string]any `json:"items"`
			NextPageToken string           `json:"next_page_token"`
		}
		decodeStrict(t, rec.Body.Bytes(), &out)
		if len(out.Items) != 2 || out.NextPageToken != "n2" {
			t.Fatalf("answer %s", rec.Body)
		}
		want := map[string]any{"id": "ntf_fedcba9876543210fedcba98", "channel": "push", "template": "order_shipped", "status": "failed",
			"attempts": 5.0, "created_at": "2024-05-01T12:00:00Z", "sent_at": nil, "order_id": "o1", "user_id": "01HBUYER",
			"event_id": "01HEVENT", "topic": "order.shipped", "provider": "fcm", "last_error": "fcm: UNREGISTERED", "failed_at": "2024-05-01T12:01:00Z"}
		if got := out.Items[0]; len(got) != len(want) {
			t.Errorf("first item %v, want %v", got, want)
		} else {
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
		}
		second := out.Items[1]
		if p, ok := second["provider"]; !ok || p != "" || second["channel"] != "" || second["user_id"] != "" {
			t.Errorf("an unreadable event's dead letter %v: want empty channel, user and provider, all present", second)
		}
	})

	t.Run("a bad page query is 400", func(t *testing.T) {
		wantError(t, ta.do(t, req{method: "GET", path: "/v1/admin/notifications/dead-letters?page_size=0", bearer: admin}), 400, "bad_request")
	})

	t.Run("notifications down is 503", func(t *testing.T) {
		ta := newTestAPI(t)
		ta.users.Answer = func(string, any) (any, error) { return nil, notificationsDown }
		wantError(t, ta.do(t, req{method: "GET", path: "/v1/admin/notifications/dead-letters", bearer: ta.adminToken(t)}), 503, "unavailable")
	})
}

func TestNotificationRetry(t *testing.T) {
	const id = "ntf_fedcba9876543210fedcba98"
	const path = "/v1/admin/notifications/dead-letters/" + id + "/retry"

	t.Run("a retried dead letter is 200 with the delivery, queued again", func(t *testing.T) {
		ta := newTestAPI(t)
		ta.users.Answer = func(endpoint string, _ any) (any, error) {
			d := notificationDeadLetter
			d.Status, d.Attempts, d.FailedAt = notificationsrpc.StatusQueued, 0, time.Time{}
			return &d, nil
		}
		rec := ta.do(t, req{method: "POST", path: path, bearer: ta.adminToken(t), header: map[string]string{"X-Request-Id": "trace-7"}})
		if rec.Code != 200 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		checkAgainstSchema(t, "NotificationDeadLetter", rec.Body.Bytes())
		var out map[string]any
		decodeStrict(t, rec.Body.Bytes(), &out)
		if out["id"] != id || out["status"] != "queued" || out["attempts"] != 0.0 || out["last_error"] != "fcm: UNREGISTERED" {
			t.Errorf("answer %v", out)
		}
		if v, ok := out["failed_at"]; !ok || v != nil {
			t.Errorf("failed_at = %v (present %v), want null once queued again", v, ok)
		}
		calls := ta.users.Calls()
		if len(calls) != 1 || calls[0].Endpoint != "Notifications.Retry" || calls[0].Caller != testAdmin || calls[0].RequestID != "trace-7" ||
			*calls[0].Req.(*notificationsrpc.RetryRequest) != (notificationsrpc.RetryRequest{ID: id}) {
			t.Fatalf("calls %+v", calls)
		}
	})

	for _, tt := range []struct {
		name   string
		answer error
		status int
		code   string
	}{
		{"an unknown notification is 404 notification_not_found",
			merrors.New(notificationsrpc.CodeNotificationNotFound, "notification not found", 404), 404, "notification_not_found"},
		{"a notification that is not a dead letter is 409 notification_not_dead",
			merrors.New(notificationsrpc.CodeNotDead, "notification "+id+" is sent: not a dead letter", 409), 409, "notification_not_dead"},
		{"notifications down is 503", notificationsDown, 503, "unavailable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ta := newTestAPI(t)
			ta.users.Answer = func(string, any) (any, error) { return nil, tt.answer }
			msg := wantError(t, ta.do(t, req{method: "POST", path: path, bearer: ta.adminToken(t)}), tt.status, tt.code)
			if tt.status == 409 && !strings.Contains(msg, "not a dead letter") {
				t.Errorf("message %q does not say why", msg)
			}
		})
	}

	for _, bad := range []string{
		"01HZX3M5Q8R6Y2T4V7W9K1N3P5",        // a ULID
		"ntf_FEDCBA9876543210FEDCBA98",      // upper-case hex
		"ntf_fedcba98",                      // too short
		"ntf_fedcba9876543210fedcba9876",    // too long
		"ntf_fedcba9876543210fedcbaxx",      // not hex
		"ntf_fedcba9876543210fedcba98%20",   // trailing space
		"%6Etf_fedcba9876543210fedcba98%0A", // escaped, with a newline
	} {
		t.Run("an id not shaped like a notification's is 400: "+bad, func(t *testing.T) {
			ta := newTestAPI(t)
			msg := wantError(t, ta.do(t, req{method: "POST", path: "/v1/admin/notifications/dead-letters/" + bad + "/retry", bearer: ta.adminToken(t)}), 400, "bad_request")
			if !strings.Contains(msg, "ntf_") {
				t.Errorf("message %q does not say what an ID looks like", msg)
			}
			if n := len(ta.users.Calls()); n != 0 {
				t.Errorf("%d calls reached the service", n)
			}
		})
	}
}

// orderWithNotifications answers Orders.Get for o1 (404 for other orders),
// Images.First, and Notifications.ForOrder with notes or err.
func orderWithNotifications(t *testing.T, notes []notificationsrpc.Notification, err error) func(string, any) (any, error) {
	return func(endpoint string, r any) (any, error) {
		switch endpoint {
		case "Orders.Get":
			if id := r.(*ordersrpc.IDRequest).ID; id != "o1" {
				return nil, merrors.NotFound(ordersrpc.Service, "order %s not found", id)
			}
			price := money.Money{Amount: 1999, Currency: "USD"}
			return &ordersrpc.Order{ID: "o1", BuyerID: "01HBUYER", Status: ordersrpc.StatusPaid, Total: price, CreatedAt: notifiedAt, UpdatedAt: notifiedAt,
				Lines:           []ordersrpc.Line{{PublicationID: "p1", SellerID: "01HSELLER", Quantity: 1, UnitPrice: price, Subtotal: price}},
				ShippingAddress: ordersrpc.Address{Name: "Ada", Line1: "1 Main St", City: "London", PostalCode: "SW1", Country: "GB"}}, nil
		case "Notifications.ForOrder":
			if err != nil {
				return nil, err
			}
			return &notificationsrpc.OrderNotifications{Items: notes}, nil
		case "Images.First":
			return nil, nil
		}
		t.Errorf("unexpected call %s", endpoint)
		return nil, nil
	}
}

// orderPageBody is the part of GET /v1/orders/{id} these tests read.
type orderPageBody struct {
	ID            string           `json:"id"`
	Notifications []map[string]any `json:"notifications"`
	Partial       bool             `json:"partial"`
	Unavailable   []string         `json:"unavailable"`
}

func getOrderPage(t *testing.T, ta *testAPI, path string) orderPageBody {
	t.Helper()
	rec := ta.do(t, req{method: "GET", path: path, bearer: ta.token(t, "01HBUYER")})
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	checkAgainstSchema(t, "OrderPage", rec.Body.Bytes())
	var page orderPageBody
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
		t.Fatal(err)
	}
	if page.Notifications == nil || page.Unavailable == nil {
		t.Errorf("notifications or unavailable is not a list: %s", rec.Body)
	}
	return page
}

func TestGetOrderAddsTheCallersNotifications(t *testing.T) {
	t.Run("the caller's notifications about the order come with it", func(t *testing.T) {
		ta := newTestAPI(t)
		ta.users.Answer = orderWithNotifications(t, []notificationsrpc.Notification{sentPush}, nil)
		page := getOrderPage(t, ta, "/v1/orders/o1")
		if page.ID != "o1" || page.Partial || len(page.Unavailable) != 0 || len(page.Notifications) != 1 {
			t.Fatalf("page %+v", page)
		}
		if n := page.Notifications[0]; n["id"] != sentPush.ID || n["status"] != "sent" || n["order_id"] != "o1" || n["sent_at"] != "2024-05-01T12:00:05Z" {
			t.Errorf("notification %v", n)
		}
		calls := callsTo(ta.users, "Notifications.ForOrder")
		if len(calls) != 1 || calls[0].Caller != "01HBUYER" || calls[0].Req.(*notificationsrpc.OrderRequest).OrderID != "o1" {
			t.Errorf("ForOrder calls %+v, want one for o1 as the caller", calls)
		}
	})

	t.Run("an order without notifications has an empty list", func(t *testing.T) {
		ta := newTestAPI(t)
		ta.users.Answer = orderWithNotifications(t, nil, nil)
		if page := getOrderPage(t, ta, "/v1/orders/o1"); page.Partial || len(page.Notifications) != 0 {
			t.Fatalf("page %+v", page)
		}
	})

	t.Run("notifications are read in parallel with the order", func(t *testing.T) {
		ta := newTestAPI(t)
		asked := make(chan struct{})
		answer := orderWithNotifications(t, []notificationsrpc.Notification{sentPush}, nil)
		ta.users.Answer = func(endpoint string, r any) (any, error) {
			switch endpoint {
			case "Notifications.ForOrder":
				close(asked)
			case "Orders.Get":
				select { // the order answers only once notifications was asked
				case <-asked:
				case <-time.After(5 * time.Second):
					return nil, merrors.InternalServerError("test", "notifications was not asked while the order was read")
				}
			}
			return answer(endpoint, r)
		}
		if page := getOrderPage(t, ta, "/v1/orders/o1"); page.Partial || len(page.Notifications) != 1 {
			t.Fatalf("page %+v", page)
		}
	})

	t.Run("notifications down: the order still answers, partial", func(t *testing.T) {
		ta := newTestAPI(t)
		ta.users.Answer = orderWithNotifications(t, nil, notificationsDown)
		page := getOrderPage(t, ta, "/v1/orders/o1")
		if page.ID != "o1" || !page.Partial || !slices.Equal(page.Unavailable, []string{"notifications"}) || len(page.Notifications) != 0 {
			t.Fatalf("page %+v, want the order, partial, notifications unavailable", page)
		}
	})

	t.Run("notifications and images down: both are named, sorted", func(t *testing.T) {
		ta := newTestAPI(t)
		answer := orderWithNotifications(t, nil, notificationsDown)
		ta.users.Answer = func(endpoint string, r any) (any, error) {
			if endpoint == "Images.First" {
				return nil, merrors.New("go.micro.client", "images is unavailable", 503)
			}
			return answer(endpoint, r)
		}
		page := getOrderPage(t, ta, "/v1/orders/o1")
		if !page.Partial || !slices.Equal(page.Unavailable, []string{"images", "notifications"}) {
			t.Fatalf("page %+v", page)
		}
	})

	t.Run("notifications slow: the order answers after the part timeout, partial", func(t *testing.T) {
		fake := &rpcfake.Client{Answer: orderWithNotifications(t, []notificationsrpc.Notification{sentPush}, nil)}
		ta := newTestAPI(t, func(o *server.Options) {
			o.PartTimeout = 50 * time.Millisecond
			o.Orders = ordersrpc.NewClient(fake)
			o.Images = imagesrpc.NewClient(fake)
			o.Notifications = notificationsrpc.NewClient(&stuckClient{Client: fake, endpoint: "Notifications.ForOrder"})
		})
		start := time.Now()
		page := getOrderPage(t, ta, "/v1/orders/o1")
		if !page.Partial || !slices.Equal(page.Unavailable, []string{"notifications"}) || len(page.Notifications) != 0 {
			t.Fatalf("page %+v", page)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("answered after %v: the part timeout did not bound the wait", d)
		}
	})

	t.Run("an order the caller may not see is 404, without notifications", func(t *testing.T) {
		ta := newTestAPI(t)
		ta.users.Answer = orderWithNotifications(t, []notificationsrpc.Notification{sentPush}, nil)
		rec := ta.do(t, req{method: "GET", path: "/v1/orders/o9", bearer: ta.token(t, "01HBUYER")})
		wantError(t, rec, 404, "not_found")
		if strings.Contains(rec.Body.String(), sentPush.ID) {
			t.Errorf("the 404 carries notifications: %s", rec.Body)
		}
	})

	t.Run("orders down is 503 even when notifications answers", func(t *testing.T) {
		ta := newTestAPI(t)
		answer := orderWithNotifications(t, []notificationsrpc.Notification{sentPush}, nil)
		ta.users.Answer = func(endpoint string, r any) (any, error) {
			if endpoint == "Orders.Get" {
				return nil, merrors.New("go.micro.client", "orders is unavailable", 503)
			}
			return answer(endpoint, r)
		}
		wantError(t, ta.do(t, req{method: "GET", path: "/v1/orders/o1", bearer: ta.token(t, "01HBUYER")}), 503, "unavailable")
	})
}

// stuckClient is a fake whose calls to endpoint never answer: they return
// only when their context ends, as a service that hangs.
type stuckClient struct {
	*rpcfake.Client
	endpoint string
}

func (s *stuckClient) Call(ctx context.Context, req client.Request, rsp any, opts ...client.CallOption) error {
	if req.Endpoint() == s.endpoint {
		<-ctx.Done()
		return ctx.Err()
	}
	return s.Client.Call(ctx, req, rsp, opts...)
}
