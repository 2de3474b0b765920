// Package order is the orders domain: an order, its lines, its payment and
// its shipments, the checkout saga's steps as state transitions, and the
// cart. It decides; it imports no go-micro and no bbolt.
package order

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/plugins/paging"
	"github.com/marketmesh/marketmesh/plugins/validate"
)

// Sentinel errors; the handler maps them to RPC statuses in one place.
var (
	ErrInvalid   = validate.ErrInvalid
	ErrNotFound  = errors.New("not found")
	ErrForbidden = errors.New("forbidden")
	ErrConflict  = errors.New("conflict")
)

func invalid(format string, a ...any) error { return validate.Errorf(format, a...) }

// Invalid is a validation error with exactly msg (422).
func Invalid(msg string) error { return validate.Errorf("%s", msg) }

// NotFound says an order (or another thing) does not exist for the caller.
func NotFound(format string, a ...any) error {
	return validate.Kind(ErrNotFound, format, a...)
}

// Conflict says the order's state does not allow what was asked.
func Conflict(format string, a ...any) error {
	return validate.Kind(ErrConflict, format, a...)
}

// Forbidden says the caller may see the order but not do this to it.
func Forbidden(format string, a ...any) error {
	return validate.Kind(ErrForbidden, format, a...)
}

// Step is where the checkout saga (or a cancellation) stands. Each step is
// persisted before the work it names starts, so a restarted process knows
// what to do next. Done is the resting state.
type Step string

// Saga steps.
const (
	StepReserving       Step = "reserving"        // stock being reserved line by line
	StepCharging        Step = "charging"         // the charge is being made (the pivot)
	StepAwaitingPayment Step = "awaiting_payment" // charge pending at the provider
	StepCommitting      Step = "committing"       // charged: reservations being committed
	StepCompensating    Step = "compensating"     // failed: refund and release under way
	StepCancelling      Step = "cancelling"       // cancelled by the buyer: refund and restock
	StepDone            Step = "done"
)

// Reservation statuses of a line, as far as the orders service knows.
const (
	ResNone      = ""
	ResHeld      = "held"
	ResCommitted = "committed"
	ResReleased  = "released"
	ResRestocked = "restocked"
)

// Line is one line of an order with its price snapshot and the state of its
// stock reservation.
type Line struct {
	ordersrpc.Line
	ReservationID     string `json:"reservation_id"`
	ReservationStatus string `json:"reservation_status"`
}

// Payment is the order's charge at the provider.
type Payment struct {
	ordersrpc.Payment
	CardToken      string `json:"card_token,omitempty"` // kept until the order rests
	IdempotencyKey string `json:"idempotency_key"`      // the provider's, derived from the order ID
}

// Order is an order with its saga state. Its fields are exported for the
// store's JSON encoding; changes go through the methods.
type Order struct {
	ID              string               `json:"id"`
	BuyerID         string               `json:"buyer_id"`
	Status          string               `json:"status"`
	Step            Step                 `json:"step"`
	FailureReason   string               `json:"failure_reason,omitempty"`
	FailureMessage  string               `json:"failure_message,omitempty"`
	Lines           []Line               `json:"lines"`
	Total           money.Money          `json:"total"`
	Payment         Payment              `json:"payment"`
	Shipments       []ordersrpc.Shipment `json:"shipments"`
	ShippingAddress ordersrpc.Address    `json:"shipping_address"`
	FromCart        bool                 `json:"from_cart,omitempty"`
	// ChargeStarted is set (and persisted) before the provider is asked to
	// charge: from then on compensation must ask it for a refund too.
	ChargeStarted bool `json:"charge_started,omitempty"`
	// IdempotencyKey is the buyer's key of the request that made the order
	// (or of the cancellation running now), finished when the order rests.
	IdempotencyKey string     `json:"idempotency_key,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	PaidAt         *time.Time `json:"paid_at,omitempty"`
	CancelledAt    *time.Time `json:"cancelled_at,omitempty"`
}

// Draft is what a buyer asks for.
type Draft struct {
	Items    []ordersrpc.Item
	Payment  ordersrpc.PaymentMethod
	Address  ordersrpc.Address
	FromCart bool
}

// New returns a pending order in its first step, or the first thing wrong
// with the draft, naming the field.
func New(id, buyer string, d Draft, now time.Time) (Order, error) {
	if err := CheckItems(d.Items); err != nil {
		return Order{}, err
	}
	if err := checkPayment(d.Payment); err != nil {
		return Order{}, err
	}
	addr, err := CleanAddress(d.Address)
	if err != nil {
		return Order{}, err
	}
	o := Order{ID: id, BuyerID: buyer, Status: ordersrpc.StatusPending, Step: StepReserving,
		ShippingAddress: addr, FromCart: d.FromCart, CreatedAt: now, UpdatedAt: now}
	for i, it := range d.Items {
		o.Lines = append(o.Lines, Line{
			Line:          ordersrpc.Line{PublicationID: it.PublicationID, Quantity: it.Quantity},
			ReservationID: ReservationID(id, i),
		})
	}
	o.Payment = Payment{
		Payment:        ordersrpc.Payment{Status: ordersrpc.PaymentPending},
		CardToken:      d.Payment.CardToken,
		IdempotencyKey: "charge-" + id,
	}
	return o, nil
}

// ReservationID is the stock reservation of line i of an order: derived, so
// repeating a reservation after a crash holds nothing more.
func ReservationID(orderID string, i int) string { return fmt.Sprintf("%s-%d", orderID, i) }

// RefundKey is the provider idempotency key of the order's refund.
func (o *Order) RefundKey() string { return "refund-" + o.ID }

// CheckItems validates the lines asked for: 1..MaxItems lines, each a valid
// publication ID once, quantity 1..MaxQuantity.
func CheckItems(items []ordersrpc.Item) error {
	switch {
	case len(items) == 0:
		return invalid("items: at least one item is required")
	case len(items) > ordersrpc.MaxItems:
		return invalid("items: at most %d items per order, got %d", ordersrpc.MaxItems, len(items))
	}
	seen := map[string]bool{}
	for i, it := range items {
		if err := CheckPublicationID(fmt.Sprintf("items[%d].publication_id", i), it.PublicationID); err != nil {
			return err
		}
		if err := CheckQuantity(fmt.Sprintf("items[%d].quantity", i), it.Quantity, false); err != nil {
			return err
		}
		if seen[it.PublicationID] {
			return invalid("items[%d].publication_id: %s appears twice; set its quantity once", i, it.PublicationID)
		}
		seen[it.PublicationID] = true
	}
	return nil
}

// CheckPublicationID validates a publication ID as a client sends it.
func CheckPublicationID(field, id string) error {
	if id == "" {
		return invalid("%s is required", field)
	}
	if len(id) > 64 || strings.IndexFunc(id, func(r rune) bool {
		return !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_'))
	}) >= 0 {
		return invalid("%s is not a valid publication ID", field)
	}
	return nil
}

// CheckQuantity validates a quantity: 1..MaxQuantity, or 0 too when zeroOK.
func CheckQuantity(field string, q int64, zeroOK bool) error {
	min := int64(1)
	if zeroOK {
		min = 0
	}
	if q < min || q > ordersrpc.MaxQuantity {
		return invalid("%s must be from %d to %d, got %d", field, min, ordersrpc.MaxQuantity, q)
	}
	return nil
}

// CheckOrderID validates an order ID as a client sends it.
func CheckOrderID(id string) error {
	if id == "" || len(id) > 64 || strings.IndexFunc(id, func(r rune) bool {
		return !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)))
	}) >= 0 {
		return NotFound("order %q not found", clip(id))
	}
	return nil
}

func checkPayment(p ordersrpc.PaymentMethod) error {
	switch {
	case p.Method == "":
		return invalid("payment.method is required")
	case p.Method != "card":
		return invalid("payment.method must be \"card\", got %q", clip(p.Method))
	case strings.TrimSpace(p.CardToken) == "":
		return invalid("payment.card_token is required")
	case len(p.CardToken) > 128:
		return invalid("payment.card_token is longer than 128 characters")
	}
	return nil
}

// CleanAddress trims and validates a shipping address.
func CleanAddress(a ordersrpc.Address) (ordersrpc.Address, error) {
	fields := []struct {
		name     string
		v        *string
		max      int
		required bool
	}{
		{"shipping_address.name", &a.Name, 200, true},
		{"shipping_address.line1", &a.Line1, 200, true},
		{"shipping_address.line2", &a.Line2, 200, false},
		{"shipping_address.city", &a.City, 100, true},
		{"shipping_address.region", &a.Region, 100, false},
		{"shipping_address.postal_code", &a.PostalCode, 20, true},
		{"shipping_address.country", &a.Country, 2, true},
	}
	for _, f := range fields {
		*f.v = strings.TrimSpace(*f.v)
		switch {
		case *f.v == "" && f.required:
			return a, invalid("%s is required", f.name)
		case utf8.RuneCountInString(*f.v) > f.max:
			return a, invalid("%s is longer than %d characters", f.name, f.max)
		case strings.IndexFunc(*f.v, unicode.IsControl) >= 0:
			return a, invalid("%s contains control characters", f.name)
		}
	}
	a.Country = strings.ToUpper(a.Country)
	if len(a.Country) != 2 || a.Country[0] < 'A' || a.Country[0] > 'Z' || a.Country[1] < 'A' || a.Country[1] > 'Z' {
		return a, invalid("shipping_address.country must be an ISO 3166-1 alpha-2 code such as \"US\"")
	}
	return a, nil
}

func clip(s string) string { return validate.Shorten(s, 67) }

// Listing is what the orders service knows of a publication before it
// reserves: enough to refuse an order that cannot go through.
type Listing struct {
	ID       string
	SellerID string
	Status   string
	Currency string
}

// Precheck refuses, before anything is reserved, an order for unknown or
// inactive publications, the buyer's own, or in several currencies.
func (o *Order) Precheck(listings map[string]Listing) error {
	currency := ""
	for i, l := range o.Lines {
		p, ok := listings[l.PublicationID]
		if !ok {
			return NotFound("items[%d].publication_id: publication %s not found", i, l.PublicationID)
		}
		if p.SellerID == o.BuyerID {
			return invalid("items[%d].publication_id: publication %s is your own; you cannot buy it", i, l.PublicationID)
		}
		if p.Status != "active" {
			return Conflict("items[%d].publication_id: publication %s is %s, not on sale", i, l.PublicationID, p.Status)
		}
		if currency != "" && p.Currency != currency {
			return validate.Kind(ErrMixedCurrency, "items: one currency per order: %s is in %s, earlier items in %s", l.PublicationID, p.Currency, currency)
		}
		currency = p.Currency
	}
	return nil
}

// ErrMixedCurrency is an order whose items are priced in several currencies (422).
var ErrMixedCurrency = errors.New(ordersrpc.ReasonMixedCurrency)

// Snapshot is a reservation's answer: the price and seller of a line.
type Snapshot struct {
	ProductID, SellerID, Title string
	UnitPrice                  money.Money
}

// Reserved records line i's reservation and its price snapshot.
func (o *Order) Reserved(i int, s Snapshot, now time.Time) {
	l := &o.Lines[i]
	l.ReservationStatus = ResHeld
	l.ProductID, l.SellerID, l.Title, l.UnitPrice = s.ProductID, s.SellerID, s.Title, s.UnitPrice
	l.Subtotal = money.Money{Amount: s.UnitPrice.Amount * l.Quantity, Currency: s.UnitPrice.Currency}
	o.UpdatedAt = now
}

// ReservationsDone moves a fully reserved order to charging: totals are
// summed, one currency checked, and one shipment made per seller. It
// returns the failure reason when the order cannot be charged.
func (o *Order) ReservationsDone(now time.Time) (reason string, msg string) {
	var total money.Money
	for i, l := range o.Lines {
		if i == 0 {
			total.Currency = l.UnitPrice.Currency
		} else if l.UnitPrice.Currency != total.Currency {
			return ordersrpc.ReasonMixedCurrency, fmt.Sprintf("items: one currency per order: %s is now priced in %s, earlier items in %s",
				l.PublicationID, l.UnitPrice.Currency, total.Currency)
		}
		total.Amount += l.Subtotal.Amount
	}
	o.Total = total
	o.Payment.Amount = total
	o.Payment.Refunded = money.Money{Currency: total.Currency}
	o.Shipments = nil
	for _, s := range o.SellerIDs() {
		o.Shipments = append(o.Shipments, ordersrpc.Shipment{SellerID: s, Status: ordersrpc.ShipmentPending})
	}
	o.Step, o.ChargeStarted, o.UpdatedAt = StepCharging, true, now
	return "", ""
}

// Charged records the provider's answer to the charge. A succeeded charge
// moves the order to committing; a pending one waits for the provider.
func (o *Order) Charged(provider, chargeID, status string, now time.Time) {
	o.Payment.Provider, o.Payment.ChargeID, o.Payment.Status = provider, chargeID, status
	if status == ordersrpc.PaymentSucceeded {
		o.Step = StepCommitting
	} else {
		o.Step = StepAwaitingPayment
	}
	o.UpdatedAt = now
}

// PaymentSettled applies the provider's word on a pending charge: a
// succeeded charge moves the order on to committing, a failed one turns it
// back. Anything else (another charge, an order that moved on) is ignored.
func (o *Order) PaymentSettled(chargeID string, succeeded bool, now time.Time) {
	if o.Step != StepAwaitingPayment || o.Payment.ChargeID != chargeID {
		return
	}
	if succeeded {
		o.Payment.Status, o.Step, o.UpdatedAt = ordersrpc.PaymentSucceeded, StepCommitting, now
		return
	}
	o.PaymentFailed(now)
	o.Fail(ordersrpc.ReasonPaymentDeclined, "the payment was declined", now)
}

// Committed records that line i's stock is sold.
func (o *Order) Committed(i int, now time.Time) {
	o.Lines[i].ReservationStatus = ResCommitted
	o.UpdatedAt = now
}

// Paid ends the saga: every reservation committed, the charge succeeded.
func (o *Order) Paid(now time.Time) {
	o.Status, o.Step, o.UpdatedAt = ordersrpc.StatusPaid, StepDone, now
	o.PaidAt = &now
	o.Payment.CardToken = ""
}

// Fail starts compensation: the order is failed with reason from now on,
// and whatever was done is undone by the saga (refund, release).
func (o *Order) Fail(reason, msg string, now time.Time) {
	o.Status, o.Step = ordersrpc.StatusFailed, StepCompensating
	o.FailureReason, o.FailureMessage, o.UpdatedAt = reason, msg, now
}

// Refunded records a refund of the whole charge.
func (o *Order) Refunded(now time.Time) {
	o.Payment.Status = ordersrpc.PaymentRefunded
	o.Payment.Refunded = o.Payment.Amount
	o.UpdatedAt = now
}

// PaymentFailed records a charge the provider declined or failed.
func (o *Order) PaymentFailed(now time.Time) {
	o.Payment.Status = ordersrpc.PaymentFailed
	o.UpdatedAt = now
}

// Released records that line i's stock is back on sale (released or restocked).
func (o *Order) Released(i int, status string, now time.Time) {
	o.Lines[i].ReservationStatus = status
	o.UpdatedAt = now
}

// Compensated ends a failed or cancelled order's saga.
func (o *Order) Compensated(now time.Time) {
	if o.Step == StepCancelling {
		o.Status = ordersrpc.StatusCancelled
		for i := range o.Shipments {
			o.Shipments[i].Status = ordersrpc.ShipmentCancelled
		}
		o.CancelledAt = &now
	}
	o.Step, o.UpdatedAt = StepDone, now
	o.Payment.CardToken = ""
}

// Cancel starts a cancellation by the buyer: allowed while paid and nothing
// has shipped.
func (o *Order) Cancel(caller string, now time.Time) error {
	if err := o.CheckBuyer(caller); err != nil {
		return err
	}
	switch {
	case o.Step == StepCancelling:
		return Conflict("order %s is being cancelled", o.ID)
	case o.Status == ordersrpc.StatusCancelled:
		return Conflict("order %s is already cancelled", o.ID)
	case o.Status == ordersrpc.StatusShipped || o.Status == ordersrpc.StatusDelivered || o.anyShipped():
		return Conflict("order %s has shipped; it can no longer be cancelled", o.ID)
	case o.Status != ordersrpc.StatusPaid:
		return Conflict("order %s is %s; only a paid order can be cancelled", o.ID, o.Status)
	}
	o.Step, o.UpdatedAt = StepCancelling, now
	return nil
}

func (o *Order) anyShipped() bool {
	return slices.ContainsFunc(o.Shipments, func(s ordersrpc.Shipment) bool { return s.Status != ordersrpc.ShipmentPending })
}

// Ship marks the seller's shipment shipped; the order is shipped when every
// shipment is.
func (o *Order) Ship(seller string, now time.Time) error {
	s, err := o.shipment(seller)
	if err != nil {
		return err
	}
	switch {
	case o.Status != ordersrpc.StatusPaid && o.Status != ordersrpc.StatusShipped || o.Step != StepDone:
		return Conflict("order %s is %s; only a paid order can be shipped", o.ID, o.Status)
	case s.Status != ordersrpc.ShipmentPending:
		return Conflict("your shipment of order %s is already %s", o.ID, s.Status)
	}
	s.Status, s.ShippedAt = ordersrpc.ShipmentShipped, &now
	if !slices.ContainsFunc(o.Shipments, func(s ordersrpc.Shipment) bool { return s.Status == ordersrpc.ShipmentPending }) {
		o.Status = ordersrpc.StatusShipped
	}
	o.UpdatedAt = now
	return nil
}

// Deliver marks the seller's shipped shipment delivered; the order is
// delivered when every shipment is.
func (o *Order) Deliver(seller string, now time.Time) error {
	s, err := o.shipment(seller)
	if err != nil {
		return err
	}
	if s.Status != ordersrpc.ShipmentShipped {
		return Conflict("your shipment of order %s is %s; only a shipped shipment can be delivered", o.ID, s.Status)
	}
	s.Status, s.DeliveredAt = ordersrpc.ShipmentDelivered, &now
	if !slices.ContainsFunc(o.Shipments, func(s ordersrpc.Shipment) bool { return s.Status != ordersrpc.ShipmentDelivered }) {
		o.Status = ordersrpc.StatusDelivered
	}
	o.UpdatedAt = now
	return nil
}

func (o *Order) shipment(seller string) (*ordersrpc.Shipment, error) {
	for i := range o.Shipments {
		if o.Shipments[i].SellerID == seller {
			return &o.Shipments[i], nil
		}
	}
	if seller == o.BuyerID {
		return nil, Forbidden("only the seller of the items may ship or deliver order %s", o.ID)
	}
	return nil, NotFound("order %s not found", o.ID)
}

// CheckBuyer refuses anyone but the buyer: a seller of the order may see it
// (403), anyone else must not learn it exists (404).
func (o *Order) CheckBuyer(caller string) error {
	if caller == o.BuyerID {
		return nil
	}
	if slices.Contains(o.SellerIDs(), caller) {
		return Forbidden("only the buyer may cancel order %s", o.ID)
	}
	return NotFound("order %s not found", o.ID)
}

// SellerIDs lists the order's sellers, in line order, once each.
func (o *Order) SellerIDs() []string {
	var out []string
	for _, l := range o.Lines {
		if l.SellerID != "" && !slices.Contains(out, l.SellerID) {
			out = append(out, l.SellerID)
		}
	}
	return out
}

// Retryable reports whether the order failed for a passing reason with
// nothing charged (a service down, the provider failing): its
// Idempotency-Key is released, so a retry with the same key tries again
// rather than replaying the failure.
func (o *Order) Retryable() bool {
	return o.Status == ordersrpc.StatusFailed &&
		(o.FailureReason == ordersrpc.ReasonServiceUnavailable || o.FailureReason == ordersrpc.ReasonPaymentError)
}

// View returns the order as caller may see it: all of it for the buyer, the
// seller's own lines and shipment for a seller (with the shipping address),
// or ErrNotFound.
func (o *Order) View(caller string) (ordersrpc.Order, error) {
	if caller == o.BuyerID {
		return o.RPC(""), nil
	}
	if slices.Contains(o.SellerIDs(), caller) && o.PaidAt != nil {
		return o.RPC(caller), nil
	}
	return ordersrpc.Order{}, NotFound("order %s not found", o.ID)
}

// RPC converts to the contract type; with seller set, only that seller's
// lines, shipment and subtotal.
func (o *Order) RPC(seller string) ordersrpc.Order {
	out := ordersrpc.Order{
		ID: o.ID, BuyerID: o.BuyerID, Status: o.Status, FailureReason: o.FailureReason, FailureMessage: o.FailureMessage,
		Total: o.Total, ShippingAddress: o.ShippingAddress, FromCart: o.FromCart,
		CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt, PaidAt: o.PaidAt, CancelledAt: o.CancelledAt,
		Lines: []ordersrpc.Line{}, Shipments: []ordersrpc.Shipment{},
	}
	total := money.Money{Currency: o.Total.Currency}
	for _, l := range o.Lines {
		if seller == "" || l.SellerID == seller {
			out.Lines = append(out.Lines, l.Line)
			total.Amount += l.Subtotal.Amount
		}
	}
	for _, s := range o.Shipments {
		if seller == "" || s.SellerID == seller {
			out.Shipments = append(out.Shipments, s)
		}
	}
	if seller != "" {
		out.Total = total
		return out
	}
	if o.Payment.Provider != "" || o.Payment.Status != ordersrpc.PaymentPending || o.Step != StepReserving {
		p := o.Payment.Payment
		out.Payment = &p
	}
	return out
}

// Event returns the payload of an order.* event about o (sellerID names the
// shipment of order.shipped and order.delivered).
func (o *Order) Event(sellerID string, now time.Time) ordersrpc.OrderEvent {
	lines := make([]ordersrpc.Line, 0, len(o.Lines))
	for _, l := range o.Lines {
		lines = append(lines, l.Line)
	}
	return ordersrpc.OrderEvent{
		OrderID: o.ID, BuyerID: o.BuyerID, SellerIDs: o.SellerIDs(), Status: o.Status, FailureReason: o.FailureReason,
		Total: o.Total, Lines: lines, ShippingAddress: o.ShippingAddress, SellerID: sellerID, At: now,
	}
}

// PageSize applies the list convention (default 20, at most 100).
func PageSize(n int) int { return paging.Size(n) }

// CheckRole validates List's role: buyer (default) or seller.
func CheckRole(role string) (string, error) {
	switch role {
	case "", ordersrpc.RoleBuyer:
		return ordersrpc.RoleBuyer, nil
	case ordersrpc.RoleSeller:
		return role, nil
	}
	return "", invalid("role must be buyer or seller, got %q", clip(role))
}
