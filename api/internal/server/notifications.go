package server

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/marketmesh/marketmesh/api/internal/fanout"
	"github.com/marketmesh/marketmesh/contracts/notificationsrpc"
	"github.com/marketmesh/marketmesh/plugins/apierror"
)

// The notifications routes: the caller's deliveries (emails and pushes the
// notifications service recorded for them), and for operators the
// deliveries that failed for good, listed and queued again. The service
// shows a caller only the deliveries addressed to them, and takes the
// operators' calls only from the api's service credential: the api checks
// the admin role before it makes them.

// The notifications service's machine codes keep their names in error
// documents.
func init() {
	apierror.RegisterCode(notificationsrpc.CodeNotificationNotFound, notificationsrpc.CodeNotDead)
}

// notificationID is the shape of a delivery's ID: "ntf_" and 24 hex digits.
var notificationID = regexp.MustCompile(`^ntf_[0-9a-f]{24}$`)

// notificationView is one delivery as its recipient sees it.
type notificationView struct {
	ID        string     `json:"id"`
	Channel   string     `json:"channel"` // email or push
	Template  string     `json:"template"`
	Status    string     `json:"status"` // queued, sent, failed or skipped
	Attempts  int        `json:"attempts"`
	CreatedAt time.Time  `json:"created_at"`
	SentAt    *time.Time `json:"sent_at"`            // null until the provider accepted it
	OrderID   string     `json:"order_id,omitempty"` // the order it is about, if any
}

func notificationOf(n notificationsrpc.Notification) notificationView {
	return notificationView{ID: n.ID, Channel: n.Channel, Template: n.Template, Status: n.Status,
		Attempts: n.Attempts, CreatedAt: n.CreatedAt, SentAt: n.SentAt, OrderID: n.OrderID}
}

func notificationViews(ns []notificationsrpc.Notification) []notificationView {
	out := make([]notificationView, len(ns))
	for i, n := range ns {
		out[i] = notificationOf(n)
	}
	return out
}

// notificationList is GET /v1/notifications.
type notificationList struct {
	Items         []notificationView `json:"items"`
	NextPageToken string             `json:"next_page_token"`
}

// listNotifications pages the caller's deliveries, newest first. It reads
// one service: down is 503.
func (a *API) listNotifications(w http.ResponseWriter, r *http.Request) error {
	_, size, token, err := listQuery(r)
	if err != nil {
		return err
	}
	page, err := a.notifications.List(r.Context(), notificationsrpc.PageRequest{PageSize: size, PageToken: token})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, notificationList{Items: notificationViews(page.Items), NextPageToken: page.NextPageToken})
	return nil
}

// orderNotificationsPart adds the optional part "notifications": the
// caller's deliveries about the order orderID, newest first. into stays nil
// when the part is missing.
func (a *API) orderNotificationsPart(g *fanout.Group, orderID string, into *[]notificationView) {
	g.Optional("notifications", a.opts.PartTimeout, func(ctx context.Context) error {
		res, err := a.notifications.ForOrder(ctx, orderID)
		if err != nil {
			return err
		}
		*into = notificationViews(res.Items)
		return nil
	})
}

// notificationDeadLetterView is a delivery that failed for good, as
// operators see it. A dead letter made of an event the service could not
// read has no channel, template or user: there is nothing to send, and
// retrying it is 409.
type notificationDeadLetterView struct {
	notificationView
	UserID    string     `json:"user_id"` // the recipient
	EventID   string     `json:"event_id"`
	Topic     string     `json:"topic"`
	Provider  string     `json:"provider"` // the provider that refused it; "" when none was tried
	LastError string     `json:"last_error"`
	FailedAt  *time.Time `json:"failed_at"` // when it became a dead letter; null once queued again
}

func notificationDeadLetterOf(d notificationsrpc.DeadLetter) notificationDeadLetterView {
	v := notificationDeadLetterView{notificationView: notificationOf(d.Notification), UserID: d.UserID,
		EventID: d.EventID, Topic: d.Topic, Provider: d.Provider, LastError: d.LastError}
	if !d.FailedAt.IsZero() {
		at := d.FailedAt
		v.FailedAt = &at
	}
	return v
}

// notificationDeadLetterList is GET /v1/admin/notifications/dead-letters.
type notificationDeadLetterList struct {
	Items         []notificationDeadLetterView `json:"items"`
	NextPageToken string                       `json:"next_page_token"`
}

// listNotificationDeadLetters pages the deliveries that failed for good,
// newest first (operators). It reads one service: down is 503.
func (a *API) listNotificationDeadLetters(w http.ResponseWriter, r *http.Request) error {
	_, size, token, err := listQuery(r)
	if err != nil {
		return err
	}
	page, err := a.notifications.DeadLetters(r.Context(), notificationsrpc.PageRequest{PageSize: size, PageToken: token})
	if err != nil {
		return err
	}
	out := notificationDeadLetterList{Items: make([]notificationDeadLetterView, len(page.Items)), NextPageToken: page.NextPageToken}
	for i, d := range page.Items {
		out.Items[i] = notificationDeadLetterOf(d)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
	return nil
}

// retryNotification queues a dead letter again with fresh attempts
// (operators) and answers it, now queued: 404 notification_not_found, 409
// notification_not_dead when it is not a dead letter (or is an event with
// nothing to send), 400 for an ID of another shape.
func (a *API) retryNotification(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !notificationID.MatchString(id) {
		return apierror.New(http.StatusBadRequest, "id must be a notification ID (ntf_ and 24 lower-case hex digits), not "+strconv.Quote(quote(id)))
	}
	d, err := a.notifications.Retry(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, notificationDeadLetterOf(*d))
	return nil
}
