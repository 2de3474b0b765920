// Package template renders the notifications marketmesh sends: for each
// message an email (subject, HTML part, plain-text part) and a push (title
// and body), from the events' contract types. All the wording lives in the
// embedded files under templates/: <name>.txt.tmpl (text/template: subject,
// push title and body, plain text) and <name>.html.tmpl (html/template,
// inside layout.html.tmpl), so that the HTML part escapes what users wrote
// (product titles, names) while the other parts keep it verbatim.
package template

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"regexp"
	"strings"
	"sync"
	texttemplate "text/template"

	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/money"
)

// Names of the messages, to give Render.
const (
	Welcome              = "welcome"                // user.registered → the user
	OrderPaidBuyer       = "order_paid_buyer"       // order.paid → the buyer: the receipt
	OrderPaidSeller      = "order_paid_seller"      // order.paid → each seller: what to ship, where
	PaymentFailed        = "payment_failed"         // order.payment_failed → the buyer, with the reason
	OrderShipped         = "order_shipped"          // order.shipped → the buyer
	OrderCancelledBuyer  = "order_cancelled_buyer"  // order.cancelled → the buyer
	OrderCancelledSeller = "order_cancelled_seller" // order.cancelled → each seller: do not ship
)

// Names lists every message, in the order above.
func Names() []string {
	return []string{Welcome, OrderPaidBuyer, OrderPaidSeller, PaymentFailed, OrderShipped, OrderCancelledBuyer, OrderCancelledSeller}
}

// sellerMessages are the messages to one seller, about that seller's lines only.
var sellerMessages = map[string]bool{OrderPaidSeller: true, OrderCancelledSeller: true}

// Errors of Render.
var (
	ErrUnknown       = errors.New("unknown template")
	ErrMissingSeller = errors.New("seller message without a seller ID")
)

// Data is what a message is rendered from: the event, as its contract
// defines it, and who receives the message.
type Data struct {
	// RecipientName is the recipient's display name; "" greets without a
	// name (Welcome falls back to User.Name).
	RecipientName string
	// User is the event of Welcome.
	User usersrpc.UserRegistered
	// Order is the event of every other message.
	Order ordersrpc.OrderEvent
	// SellerID is required by the seller messages (OrderPaidSeller,
	// OrderCancelledSeller): only that seller's lines are shown, and their
	// sum stands for the total.
	SellerID string
}

// Message is a rendered message: an email and a push. Subject, PushTitle and
// PushBody are single lines; Text and HTML end with a newline.
type Message struct {
	Subject   string
	HTML      string
	Text      string
	PushTitle string
	PushBody  string
}

//go:embed templates/*.tmpl
var files embed.FS

// funcs are the functions the templates may call.
var funcs = map[string]any{
	// plural chooses the word that goes with n: {{plural .Items "item" "items"}}.
	"plural": func(n int64, one, many string) string {
		if n == 1 {
			return one
		}
		return many
	},
}

// templates are the parsed templates of one message.
type templates struct {
	text *texttemplate.Template // subject, push_title, push_body, text
	html *htmltemplate.Template // html
}

// parsed holds every message's templates, parsed on first use; the tests
// make sure they parse.
var parsed = sync.OnceValues(func() (map[string]templates, error) {
	all := map[string]templates{}
	for _, name := range Names() {
		text, err := texttemplate.New(name).Option("missingkey=error").Funcs(funcs).
			ParseFS(files, "templates/common.txt.tmpl", "templates/"+name+".txt.tmpl")
		if err != nil {
			return nil, fmt.Errorf("parse %s text: %w", name, err)
		}
		html, err := htmltemplate.New(name).Option("missingkey=error").Funcs(funcs).
			ParseFS(files, "templates/layout.html.tmpl", "templates/"+name+".html.tmpl")
		if err != nil {
			return nil, fmt.Errorf("parse %s html: %w", name, err)
		}
		for _, part := range []string{"subject", "push_title", "push_body", "text"} {
			if text.Lookup(part) == nil {
				return nil, fmt.Errorf("parse %s: no %q template", name, part)
			}
		}
		if html.Lookup("content") == nil {
			return nil, fmt.Errorf("parse %s: no %q template", name, "content")
		}
		all[name] = templates{text: text, html: html}
	}
	return all, nil
})

// Render renders the message name (one of Names) from data.
func Render(name string, data Data) (Message, error) {
	all, err := parsed()
	if err != nil {
		return Message{}, err
	}
	t, ok := all[name]
	if !ok {
		return Message{}, fmt.Errorf("%w: %q", ErrUnknown, name)
	}
	if sellerMessages[name] && data.SellerID == "" {
		return Message{}, fmt.Errorf("render %s: %w", name, ErrMissingSeller)
	}
	v := newView(name, data)
	var m Message
	parts := []struct {
		name string
		into *string
	}{
		{"subject", &m.Subject}, {"push_title", &m.PushTitle}, {"push_body", &m.PushBody}, {"text", &m.Text},
	}
	for _, p := range parts {
		var b bytes.Buffer
		if err := t.text.ExecuteTemplate(&b, p.name, v); err != nil {
			return Message{}, fmt.Errorf("render %s %s: %w", name, p.name, err)
		}
		*p.into = b.String()
	}
	m.Subject, m.PushTitle, m.PushBody = oneLine(m.Subject), oneLine(m.PushTitle), oneLine(m.PushBody)
	v.Subject = m.Subject
	var b bytes.Buffer
	if err := t.html.ExecuteTemplate(&b, "html", v); err != nil {
		return Message{}, fmt.Errorf("render %s html: %w", name, err)
	}
	m.Text, m.HTML = tidy(m.Text), tidy(b.String())
	return m, nil
}

// RenderEvent renders the message name from an event's payload as published
// (a usersrpc.UserRegistered for Welcome, an ordersrpc.OrderEvent for the
// others) for recipient r: r.Name greets, and r.UserID is the seller of a
// seller message.
func RenderEvent(name string, payload json.RawMessage, r usersrpc.Recipient) (Message, error) {
	data := Data{RecipientName: r.Name}
	into := any(&data.Order)
	if name == Welcome {
		into = &data.User
	}
	if err := json.Unmarshal(payload, into); err != nil {
		return Message{}, fmt.Errorf("render %s: decode payload: %w", name, err)
	}
	if sellerMessages[name] {
		data.SellerID = r.UserID
	}
	return Render(name, data)
}

// oneLine collapses every run of white space, newlines included, into one
// space: a header or a push title must be one line whatever a title holds.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

var blankLines = regexp.MustCompile(`\n{3,}`)

// tidy drops trailing spaces, keeps at most one blank line in a row and ends
// s with one newline, so that templates may be laid out for reading.
func tidy(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t")
	}
	s = blankLines.ReplaceAllString(strings.Join(lines, "\n"), "\n\n")
	return strings.Trim(s, "\n") + "\n"
}

// view is what the templates see: the data, with what they show prepared.
type view struct {
	Name    string // the recipient's name, "" if unknown
	Subject string // the rendered subject, for the HTML title
	User    usersrpc.UserRegistered
	Order   ordersrpc.OrderEvent
	// Lines are the lines shown: a seller's own in a seller message, the
	// shipment's in OrderShipped when the event names its seller, else all.
	Lines   []line
	Items   int64    // the quantities of Lines summed
	Total   string   // the order's total, or the sum of Lines for a seller
	Address []string // the shipping address, one line per entry
	// Destination is the city and country shipped to ("Berlin, DE"), "" if unknown.
	Destination string
	Reason      string // why the payment failed, for people
	Date        string // the event's date ("2 January 2026"), "" if unknown
	SellerID    string // the seller of a seller message
	Partially   bool   // the shipment is one of several (OrderShipped)
}

type line struct {
	Title     string
	Quantity  int64
	UnitPrice string
	Subtotal  string
}

func newView(name string, d Data) view {
	v := view{Name: d.RecipientName, User: d.User, Order: d.Order, SellerID: d.SellerID}
	if v.Name == "" && name == Welcome {
		v.Name = d.User.Name
	}
	if !d.Order.At.IsZero() {
		v.Date = d.Order.At.UTC().Format("2 January 2006")
	}

	lines := d.Order.Lines
	switch {
	case sellerMessages[name]:
		lines = linesOf(lines, d.SellerID)
	case name == OrderShipped && d.Order.SellerID != "":
		lines = linesOf(lines, d.Order.SellerID)
		v.Partially = len(d.Order.SellerIDs) > 1
	}
	sum := money.Money{Currency: d.Order.Total.Currency}
	for _, l := range lines {
		title := l.Title
		if title == "" {
			title = "Item " + l.PublicationID
		}
		v.Lines = append(v.Lines, line{
			Title: title, Quantity: l.Quantity,
			UnitPrice: FormatMoney(l.UnitPrice), Subtotal: FormatMoney(l.Subtotal),
		})
		v.Items += l.Quantity
		sum.Amount += l.Subtotal.Amount
		if sum.Currency == "" {
			sum.Currency = l.Subtotal.Currency
		}
	}
	v.Total = FormatMoney(d.Order.Total)
	if sellerMessages[name] || v.Partially {
		v.Total = FormatMoney(sum)
	}
	v.Address = addressLines(d.Order.ShippingAddress)
	v.Destination = joinNonEmpty(", ", d.Order.ShippingAddress.City, d.Order.ShippingAddress.Country)
	v.Reason = failureReason(d.Order.FailureReason)
	return v
}

// linesOf returns the lines sold by seller.
func linesOf(lines []ordersrpc.Line, seller string) []ordersrpc.Line {
	var out []ordersrpc.Line
	for _, l := range lines {
		if l.SellerID == seller {
			out = append(out, l)
		}
	}
	return out
}

// addressLines lays out a as on an envelope, leaving out empty parts.
func addressLines(a ordersrpc.Address) []string {
	locality := joinNonEmpty(" ", joinNonEmpty(", ", a.City, a.Region), a.PostalCode)
	var out []string
	for _, s := range []string{a.Name, a.Line1, a.Line2, locality, a.Country} {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// joinNonEmpty joins the parts that are not blank, trimmed, with sep.
func joinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}

// failureReasons explains each ordersrpc failure reason to a buyer.
var failureReasons = map[string]string{
	ordersrpc.ReasonPaymentDeclined:        "Your payment was declined. Please check your card details or use another card.",
	ordersrpc.ReasonPaymentError:           "The payment provider reported an error. You were not charged.",
	ordersrpc.ReasonOutOfStock:             "An item in your order went out of stock.",
	ordersrpc.ReasonPublicationUnavailable: "An item in your order is no longer available.",
	ordersrpc.ReasonMixedCurrency:          "The items in your order are priced in different currencies and cannot be paid together.",
	ordersrpc.ReasonReservationExpired:     "The items were reserved for you, but the reservation expired before the payment completed.",
	ordersrpc.ReasonServiceUnavailable:     "Our checkout was temporarily unavailable. You were not charged.",
}

func failureReason(reason string) string {
	if s, ok := failureReasons[reason]; ok {
		return s
	}
	if reason == "" {
		return "The payment could not be completed."
	}
	return "The payment could not be completed (" + reason + ")."
}
