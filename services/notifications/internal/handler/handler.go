// Package handler serves the notifications RPC contract (notificationsrpc)
// and turns subscribed events into queued deliveries.
package handler

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	merrors "go-micro.dev/v4/errors"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/notificationsrpc"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/paging"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
	"github.com/marketmesh/marketmesh/services/notifications/internal/delivery"
	"github.com/marketmesh/marketmesh/services/notifications/internal/store"
)

const id = notificationsrpc.Service

// operator is the only caller of the dead-letter endpoints: the api, after
// checking the admin role.
const operator = "marketmesh.api"

// Notifications is the RPC handler; its name makes endpoints "Notifications.*".
type Notifications struct {
	store *store.Store
	kick  func()
	now   func() time.Time
}

// New returns the handler; kick wakes the sender after a retry is queued.
func New(s *store.Store, kick func()) *Notifications {
	return &Notifications{store: s, kick: kick, now: time.Now}
}

// Subscribe registers on c the handler of every topic that notifies
// someone (delivery.Topics); kick wakes the sender once deliveries commit.
func Subscribe(c *events.Consumer, kick func()) {
	h := OnEvent(kick, time.Now)
	for _, t := range delivery.Topics {
		c.On(t, h)
	}
}

// OnEvent returns the event handler: it plans the event's deliveries and
// records them in the inbox's transaction. A payload it cannot read is
// recorded as a dead letter with the reason and acknowledged: it would fail
// the same way every time, and must not hold up the events behind it.
func OnEvent(kick func(), now func() time.Time) events.Handler {
	return func(ctx context.Context, tx *bolt.Tx, ev events.Event) error {
		ds, err := delivery.Plan(ev)
		if errors.Is(err, delivery.ErrMalformed) {
			slog.WarnContext(ctx, "notifications: malformed event kept as a dead letter", "topic", ev.Topic, "id", ev.ID, "err", err)
			ds = []delivery.Delivery{delivery.Malformed(ev, err, now().UTC())}
		} else if err != nil {
			return err
		}
		queued, err := store.Enqueue(tx, ds)
		if err != nil {
			return err
		}
		if queued {
			tx.OnCommit(kick)
		}
		return nil
	}
}

func caller(ctx context.Context) (string, error) {
	c := rpcmeta.Caller(ctx)
	if c == "" {
		return "", merrors.Unauthorized(id, "authentication required")
	}
	return c, nil
}

// List pages the caller's notifications, newest first.
func (h *Notifications) List(ctx context.Context, req *notificationsrpc.PageRequest, rsp *notificationsrpc.Page) error {
	user, err := caller(ctx)
	if err != nil {
		return err
	}
	ds, next, err := h.store.ByUser(user, paging.Size(req.PageSize), req.PageToken)
	if err != nil {
		return rpcError(err)
	}
	rsp.Items = make([]notificationsrpc.Notification, 0, len(ds))
	for _, d := range ds {
		rsp.Items = append(rsp.Items, d.View())
	}
	rsp.NextPageToken = next
	return nil
}

// ForOrder lists the caller's notifications about one order.
func (h *Notifications) ForOrder(ctx context.Context, req *notificationsrpc.OrderRequest, rsp *notificationsrpc.OrderNotifications) error {
	user, err := caller(ctx)
	if err != nil {
		return err
	}
	if req.OrderID == "" || len(req.OrderID) > 64 || strings.ContainsRune(req.OrderID, 0) {
		return merrors.BadRequest(id, "order_id: required, at most 64 bytes, no NUL")
	}
	ds, err := h.store.ByOrder(user, req.OrderID)
	if err != nil {
		return rpcError(err)
	}
	rsp.Items = make([]notificationsrpc.Notification, 0, len(ds))
	for _, d := range ds {
		rsp.Items = append(rsp.Items, d.View())
	}
	return nil
}

// DeadLetters pages the deliveries that failed for good (operators).
func (h *Notifications) DeadLetters(ctx context.Context, req *notificationsrpc.PageRequest, rsp *notificationsrpc.DeadLetterPage) error {
	if err := svcauth.Require(ctx, id, "Notifications.DeadLetters", operator); err != nil {
		return err
	}
	ds, next, err := h.store.Dead(paging.Size(req.PageSize), req.PageToken)
	if err != nil {
		return rpcError(err)
	}
	rsp.Items = make([]notificationsrpc.DeadLetter, 0, len(ds))
	for _, d := range ds {
		rsp.Items = append(rsp.Items, d.DeadLetter())
	}
	rsp.NextPageToken = next
	return nil
}

// Retry queues a dead letter again with fresh attempts (operators).
func (h *Notifications) Retry(ctx context.Context, req *notificationsrpc.RetryRequest, rsp *notificationsrpc.DeadLetter) error {
	if err := svcauth.Require(ctx, id, "Notifications.Retry", operator); err != nil {
		return err
	}
	d, err := h.store.Update(req.ID, func(d *delivery.Delivery) error {
		if d.Channel == "" { // a malformed event: nothing to send
			return errNotRetryable
		}
		return d.Requeue(h.now().UTC())
	})
	if err != nil {
		return rpcError(err)
	}
	h.kick()
	*rsp = d.DeadLetter()
	return nil
}

var errNotRetryable = errors.New("this dead letter is a malformed event: there is nothing to send")

func rpcError(err error) error {
	switch {
	case errors.Is(err, paging.ErrBadToken):
		return merrors.BadRequest(id, "%v", err)
	case errors.Is(err, store.ErrNotFound):
		return merrors.New(notificationsrpc.CodeNotificationNotFound, "notification not found", 404)
	case errors.Is(err, errNotRetryable), errors.Is(err, delivery.ErrNotDead):
		return merrors.New(notificationsrpc.CodeNotDead, err.Error(), 409)
	default:
		slog.Error("notifications: unexpected error", "err", err)
		return merrors.InternalServerError(id, "internal error")
	}
}
