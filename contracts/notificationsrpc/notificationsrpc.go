// Package notificationsrpc is the notifications service's contract: the
// deliveries (one per event, recipient and channel) it records while turning
// events into emails and pushes, as their recipients and operators see them.
//
// Calls act for the caller in RPC metadata (rpcmeta.WithCaller); a caller
// sees only deliveries addressed to them. DeadLetters and Retry are for
// operators: only the api may call them, after checking the admin role.
package notificationsrpc

import (
	"context"
	"time"

	"go-micro.dev/v4/client"

	"github.com/marketmesh/marketmesh/plugins/rpcclient"
)

// Service is the registry name of the notifications service.
const Service = "marketmesh.notifications"

// Channels.
const (
	ChannelEmail = "email"
	ChannelPush  = "push"
)

// Statuses of a delivery.
const (
	StatusQueued  = "queued"  // waiting for its (next) attempt
	StatusSent    = "sent"    // the provider accepted it
	StatusFailed  = "failed"  // refused for good (or dead after its attempts)
	StatusSkipped = "skipped" // the recipient turned the channel off, or has no device
)

// Templates (the message kinds).
const (
	TemplateWelcome              = "welcome"
	TemplateOrderPaidBuyer       = "order_paid_buyer"
	TemplateOrderPaidSeller      = "order_paid_seller"
	TemplatePaymentFailed        = "payment_failed"
	TemplateOrderShipped         = "order_shipped"
	TemplateOrderCancelledBuyer  = "order_cancelled_buyer"
	TemplateOrderCancelledSeller = "order_cancelled_seller"
)

// Error IDs of the service's 4xx answers.
const (
	CodeNotificationNotFound = "notification_not_found"
	CodeNotDead              = "notification_not_dead"
)

// Notification is one delivery as its recipient sees it.
type Notification struct {
	ID        string     `json:"id"`
	Channel   string     `json:"channel"`
	Template  string     `json:"template"`
	Status    string     `json:"status"`
	Attempts  int        `json:"attempts"`
	CreatedAt time.Time  `json:"created_at"`
	SentAt    *time.Time `json:"sent_at"`
	OrderID   string     `json:"order_id,omitempty"`
}

// DeadLetter is a delivery that failed for good, as an operator sees it.
type DeadLetter struct {
	Notification
	UserID    string    `json:"user_id"`
	EventID   string    `json:"event_id"`
	Topic     string    `json:"topic"`
	Provider  string    `json:"provider,omitempty"`
	LastError string    `json:"last_error"`
	FailedAt  time.Time `json:"failed_at"`
}

// PageRequest asks for a page, newest first.
type PageRequest struct {
	PageSize  int    `json:"page_size"`
	PageToken string `json:"page_token"`
}

// Page is a page of the caller's notifications, newest first.
type Page struct {
	Items         []Notification `json:"items"`
	NextPageToken string         `json:"next_page_token"`
}

// OrderRequest names an order.
type OrderRequest struct {
	OrderID string `json:"order_id"`
}

// OrderNotifications are the caller's deliveries about one order.
type OrderNotifications struct {
	Items []Notification `json:"items"`
}

// DeadLetterPage is a page of dead letters, newest first.
type DeadLetterPage struct {
	Items         []DeadLetter `json:"items"`
	NextPageToken string       `json:"next_page_token"`
}

// RetryRequest names a dead letter to queue again.
type RetryRequest struct {
	ID string `json:"id"`
}

// Client calls the notifications service through the shared client stack.
type Client struct{ c client.Client }

// NewClient returns a typed client over c (from rpcclient.New).
func NewClient(c client.Client) *Client { return &Client{c: c} }

func call[Rsp any](ctx context.Context, c client.Client, endpoint string, req any, opts ...client.CallOption) (*Rsp, error) {
	return rpcclient.Call[Rsp](ctx, c, Service, "Notifications."+endpoint, req, opts...)
}

var read = rpcclient.Read()

// List pages the caller's notifications, newest first.
func (c *Client) List(ctx context.Context, r PageRequest) (*Page, error) {
	return call[Page](ctx, c.c, "List", &r, read)
}

// ForOrder lists the caller's notifications about one order, newest first.
func (c *Client) ForOrder(ctx context.Context, orderID string) (*OrderNotifications, error) {
	return call[OrderNotifications](ctx, c.c, "ForOrder", &OrderRequest{OrderID: orderID}, read)
}

// DeadLetters pages the deliveries that failed for good (operators).
func (c *Client) DeadLetters(ctx context.Context, r PageRequest) (*DeadLetterPage, error) {
	return call[DeadLetterPage](ctx, c.c, "DeadLetters", &r, read)
}

// Retry queues a dead letter again with fresh attempts (operators).
func (c *Client) Retry(ctx context.Context, id string) (*DeadLetter, error) {
	return call[DeadLetter](ctx, c.c, "Retry", &RetryRequest{ID: id})
}
