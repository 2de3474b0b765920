package template

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/money"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current templates")

func usd(cents int64) money.Money { return money.Money{Amount: cents, Currency: "USD"} }

// order is a paid order of two sellers: s-1 sold two lines, s-2 one.
func order() ordersrpc.OrderEvent {
	return ordersrpc.OrderEvent{
		OrderID:   "o-01JZ8Q",
		BuyerID:   "u-buyer",
		SellerIDs: []string{"s-1", "s-2"},
		Status:    ordersrpc.StatusPaid,
		Total:     usd(6450),
		Lines: []ordersrpc.Line{
			{PublicationID: "p-1", SellerID: "s-1", Title: "Blue ceramic mug", Quantity: 2, UnitPrice: usd(1250), Subtotal: usd(2500)},
			{PublicationID: "p-2", SellerID: "s-2", Title: "Linen tea towel", Quantity: 1, UnitPrice: usd(950), Subtotal: usd(950)},
			{PublicationID: "p-3", SellerID: "s-1", Title: "Teapot", Quantity: 1, UnitPrice: usd(3000), Subtotal: usd(3000)},
		},
		ShippingAddress: ordersrpc.Address{
			Name: "Ada Lovelace", Line1: "12 St James's Square", Line2: "Flat 3",
			City: "London", Region: "Greater London", PostalCode: "SW1Y 4JH", Country: "GB",
		},
		At: time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC),
	}
}

// cases are the golden messages: one per template.
var cases = []struct {
	name string
	data func() Data
}{
	{Welcome, func() Data {
		return Data{User: usersrpc.UserRegistered{UserID: "u-buyer", Email: "ada@example.com", Name: "Ada"}}
	}},
	{OrderPaidBuyer, func() Data { return Data{RecipientName: "Ada", Order: order()} }},
	{OrderPaidSeller, func() Data { return Data{RecipientName: "Mugs & Co", Order: order(), SellerID: "s-1"} }},
	{PaymentFailed, func() Data {
		o := order()
		o.Status, o.FailureReason = ordersrpc.StatusFailed, ordersrpc.ReasonPaymentDeclined
		return Data{RecipientName: "Ada", Order: o}
	}},
	{OrderShipped, func() Data {
		o := order()
		o.Status, o.SellerID = ordersrpc.StatusShipped, "s-1"
		return Data{RecipientName: "Ada", Order: o}
	}},
	{OrderCancelledBuyer, func() Data {
		o := order()
		o.Status = ordersrpc.StatusCancelled
		return Data{RecipientName: "Ada", Order: o}
	}},
	{OrderCancelledSeller, func() Data {
		o := order()
		o.Status = ordersrpc.StatusCancelled
		return Data{RecipientName: "Tea Towels Ltd", Order: o, SellerID: "s-2"}
	}},
}

// golden lays a message out for a golden file.
func golden(m Message) string {
	return "Subject: " + m.Subject + "\n" +
		"Push-Title: " + m.PushTitle + "\n" +
		"Push-Body: " + m.PushBody + "\n" +
		"\n===== text =====\n" + m.Text +
		"\n===== html =====\n" + m.HTML
}

func TestEveryTemplateMatchesItsGoldenFile(t *testing.T) {
	if len(cases) != len(Names()) {
		t.Fatalf("%d golden cases for %d templates", len(cases), len(Names()))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Render(c.name, c.data())
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", c.name+".golden")
			got := golden(m)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from the rendering (go test -update rewrites it):\n%s", path, got)
			}
		})
	}
}

func TestSellerMessagesShowOnlyThatSellersLinesAndTotal(t *testing.T) {
	m, err := Render(OrderPaidSeller, Data{Order: order(), SellerID: "s-1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{m.Text, m.HTML} {
		if !strings.Contains(part, "Blue ceramic mug") || !strings.Contains(part, "Teapot") ||
			strings.Contains(part, "Linen tea towel") || !strings.Contains(part, "$55.00") || strings.Contains(part, "$64.50") {
			t.Errorf("seller s-1's message shows other lines or the order total:\n%s", part)
		}
		if !strings.Contains(part, "SW1Y 4JH") {
			t.Errorf("seller's message has no shipping address:\n%s", part)
		}
	}
	if m.Subject != "New order o-01JZ8Q: 3 items to ship" || m.PushBody != "Order o-01JZ8Q: 3 items for $55.00. Ship to London, GB." {
		t.Errorf("subject %q, push %q", m.Subject, m.PushBody)
	}
	if _, err := Render(OrderCancelledSeller, Data{Order: order()}); !errors.Is(err, ErrMissingSeller) {
		t.Errorf("seller message without SellerID: %v, want ErrMissingSeller", err)
	}
}

func TestTheHTMLPartEscapesWhatUsersWroteAndTheTextPartKeepsIt(t *testing.T) {
	const evil = `<script>alert("x")</script>`
	o := order()
	o.Lines[0].Title = evil
	o.ShippingAddress.Line1 = `<img src=x onerror=alert(1)>`
	for _, name := range []string{OrderPaidBuyer, OrderPaidSeller, OrderCancelledBuyer} {
		m, err := Render(name, Data{RecipientName: `Bob <b>`, Order: o, SellerID: "s-1"})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(m.HTML, "<script>") || strings.Contains(m.HTML, "<img") || strings.Contains(m.HTML, "<b>") ||
			!strings.Contains(m.HTML, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") || !strings.Contains(m.HTML, "Bob &lt;b&gt;") {
			t.Errorf("%s: HTML not escaped:\n%s", name, m.HTML)
		}
		if !strings.Contains(m.Text, evil) || !strings.Contains(m.Text, "Hi Bob <b>,") {
			t.Errorf("%s: text part altered the title:\n%s", name, m.Text)
		}
	}
}

func TestSubjectAndPushAreSingleLinesWhateverTheDataHolds(t *testing.T) {
	m, err := Render(Welcome, Data{RecipientName: "Ada\r\nBcc: evil@example.com\n  Lovelace"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{m.Subject, m.PushTitle, m.PushBody} {
		if strings.ContainsAny(s, "\r\n") || strings.Contains(s, "  ") {
			t.Errorf("%q is not one line", s)
		}
	}
	if m.Subject != "Welcome to marketmesh, Ada Bcc: evil@example.com Lovelace" {
		t.Errorf("subject %q", m.Subject)
	}
}

// minimalEvents are events of every kind with only the fields every event
// has: no lines, names, address, reason or date.
func minimalEvents() map[string]Data {
	ev := func(status string) Data {
		return Data{Order: ordersrpc.OrderEvent{OrderID: "o-1", BuyerID: "u-1", Status: status, Total: money.Money{Currency: "EUR"}}}
	}
	return map[string]Data{
		usersrpc.TopicUserRegistered:      {User: usersrpc.UserRegistered{UserID: "u-1"}},
		ordersrpc.TopicOrderPaid:          ev(ordersrpc.StatusPaid),
		ordersrpc.TopicOrderPaymentFailed: ev(ordersrpc.StatusFailed),
		ordersrpc.TopicOrderShipped:       ev(ordersrpc.StatusShipped),
		ordersrpc.TopicOrderCancelled:     ev(ordersrpc.StatusCancelled),
		ordersrpc.TopicOrderDelivered:     ev(ordersrpc.StatusDelivered),
	}
}

func TestEveryTemplateRendersForEveryEventKindWithEmptyOptionalFields(t *testing.T) {
	for _, name := range Names() {
		for kind, data := range minimalEvents() {
			if sellerMessages[name] {
				data.SellerID = "s-1"
			}
			m, err := Render(name, data)
			if err != nil {
				t.Errorf("%s for %s: %v", name, kind, err)
				continue
			}
			for part, s := range map[string]string{"subject": m.Subject, "push title": m.PushTitle, "push body": m.PushBody, "text": m.Text, "html": m.HTML} {
				if strings.TrimSpace(s) == "" || strings.Contains(s, "<no value>") || strings.Contains(s, "%!") {
					t.Errorf("%s for %s: %s is %q", name, kind, part, s)
				}
			}
			if !strings.HasPrefix(m.HTML, "<!DOCTYPE html>") || !strings.HasSuffix(m.HTML, "</html>\n") {
				t.Errorf("%s for %s: HTML is not a whole document:\n%s", name, kind, m.HTML)
			}
			if name != Welcome && (strings.Contains(m.Text, "Hi ,") || !strings.Contains(m.Text, "Hello,")) {
				t.Errorf("%s for %s: greeting without a name:\n%s", name, kind, m.Text)
			}
		}
	}
}

func TestPaymentFailedExplainsTheReason(t *testing.T) {
	for reason, want := range map[string]string{
		ordersrpc.ReasonPaymentDeclined:    "Your payment was declined.",
		ordersrpc.ReasonServiceUnavailable: "You were not charged.",
		"card_stolen":                      "The payment could not be completed (card_stolen).",
		"":                                 "The payment could not be completed.",
	} {
		o := order()
		o.FailureReason = reason
		m, err := Render(PaymentFailed, Data{Order: o})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(m.Text, want) || !strings.Contains(m.HTML, want) || !strings.Contains(m.PushBody, want) {
			t.Errorf("reason %q: want %q in text, HTML and push:\n%s\n%s", reason, want, m.PushBody, m.Text)
		}
	}
}

func TestOrderShippedTellsWhenOnlyPartOfTheOrderShipped(t *testing.T) {
	o := order()
	o.SellerID = "s-2"
	m, err := Render(OrderShipped, Data{Order: o})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.Subject, "Part of your") || !strings.Contains(m.Text, "Linen tea towel") || strings.Contains(m.Text, "Teapot") {
		t.Errorf("one seller's shipment of two:\n%s\n%s", m.Subject, m.Text)
	}
	o.SellerIDs, o.Lines = []string{"s-2"}, o.Lines[1:2]
	if m, _ = Render(OrderShipped, Data{Order: o}); strings.HasPrefix(m.Subject, "Part of") {
		t.Errorf("the only seller's shipment: %q", m.Subject)
	}
}

func TestRenderEventDecodesThePayloadForTheRecipient(t *testing.T) {
	payload, _ := json.Marshal(order())
	m, err := RenderEvent(OrderPaidSeller, payload, usersrpc.Recipient{UserID: "s-2", Name: "Tea Towels Ltd"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.Text, "Hi Tea Towels Ltd,") || !strings.Contains(m.Text, "Linen tea towel") || strings.Contains(m.Text, "Teapot") {
		t.Errorf("seller s-2's message:\n%s", m.Text)
	}
	welcome, _ := json.Marshal(usersrpc.UserRegistered{UserID: "u-1", Email: "ada@example.com", Name: "Ada"})
	if m, err = RenderEvent(Welcome, welcome, usersrpc.Recipient{UserID: "u-1"}); err != nil || m.Subject != "Welcome to marketmesh, Ada" {
		t.Errorf("welcome: %q, %v", m.Subject, err)
	}
	if _, err := RenderEvent(OrderPaidBuyer, []byte("{"), usersrpc.Recipient{}); err == nil {
		t.Error("a malformed payload rendered")
	}
}

func TestRenderRefusesAnUnknownTemplate(t *testing.T) {
	if _, err := Render("order_lost", Data{}); !errors.Is(err, ErrUnknown) {
		t.Errorf("err = %v, want ErrUnknown", err)
	}
}

func TestFormatMoneyUsesTheCurrencysSymbolAndDecimals(t *testing.T) {
	tests := []struct {
		m    money.Money
		want string
	}{
		{money.Money{Amount: 1250, Currency: "USD"}, "$12.50"},
		{money.Money{Amount: 1250, Currency: "EUR"}, "€12.50"},
		{money.Money{Amount: 1250, Currency: "GBP"}, "£12.50"},
		{money.Money{Amount: 1250, Currency: "JPY"}, "¥1,250"},
		{money.Money{Amount: 123456789, Currency: "USD"}, "$1,234,567.89"},
		{money.Money{Amount: 5, Currency: "USD"}, "$0.05"},
		{money.Money{Amount: 0, Currency: "EUR"}, "€0.00"},
		{money.Money{Amount: -1250, Currency: "USD"}, "-$12.50"},
		{money.Money{Amount: 1250, Currency: "KWD"}, "1.250 KWD"},
		{money.Money{Amount: 7, Currency: "BHD"}, "0.007 BHD"},
		{money.Money{Amount: 1000000, Currency: "KRW"}, "₩1,000,000"},
		{money.Money{Amount: 1250, Currency: "CHF"}, "12.50 CHF"},
		{money.Money{Amount: 1250, Currency: "XYZ"}, "12.50 XYZ"},
		{money.Money{Amount: 1250}, "12.50"},
	}
	for _, tt := range tests {
		if got := FormatMoney(tt.m); got != tt.want {
			t.Errorf("FormatMoney(%v %s) = %q, want %q", tt.m.Amount, tt.m.Currency, got, tt.want)
		}
	}
}
