package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/marketmesh/marketmesh/api/internal/fanout"
	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/apierror"
	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
)

// The buying routes: the cart, orders and the payment provider's webhook,
// all answered by the orders service. The api checks the shape of requests
// and leaves their meaning (quantities, addresses, stock) to the service.

// The orders service's machine codes keep their names in error documents.
func init() {
	apierror.RegisterCode(ordersrpc.CodeIdempotencyKeyReused, ordersrpc.CodeRequestInProgress)
}

// Idempotency-Key: writes that move money may carry one; the orders service
// stores and replays their answers.
const (
	idempotencyHeader = "Idempotency-Key"
	maxIdempotencyKey = 255
)

// idempotent returns r's context carrying its Idempotency-Key, if it sent
// one: 1 to 255 printable ASCII characters, else 400.
func idempotent(r *http.Request) (context.Context, error) {
	keys := r.Header.Values(idempotencyHeader)
	if len(keys) == 0 {
		return r.Context(), nil
	}
	if len(keys) > 1 || !validIdempotencyKey(keys[0]) {
		return nil, apierror.New(http.StatusBadRequest, "header Idempotency-Key must be sent once, as 1 to 255 printable ASCII characters")
	}
	return rpcmeta.WithIdempotencyKey(r.Context(), keys[0]), nil
}

func validIdempotencyKey(k string) bool {
	if k == "" || len(k) > maxIdempotencyKey {
		return false
	}
	for i := range len(k) {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// failureStatus is the HTTP status of a failed order by its failure reason;
// other reasons are 409.
var failureStatus = map[string]int{
	ordersrpc.ReasonPaymentDeclined:        http.StatusPaymentRequired,
	ordersrpc.ReasonOutOfStock:             http.StatusConflict,
	ordersrpc.ReasonPublicationUnavailable: http.StatusConflict,
	ordersrpc.ReasonReservationExpired:     http.StatusConflict,
	ordersrpc.ReasonMixedCurrency:          http.StatusUnprocessableEntity,
	ordersrpc.ReasonPaymentError:           http.StatusBadGateway,
	ordersrpc.ReasonServiceUnavailable:     http.StatusServiceUnavailable,
}

// writePlaced answers a placed order: 201 when paid, 202 while the payment
// is pending, and an error document naming the order when it failed.
func writePlaced(w http.ResponseWriter, o *ordersrpc.Order) error {
	normalize(o)
	switch o.Status {
	case ordersrpc.StatusFailed:
		return orderFailure(o)
	case ordersrpc.StatusPending:
		w.Header().Set("Location", "/v1/orders/"+o.ID)
		writeJSON(w, http.StatusAccepted, o)
	default:
		w.Header().Set("Location", "/v1/orders/"+o.ID)
		writeJSON(w, http.StatusCreated, o)
	}
	return nil
}

// orderFailure is the error document of a failed order: its reason as the
// code (a reason the api does not know is a plain 409 "conflict"), its
// message and its ID.
func orderFailure(o *ordersrpc.Order) error {
	e := &apierror.Error{Status: http.StatusConflict, Message: o.FailureMessage, OrderID: o.ID}
	if status, ok := failureStatus[o.FailureReason]; ok {
		e.Status, e.Code = status, o.FailureReason
	}
	if e.Message == "" {
		e.Message = "order " + o.ID + " failed"
		if o.FailureReason != "" {
			e.Message += ": " + o.FailureReason
		}
	}
	return e
}

func (a *API) createOrder(w http.ResponseWriter, r *http.Request) error {
	return place(a, w, r, a.orders.Create)
}

func (a *API) checkout(w http.ResponseWriter, r *http.Request) error {
	return place(a, w, r, a.orders.Checkout)
}

// place decodes the order request strictly and places it with call under
// the request's Idempotency-Key; the orders service checks its meaning.
func place[Req any](a *API, w http.ResponseWriter, r *http.Request, call func(context.Context, Req) (*ordersrpc.Order, error)) error {
	ctx, err := idempotent(r)
	if err != nil {
		return err
	}
	var b Req
	if err := decodeJSON(w, r, a.opts.MaxBody, &b); err != nil {
		return err
	}
	o, err := call(ctx, b)
	if err != nil {
		return err
	}
	return writePlaced(w, o)
}

var orderRoles = []string{ordersrpc.RoleBuyer, ordersrpc.RoleSeller}

func (a *API) listOrders(w http.ResponseWriter, r *http.Request) error {
	q, size, token, err := listQuery(r)
	if err != nil {
		return err
	}
	role, err := oneOf(q, "role", orderRoles)
	if err != nil {
		return err
	}
	page, err := a.orders.List(r.Context(), ordersrpc.ListRequest{Role: role, PageSize: size, PageToken: token})
	if err != nil {
		return err
	}
	page.Items = nonNil(page.Items)
	for i := range page.Items {
		normalize(&page.Items[i])
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// orderLine is a line of an order with its publication's first image.
type orderLine struct {
	ordersrpc.Line
	Image *imageView `json:"image,omitempty"`
}

// orderPage is GET /v1/orders/{id}: the order, its lines with images, and
// the caller's notifications about it.
type orderPage struct {
	ordersrpc.Order
	Items         []orderLine        `json:"items"` // the order's lines, shadowing Order.Lines
	Notifications []notificationView `json:"notifications"`
	Partial       bool               `json:"partial"`
	Unavailable   []string           `json:"unavailable"`
}

// getOrder reads the order (the core part) and the caller's notifications
// about it (optional) in parallel; the lines' images need the order, so
// they follow it. An order the caller may not see is its error alone: the
// notifications read alongside are dropped.
func (a *API) getOrder(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var o *ordersrpc.Order
	var notes []notificationView
	parts := fanout.New(r.Context())
	parts.Core("order", func(ctx context.Context) (err error) {
		o, err = a.orders.Get(ctx, id)
		return err
	})
	a.orderNotificationsPart(parts, id, &notes)
	if err := parts.Wait(); err != nil {
		return err
	}
	var imgs map[string]imagesrpc.Image
	more := fanout.New(r.Context())
	a.firstImagesPart(more, uniqueIDs(o.Lines, func(l ordersrpc.Line) string { return l.PublicationID }), &imgs)
	_ = more.Wait() // optional parts only
	normalize(o)
	page := orderPage{Order: *o, Items: make([]orderLine, len(o.Lines)), Notifications: nonNil(notes)}
	for i, l := range o.Lines {
		page.Items[i] = orderLine{Line: l, Image: imageOf(imgs, l.PublicationID)}
	}
	_, first := parts.Missing()
	_, second := more.Missing()
	page.Unavailable = append(first, second...)
	slices.Sort(page.Unavailable)
	page.Partial = len(page.Unavailable) > 0
	page.Unavailable = nonNil(page.Unavailable)
	writeJSON(w, http.StatusOK, page)
	return nil
}

// normalize makes an order's empty lists encode as [] rather than null.
func normalize(o *ordersrpc.Order) {
	o.Lines, o.Shipments = nonNil(o.Lines), nonNil(o.Shipments)
}

func (a *API) cancelOrder(w http.ResponseWriter, r *http.Request) error {
	return a.orderStep(w, r, a.orders.Cancel)
}

func (a *API) shipOrder(w http.ResponseWriter, r *http.Request) error {
	return a.orderStep(w, r, a.orders.Ship)
}

func (a *API) deliverOrder(w http.ResponseWriter, r *http.Request) error {
	return a.orderStep(w, r, a.orders.Deliver)
}

// orderStep moves the order in the path on with step (cancel, ship or
// deliver) under the request's Idempotency-Key, and answers the order.
func (a *API) orderStep(w http.ResponseWriter, r *http.Request, step func(context.Context, string) (*ordersrpc.Order, error)) error {
	ctx, err := idempotent(r)
	if err != nil {
		return err
	}
	o, err := step(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	normalize(o)
	writeJSON(w, http.StatusOK, o)
	return nil
}

// cartLine is one line of the cart view. Without the publications part it
// carries only the line's own fields; with it, whether the line can be
// bought now (and why not), and the publication's current title, price,
// seller, status and stock when the publication still exists.
type cartLine struct {
	PublicationID     string       `json:"publication_id"`
	Quantity          int64        `json:"quantity"`
	AddedAt           time.Time    `json:"added_at"`
	Available         *bool        `json:"available,omitempty"`
	Reason            string       `json:"reason,omitempty"`
	Title             string       `json:"title,omitempty"`
	Price             *money.Money `json:"price,omitempty"`
	SellerID          string       `json:"seller_id,omitempty"`
	Status            string       `json:"status,omitempty"`
	QuantityAvailable *int64       `json:"quantity_available,omitempty"`
	Image             *imageView   `json:"image,omitempty"`
}

// Why a cart line cannot be bought now, besides a publication's status
// ("paused", "closed").
const (
	reasonGone              = "gone"
	reasonInsufficientStock = "insufficient_stock"
)

// cartView is the cart as GET /v1/cart and the cart writes answer it.
type cartView struct {
	Items       []cartLine    `json:"items"`
	Subtotals   []money.Money `json:"subtotals"` // per currency, over available lines
	Partial     bool          `json:"partial"`
	Unavailable []string      `json:"unavailable"`
}

func (a *API) getCart(w http.ResponseWriter, r *http.Request) error {
	c, err := a.orders.Cart(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.cartView(r.Context(), c))
	return nil
}

type cartItemBody struct {
	PublicationID string `json:"publication_id"`
	Quantity      *int64 `json:"quantity"` // required: 0 removes the line
}

func (a *API) setCartItem(w http.ResponseWriter, r *http.Request) error {
	var b cartItemBody
	if err := decodeJSON(w, r, a.opts.MaxBody, &b); err != nil {
		return err
	}
	if err := required([2]string{"publication_id", b.PublicationID}); err != nil {
		return err
	}
	if b.Quantity == nil {
		return apierror.New(http.StatusUnprocessableEntity, "quantity is required (0 removes the line)")
	}
	c, err := a.orders.SetCartItem(r.Context(), ordersrpc.SetCartItemRequest{PublicationID: b.PublicationID, Quantity: *b.Quantity})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.cartView(r.Context(), c))
	return nil
}

func (a *API) removeCartItem(w http.ResponseWriter, r *http.Request) error {
	c, err := a.orders.RemoveCartItem(r.Context(), r.PathValue("publication_id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.cartView(r.Context(), c))
	return nil
}

// cartView completes the cart with its publications and their first images,
// both optional parts.
func (a *API) cartView(ctx context.Context, c *ordersrpc.Cart) cartView {
	ids := uniqueIDs(c.Items, func(it ordersrpc.CartItem) string { return it.PublicationID })
	var pubs map[string]publicationsrpc.Publication
	var imgs map[string]imagesrpc.Image
	parts := fanout.New(ctx)
	a.publicationsPart(parts, ids, &pubs)
	a.firstImagesPart(parts, ids, &imgs)
	_ = parts.Wait() // optional parts only
	out := cartView{Items: make([]cartLine, len(c.Items))}
	sums := map[string]int64{}
	for i, it := range c.Items {
		l := cartLine{PublicationID: it.PublicationID, Quantity: it.Quantity, AddedAt: it.AddedAt, Image: imageOf(imgs, it.PublicationID)}
		if pubs != nil {
			p, found := pubs[it.PublicationID]
			l.Reason = unavailableReason(p, found, it.Quantity)
			available := l.Reason == ""
			l.Available = &available
			if found {
				l.Title, l.Price, l.SellerID, l.Status, l.QuantityAvailable = p.Title, &p.Price, p.SellerID, p.Status, &p.Quantity
			}
			if available {
				sums[p.Price.Currency] += p.Price.Amount * it.Quantity
			}
		}
		out.Items[i] = l
	}
	out.Subtotals = make([]money.Money, 0, len(sums))
	for cur, amount := range sums {
		out.Subtotals = append(out.Subtotals, money.Money{Amount: amount, Currency: cur})
	}
	slices.SortFunc(out.Subtotals, func(x, y money.Money) int { return strings.Compare(x.Currency, y.Currency) })
	out.Partial, out.Unavailable = parts.Missing()
	out.Unavailable = nonNil(out.Unavailable)
	return out
}

// unavailableReason says why quantity units of p cannot be bought now, or
// "" when they can.
func unavailableReason(p publicationsrpc.Publication, found bool, quantity int64) string {
	switch {
	case !found:
		return reasonGone
	case p.Status != publicationsrpc.StatusActive:
		return p.Status
	case p.Quantity < quantity:
		return reasonInsufficientStock
	}
	return ""
}

// Payment webhooks: the provider's body is passed on byte for byte, since
// its signature covers the exact bytes.
const (
	maxWebhookBody  = 64 << 10
	signatureHeader = "X-Signature"
)

type webhookAck struct {
	Received  bool   `json:"received"`
	EventID   string `json:"event_id"`
	Duplicate bool   `json:"duplicate"`
}

func (a *API) paymentWebhook(w http.ResponseWriter, r *http.Request) error {
	if err := requireJSON(r); err != nil {
		return err
	}
	sig := strings.TrimSpace(r.Header.Get(signatureHeader))
	if sig == "" {
		return apierror.New(http.StatusUnauthorized, "missing X-Signature header")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return apierror.New(http.StatusRequestEntityTooLarge, "webhook body exceeds 65536 bytes")
		}
		return apierror.New(http.StatusBadRequest, "could not read the webhook body")
	}
	res, err := a.orders.Webhook(r.Context(), ordersrpc.WebhookRequest{Body: body, Signature: sig})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, webhookAck{Received: true, EventID: res.EventID, Duplicate: res.Duplicate})
	return nil
}
