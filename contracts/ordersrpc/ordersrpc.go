// Package ordersrpc is the orders service's contract: carts, orders (the
// checkout saga), shipments, and the payment provider's webhook.
//
// Calls act for the caller in RPC metadata (rpcmeta.WithCaller). Writes that
// move money read the caller's Idempotency-Key from metadata
// (rpcmeta.WithIdempotencyKey): the same key with the same request returns the
// first answer and does nothing twice; with another request it fails with
// CodeIdempotencyKeyReused (422); while the first is running with
// CodeRequestInProgress (409). Keys are scoped to the caller and kept 24 h.
package ordersrpc

import (
	"context"
	"time"

	"go-micro.dev/v4/client"

	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/plugins/rpcclient"
)

// Service is the registry name of the orders service.
const Service = "marketmesh.orders"

// Topics of the events the orders service publishes; every payload is an
// OrderEvent.
const (
	TopicOrderPaid          = "order.paid"
	TopicOrderPaymentFailed = "order.payment_failed"
	TopicOrderCancelled     = "order.cancelled"
	TopicOrderShipped       = "order.shipped"
	TopicOrderDelivered     = "order.delivered"
)

// Order statuses: pending → paid → shipped → delivered; or failed, cancelled.
const (
	StatusPending   = "pending"
	StatusPaid      = "paid"
	StatusShipped   = "shipped"
	StatusDelivered = "delivered"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
)

// Failure reasons of a failed order (Order.FailureReason).
const (
	ReasonOutOfStock             = "out_of_stock"
	ReasonPaymentDeclined        = "payment_declined"
	ReasonPaymentError           = "payment_error"
	ReasonPublicationUnavailable = "publication_unavailable"
	ReasonMixedCurrency          = "mixed_currency"
	ReasonReservationExpired     = "reservation_expired"
	// ReasonServiceUnavailable: a service the checkout needs was down (or the
	// orders process stopped) before payment; nothing was charged (503).
	ReasonServiceUnavailable = "service_unavailable"
)

// Shipment statuses: one shipment per seller of an order.
const (
	ShipmentPending   = "pending"
	ShipmentShipped   = "shipped"
	ShipmentDelivered = "delivered"
	ShipmentCancelled = "cancelled"
)

// Payment statuses (Payment.Status).
const (
	PaymentPending   = "pending"
	PaymentSucceeded = "succeeded"
	PaymentFailed    = "failed"
	PaymentRefunded  = "refunded"
)

// Machine-readable error codes the orders service raises (as the Id of a
// go-micro error; the api puts them in the error document's "code").
const (
	CodeIdempotencyKeyReused = "idempotency_key_reused" // 422
	CodeRequestInProgress    = "request_in_progress"    // 409
)

// Limits of an order and a cart.
const (
	MaxItems    = 100
	MaxQuantity = 1000
)

// Roles of List.
const (
	RoleBuyer  = "buyer"
	RoleSeller = "seller"
)

// Item is one line asked for: a publication and how many units.
type Item struct {
	PublicationID string `json:"publication_id"`
	Quantity      int64  `json:"quantity"`
}

// PaymentMethod is how the buyer pays: a card token from the provider.
type PaymentMethod struct {
	Method    string `json:"method"` // "card"
	CardToken string `json:"card_token"`
}

// Address is a shipping address.
type Address struct {
	Name       string `json:"name"`
	Line1      string `json:"line1"`
	Line2      string `json:"line2,omitempty"`
	City       string `json:"city"`
	Region     string `json:"region,omitempty"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"` // ISO 3166-1 alpha-2
}

// CreateRequest places an order for the caller (the buyer).
type CreateRequest struct {
	Items           []Item        `json:"items"`
	Payment         PaymentMethod `json:"payment"`
	ShippingAddress Address       `json:"shipping_address"`
}

// CheckoutRequest turns the caller's cart into an order: CreateRequest
// without items. The cart is emptied of the bought lines when the order is
// paid.
type CheckoutRequest struct {
	Payment         PaymentMethod `json:"payment"`
	ShippingAddress Address       `json:"shipping_address"`
}

// Line is one line of an order, with the snapshot taken when its stock was
// reserved: what the buyer pays, whatever the publication says later.
type Line struct {
	PublicationID string      `json:"publication_id"`
	ProductID     string      `json:"product_id,omitempty"`
	SellerID      string      `json:"seller_id,omitempty"`
	Title         string      `json:"title,omitempty"`
	Quantity      int64       `json:"quantity"`
	UnitPrice     money.Money `json:"unit_price"`
	Subtotal      money.Money `json:"subtotal"`
}

// Payment summarizes the order's charge at the provider.
type Payment struct {
	Provider string      `json:"provider"`
	ChargeID string      `json:"charge_id,omitempty"`
	Status   string      `json:"status"`
	Amount   money.Money `json:"amount"`
	Refunded money.Money `json:"refunded"`
}

// Shipment is one seller's part of an order.
type Shipment struct {
	SellerID    string     `json:"seller_id"`
	Status      string     `json:"status"`
	ShippedAt   *time.Time `json:"shipped_at,omitempty"`
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`
}

// Order is an order as its buyer sees it; a seller sees only their own lines
// and shipment, with the buyer's shipping address.
type Order struct {
	ID              string      `json:"id"`
	BuyerID         string      `json:"buyer_id"`
	Status          string      `json:"status"`
	FailureReason   string      `json:"failure_reason,omitempty"`
	FailureMessage  string      `json:"failure_message,omitempty"`
	Lines           []Line      `json:"items"`
	Total           money.Money `json:"total"`
	Payment         *Payment    `json:"payment,omitempty"`
	Shipments       []Shipment  `json:"shipments"`
	ShippingAddress Address     `json:"shipping_address"`
	FromCart        bool        `json:"from_cart,omitempty"`
	CreatedAt       time.Time   `json:"created_at"`
	UpdatedAt       time.Time   `json:"updated_at"`
	PaidAt          *time.Time  `json:"paid_at,omitempty"`
	CancelledAt     *time.Time  `json:"cancelled_at,omitempty"`
}

// Empty carries nothing.
type Empty struct{}

// IDRequest names an order.
type IDRequest struct {
	ID string `json:"id"`
}

// ListRequest pages the caller's orders, newest first: as buyer (default) or
// as seller (orders with the caller's publications, paid or later).
type ListRequest struct {
	Role      string `json:"role"`
	PageSize  int    `json:"page_size"`
	PageToken string `json:"page_token"`
}

// ListResponse is one page of orders.
type ListResponse struct {
	Items         []Order `json:"items"`
	NextPageToken string  `json:"next_page_token"`
}

// CartItem is one line of a cart.
type CartItem struct {
	PublicationID string    `json:"publication_id"`
	Quantity      int64     `json:"quantity"`
	AddedAt       time.Time `json:"added_at"`
}

// Cart is the caller's cart, lines in the order they were first added.
type Cart struct {
	Items     []CartItem `json:"items"`
	UpdatedAt time.Time  `json:"updated_at"`
}

// SetCartItemRequest adds a line or sets its quantity; 0 removes it.
type SetCartItemRequest struct {
	PublicationID string `json:"publication_id"`
	Quantity      int64  `json:"quantity"`
}

// CartItemRequest names one line of the caller's cart.
type CartItemRequest struct {
	PublicationID string `json:"publication_id"`
}

// WebhookRequest carries a payment provider's callback as received: the raw
// body and its signature header. The orders service verifies it.
type WebhookRequest struct {
	Body      []byte `json:"body"`
	Signature string `json:"signature"`
}

// WebhookResponse acknowledges a webhook; Duplicate is true when the event
// was handled before.
type WebhookResponse struct {
	EventID   string `json:"event_id"`
	Duplicate bool   `json:"duplicate"`
}

// OrderEvent is the payload of every order.* topic: everything a notifier
// needs without calling back.
type OrderEvent struct {
	OrderID         string      `json:"order_id"`
	BuyerID         string      `json:"buyer_id"`
	SellerIDs       []string    `json:"seller_ids"`
	Status          string      `json:"status"`
	FailureReason   string      `json:"failure_reason,omitempty"`
	Total           money.Money `json:"total"`
	Lines           []Line      `json:"items"`
	ShippingAddress Address     `json:"shipping_address"`
	// SellerID names the shipment of order.shipped and order.delivered.
	SellerID string    `json:"seller_id,omitempty"`
	At       time.Time `json:"at"`
}

// Client calls the orders service through the shared client stack.
type Client struct{ c client.Client }

// NewClient returns a typed client over c (from rpcclient.New).
func NewClient(c client.Client) *Client { return &Client{c: c} }

func call[Rsp any](ctx context.Context, c client.Client, endpoint string, req any, opts ...client.CallOption) (*Rsp, error) {
	return rpcclient.Call[Rsp](ctx, c, Service, "Orders."+endpoint, req, opts...)
}

var read = rpcclient.Read()

// saga is the attempt deadline of the calls that run the checkout saga (or a
// cancellation) before answering: several RPCs and a payment, each bounded
// on the orders side. Never retried: the Idempotency-Key makes a client's own
// retry safe.
var saga = rpcclient.Timeout(15 * time.Second)

// Create places an order and runs the checkout saga: reserve, charge,
// commit. The answer is the order as it stands: paid, pending (payment
// confirmed later by the provider) or failed with a FailureReason.
func (c *Client) Create(ctx context.Context, r CreateRequest) (*Order, error) {
	return call[Order](ctx, c.c, "Create", &r, saga)
}

// Checkout places an order for the caller's cart (as Create).
func (c *Client) Checkout(ctx context.Context, r CheckoutRequest) (*Order, error) {
	return call[Order](ctx, c.c, "Checkout", &r, saga)
}

// Get reads one order the caller bought or sells in (others: not found).
func (c *Client) Get(ctx context.Context, id string) (*Order, error) {
	return call[Order](ctx, c.c, "Get", &IDRequest{ID: id}, read)
}

// List pages the caller's orders.
func (c *Client) List(ctx context.Context, r ListRequest) (*ListResponse, error) {
	return call[ListResponse](ctx, c.c, "List", &r, read)
}

// Cancel cancels a paid order that has not shipped (buyer): refund, restock.
func (c *Client) Cancel(ctx context.Context, id string) (*Order, error) {
	return call[Order](ctx, c.c, "Cancel", &IDRequest{ID: id}, saga)
}

// Ship marks the caller's shipment of a paid order as shipped (seller).
func (c *Client) Ship(ctx context.Context, id string) (*Order, error) {
	return call[Order](ctx, c.c, "Ship", &IDRequest{ID: id})
}

// Deliver marks the caller's shipped shipment as delivered (seller).
func (c *Client) Deliver(ctx context.Context, id string) (*Order, error) {
	return call[Order](ctx, c.c, "Deliver", &IDRequest{ID: id})
}

// Cart reads the caller's cart.
func (c *Client) Cart(ctx context.Context) (*Cart, error) {
	return call[Cart](ctx, c.c, "Cart", &Empty{}, read)
}

// SetCartItem adds a line to the caller's cart or sets its quantity (0 removes).
func (c *Client) SetCartItem(ctx context.Context, r SetCartItemRequest) (*Cart, error) {
	return call[Cart](ctx, c.c, "SetCartItem", &r)
}

// RemoveCartItem removes a line from the caller's cart.
func (c *Client) RemoveCartItem(ctx context.Context, publicationID string) (*Cart, error) {
	return call[Cart](ctx, c.c, "RemoveCartItem", &CartItemRequest{PublicationID: publicationID})
}

// Webhook hands a payment provider's callback to the orders service.
func (c *Client) Webhook(ctx context.Context, r WebhookRequest) (*WebhookResponse, error) {
	return call[WebhookResponse](ctx, c.c, "Webhook", &r)
}
