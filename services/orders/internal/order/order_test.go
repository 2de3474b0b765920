package order

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/plugins/money"
)

var now = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func addr() ordersrpc.Address {
	return ordersrpc.Address{Name: "Ada", Line1: "1 Main St", City: "London", PostalCode: "N1", Country: "gb"}
}

func draft(items ...ordersrpc.Item) Draft {
	return Draft{Items: items, Payment: ordersrpc.PaymentMethod{Method: "card", CardToken: "tok_visa"}, Address: addr()}
}

func TestNewRefusesBadDraftsNamingTheField(t *testing.T) {
	many := make([]ordersrpc.Item, ordersrpc.MaxItems+1)
	for i := range many {
		many[i] = ordersrpc.Item{PublicationID: strings.Repeat("P", 5) + string(rune('A'+i%26)) + string(rune('A'+i/26)), Quantity: 1}
	}
	cases := []struct {
		name  string
		d     Draft
		field string
	}{
		{"no items", draft(), "items"},
		{"too many", draft(many...), "items"},
		{"zero quantity", draft(ordersrpc.Item{PublicationID: "P1", Quantity: 0}), "items[0].quantity"},
		{"negative", draft(ordersrpc.Item{PublicationID: "P1", Quantity: -1}), "items[0].quantity"},
		{"over 1000", draft(ordersrpc.Item{PublicationID: "P1", Quantity: 1001}), "items[0].quantity"},
		{"empty id", draft(ordersrpc.Item{Quantity: 1}), "items[0].publication_id"},
		{"bad id", draft(ordersrpc.Item{PublicationID: "../x", Quantity: 1}), "items[0].publication_id"},
		{"twice", draft(ordersrpc.Item{PublicationID: "P1", Quantity: 1}, ordersrpc.Item{PublicationID: "P1", Quantity: 2}), "items[1].publication_id"},
		{"no method", func() Draft {
			d := draft(ordersrpc.Item{PublicationID: "P1", Quantity: 1})
			d.Payment.Method = ""
			return d
		}(), "payment.method"},
		{"no token", func() Draft {
			d := draft(ordersrpc.Item{PublicationID: "P1", Quantity: 1})
			d.Payment.CardToken = " "
			return d
		}(), "payment.card_token"},
		{"no city", func() Draft {
			d := draft(ordersrpc.Item{PublicationID: "P1", Quantity: 1})
			d.Address.City = ""
			return d
		}(), "shipping_address.city"},
		{"bad country", func() Draft {
			d := draft(ordersrpc.Item{PublicationID: "P1", Quantity: 1})
			d.Address.Country = "GBR"
			return d
		}(), "shipping_address.country"},
	}
	for _, c := range cases {
		_, err := New("O1", "buyer", c.d, now)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: err = %v, want a validation error naming %s", c.name, err, c.field)
		}
	}
	o, err := New("O1", "buyer", draft(ordersrpc.Item{PublicationID: "P1", Quantity: 2}), now)
	if err != nil {
		t.Fatal(err)
	}
	if o.ShippingAddress.Country != "GB" || o.Lines[0].ReservationID != "O1-0" || o.Step != StepReserving || o.Status != ordersrpc.StatusPending {
		t.Fatalf("new order = %+v", o)
	}
}

func TestPrecheckRefusesOwnInactiveUnknownAndMixedCurrency(t *testing.T) {
	o, _ := New("O1", "buyer", draft(ordersrpc.Item{PublicationID: "P1", Quantity: 1}, ordersrpc.Item{PublicationID: "P2", Quantity: 1}), now)
	ok := map[string]Listing{
		"P1": {ID: "P1", SellerID: "s1", Status: "active", Currency: "USD"},
		"P2": {ID: "P2", SellerID: "s2", Status: "active", Currency: "USD"},
	}
	if err := o.Precheck(ok); err != nil {
		t.Fatalf("Precheck: %v", err)
	}
	for name, c := range map[string]struct {
		change func(map[string]Listing)
		want   error
	}{
		"unknown":  {func(m map[string]Listing) { delete(m, "P2") }, ErrNotFound},
		"own":      {func(m map[string]Listing) { l := m["P1"]; l.SellerID = "buyer"; m["P1"] = l }, ErrInvalid},
		"closed":   {func(m map[string]Listing) { l := m["P2"]; l.Status = "closed"; m["P2"] = l }, ErrConflict},
		"currency": {func(m map[string]Listing) { l := m["P2"]; l.Currency = "EUR"; m["P2"] = l }, ErrMixedCurrency},
	} {
		m := map[string]Listing{"P1": ok["P1"], "P2": ok["P2"]}
		c.change(m)
		if err := o.Precheck(m); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}

// paid walks an order through the happy path of the saga.
func paid(t *testing.T) Order {
	t.Helper()
	o, _ := New("O1", "buyer", draft(ordersrpc.Item{PublicationID: "P1", Quantity: 2}, ordersrpc.Item{PublicationID: "P2", Quantity: 1}), now)
	o.Reserved(0, Snapshot{SellerID: "s1", Title: "Phone", UnitPrice: money.Money{Amount: 1000, Currency: "USD"}}, now)
	o.Reserved(1, Snapshot{SellerID: "s2", Title: "Case", UnitPrice: money.Money{Amount: 250, Currency: "USD"}}, now)
	if r, _ := o.ReservationsDone(now); r != "" {
		t.Fatalf("ReservationsDone: %s", r)
	}
	if o.Total != (money.Money{Amount: 2250, Currency: "USD"}) || len(o.Shipments) != 2 || !o.ChargeStarted {
		t.Fatalf("after reservations: %+v", o)
	}
	o.Charged("sandbox", "ch_1", ordersrpc.PaymentSucceeded, now)
	o.Committed(0, now)
	o.Committed(1, now)
	o.Paid(now)
	return o
}

func TestTheSagaStatesAndWhoSeesWhat(t *testing.T) {
	o := paid(t)
	if o.Status != ordersrpc.StatusPaid || o.Step != StepDone || o.Payment.CardToken != "" {
		t.Fatalf("paid order = %+v", o)
	}
	// The seller sees only their line and shipment, with the address.
	v, err := o.View("s2")
	if err != nil || len(v.Lines) != 1 || v.Lines[0].PublicationID != "P2" || v.Total.Amount != 250 || len(v.Shipments) != 1 || v.ShippingAddress.City != "London" || v.Payment != nil {
		t.Fatalf("seller view = %+v, %v", v, err)
	}
	if _, err := o.View("stranger"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stranger: %v", err)
	}
	// Shipping: a stranger cannot learn of the order, the buyer is told no.
	if err := o.Ship("stranger", now); !errors.Is(err, ErrNotFound) {
		t.Errorf("stranger ships: %v", err)
	}
	if err := o.Ship("buyer", now); !errors.Is(err, ErrForbidden) {
		t.Errorf("buyer ships: %v", err)
	}
	if err := o.Ship("s1", now); err != nil || o.Status != ordersrpc.StatusPaid {
		t.Fatalf("first shipment: %v, status %s", err, o.Status)
	}
	if err := o.Cancel("buyer", now); !errors.Is(err, ErrConflict) {
		t.Errorf("cancel after a shipment: %v", err)
	}
	if err := o.Ship("s1", now); !errors.Is(err, ErrConflict) {
		t.Errorf("ship twice: %v", err)
	}
	if err := o.Deliver("s2", now); !errors.Is(err, ErrConflict) {
		t.Errorf("deliver before shipping: %v", err)
	}
	_ = o.Ship("s2", now)
	if o.Status != ordersrpc.StatusShipped {
		t.Fatalf("every shipment shipped: status %s", o.Status)
	}
	_ = o.Deliver("s1", now)
	_ = o.Deliver("s2", now)
	if o.Status != ordersrpc.StatusDelivered {
		t.Fatalf("every shipment delivered: status %s", o.Status)
	}
}

func TestCancelAndCompensation(t *testing.T) {
	o := paid(t)
	if err := o.Cancel("s1", now); !errors.Is(err, ErrForbidden) {
		t.Errorf("seller cancels: %v", err)
	}
	if err := o.Cancel("buyer", now); err != nil || o.Step != StepCancelling {
		t.Fatalf("cancel: %v, step %s", err, o.Step)
	}
	if err := o.Cancel("buyer", now); !errors.Is(err, ErrConflict) {
		t.Errorf("cancel twice: %v", err)
	}
	o.Refunded(now)
	o.Released(0, ResRestocked, now)
	o.Released(1, ResRestocked, now)
	o.Compensated(now)
	if o.Status != ordersrpc.StatusCancelled || o.Step != StepDone || o.CancelledAt == nil || o.Payment.Status != ordersrpc.PaymentRefunded ||
		o.Shipments[0].Status != ordersrpc.ShipmentCancelled {
		t.Fatalf("cancelled order = %+v", o)
	}

	f, _ := New("O2", "buyer", draft(ordersrpc.Item{PublicationID: "P1", Quantity: 1}), now)
	f.Fail(ordersrpc.ReasonOutOfStock, "sold out", now)
	f.Compensated(now)
	if f.Status != ordersrpc.StatusFailed || f.FailureReason != ordersrpc.ReasonOutOfStock || f.Step != StepDone {
		t.Fatalf("failed order = %+v", f)
	}
}

func TestMixedCurrencyAtReservationFailsTheOrder(t *testing.T) {
	o, _ := New("O1", "buyer", draft(ordersrpc.Item{PublicationID: "P1", Quantity: 1}, ordersrpc.Item{PublicationID: "P2", Quantity: 1}), now)
	o.Reserved(0, Snapshot{SellerID: "s1", UnitPrice: money.Money{Amount: 1, Currency: "USD"}}, now)
	o.Reserved(1, Snapshot{SellerID: "s1", UnitPrice: money.Money{Amount: 1, Currency: "EUR"}}, now)
	if r, _ := o.ReservationsDone(now); r != ordersrpc.ReasonMixedCurrency {
		t.Fatalf("reason = %q", r)
	}
}

func TestPaymentSettledOnlyMovesAnOrderAwaitingThatCharge(t *testing.T) {
	o, _ := New("O1", "buyer", draft(ordersrpc.Item{PublicationID: "P1", Quantity: 1}), now)
	o.Reserved(0, Snapshot{SellerID: "s1", UnitPrice: money.Money{Amount: 5, Currency: "USD"}}, now)
	o.ReservationsDone(now)
	o.Charged("sandbox", "ch_1", ordersrpc.PaymentPending, now)
	if o.Step != StepAwaitingPayment {
		t.Fatalf("step %s", o.Step)
	}
	o.PaymentSettled("ch_other", true, now)
	if o.Step != StepAwaitingPayment {
		t.Fatal("another charge's webhook moved the order")
	}
	o.PaymentSettled("ch_1", false, now)
	if o.Status != ordersrpc.StatusFailed || o.FailureReason != ordersrpc.ReasonPaymentDeclined || o.Step != StepCompensating {
		t.Fatalf("after payment.failed: %+v", o)
	}
}

func TestCart(t *testing.T) {
	var c Cart
	if err := c.Set("P1", 2, now); err != nil {
		t.Fatal(err)
	}
	_ = c.Set("P2", 1, now)
	_ = c.Set("P1", 5, now)
	if len(c.Items) != 2 || c.Items[0].Quantity != 5 {
		t.Fatalf("cart = %+v", c.Items)
	}
	if err := c.Set("P1", 1001, now); !errors.Is(err, ErrInvalid) {
		t.Errorf("1001: %v", err)
	}
	_ = c.Set("P1", 0, now)
	if len(c.Items) != 1 || c.Items[0].PublicationID != "P2" {
		t.Fatalf("after removing P1: %+v", c.Items)
	}
	for i := range ordersrpc.MaxItems - 1 {
		if err := c.Set("Q"+string(rune('A'+i%26))+string(rune('A'+i/26)), 1, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Set("ZZZ", 1, now); !errors.Is(err, ErrConflict) {
		t.Errorf("101st line: %v", err)
	}
	var empty Cart
	if _, err := empty.Draft(); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty cart checkout: %v", err)
	}
}
