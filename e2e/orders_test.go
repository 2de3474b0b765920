package e2e

import (
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/plugins/meshtest"
)

// The buying tests: cart, checkout saga, orders, payments webhook, through the
// api only, against the real mesh.

func TestOrderJourneyFromCartToDelivery(t *testing.T) {
	m := startMesh(t)
	seller1, s1Token := m.signup("seller1@example.com")
	seller2, s2Token := m.signup("seller2@example.com")
	buyer, bToken := m.signup("buyer@example.com")
	_, strangerToken := m.signup("stranger@example.com")

	pubA := m.seedPublication(s1Token, "Desk lamp, brass", 2500, "USD", 5)
	pubB := m.seedPublication(s2Token, "Lamp shade, linen", 1000, "USD", 4)

	// The cart.
	for _, line := range []struct {
		id  string
		qty int64
	}{{pubA, 2}, {pubB, 1}} {
		a := m.send("POST", "/v1/cart/items", bToken, map[string]any{"publication_id": line.id, "quantity": line.qty}, nil)
		if a.status != 200 && a.status != 201 {
			t.Fatalf("POST /v1/cart/items %s: %s", line.id, a)
		}
	}
	cart := expectAnswer(t, "GET /v1/cart", m.send("GET", "/v1/cart", bToken, nil, nil), 200)
	cl := lines(cart)
	if len(cl) != 2 || cl[0]["publication_id"] != pubA || cl[1]["publication_id"] != pubB {
		t.Fatalf("cart lines (want %s then %s): %v", pubA, pubB, cart)
	}
	for i, want := range []struct {
		title  string
		amount int64
		qty    float64
	}{{"Desk lamp, brass", 2500, 2}, {"Lamp shade, linen", 1000, 1}} {
		amt, cur := moneyOf(cl[i]["price"])
		if cl[i]["title"] != want.title || amt != want.amount || cur != "USD" || cl[i]["available"] != true || cl[i]["quantity"] != want.qty {
			t.Fatalf("cart line %d: %v", i, cl[i])
		}
	}
	subs, _ := cart["subtotals"].([]any)
	if len(subs) != 1 {
		t.Fatalf("cart subtotals: %v", cart)
	}
	if amt, cur := moneyOf(subs[0]); amt != 2*2500+1000 || cur != "USD" {
		t.Fatalf("cart subtotal %d %s, want 6000 USD: %v", amt, cur, cart)
	}
	if cart["partial"] != false {
		t.Fatalf("cart partial: %v", cart)
	}

	// Checkout.
	co := m.send("POST", "/v1/cart/checkout", bToken, map[string]any{
		"payment":          map[string]any{"method": "card", "card_token": "tok_visa"},
		"shipping_address": address(),
	}, map[string]string{"Idempotency-Key": "journey-checkout-1"})
	order := expectAnswer(t, "POST /v1/cart/checkout", co, 201)
	orderID, _ := order["id"].(string)
	if orderID == "" || order["status"] != "paid" || order["buyer_id"] != buyer {
		t.Fatalf("checkout answer: %s", co)
	}
	ol := lines(order)
	if len(ol) != 2 {
		t.Fatalf("checkout order has %d items: %s", len(ol), co)
	}
	bySeller := map[string]map[string]any{}
	for _, l := range ol {
		bySeller[fmt.Sprint(l["seller_id"])] = l
	}
	checkLine := func(l map[string]any, pub, title string, unit int64, qty float64) {
		t.Helper()
		amt, cur := moneyOf(l["unit_price"])
		if l == nil || l["publication_id"] != pub || l["title"] != title || amt != unit || cur != "USD" || l["quantity"] != qty {
			t.Fatalf("order line for %s: %v (order %s)", pub, l, co)
		}
	}
	checkLine(bySeller[seller1], pubA, "Desk lamp, brass", 2500, 2)
	checkLine(bySeller[seller2], pubB, "Lamp shade, linen", 1000, 1)
	if amt, cur := moneyOf(order["total"]); amt != 6000 || cur != "USD" {
		t.Fatalf("order total %d %s, want 6000 USD: %s", amt, cur, co)
	}

	t.Run("the cart is empty after a paid checkout", func(t *testing.T) {
		c := expectAnswer(t, "GET /v1/cart", m.send("GET", "/v1/cart", bToken, nil, nil), 200)
		if n := len(lines(c)); n != 0 {
			t.Fatalf("cart still has %d lines: %v", n, c)
		}
	})
	t.Run("the order page shows the paid order with its payment", func(t *testing.T) {
		o := expectAnswer(t, "GET order", m.send("GET", "/v1/orders/"+orderID, bToken, nil, nil), 200)
		pay, _ := o["payment"].(map[string]any)
		if o["status"] != "paid" || pay["status"] != "succeeded" || len(lines(o)) != 2 {
			t.Fatalf("order page: %v", o)
		}
		if amt, _ := moneyOf(pay["amount"]); amt != 6000 {
			t.Fatalf("payment amount %d, want 6000: %v", amt, o)
		}
	})
	t.Run("the buyer's list has it, each seller's list has it with only their lines", func(t *testing.T) {
		if findOrder(m.listOrders(t, bToken, ""), orderID) == nil {
			t.Fatalf("order %s not in the buyer's list", orderID)
		}
		for _, s := range []struct{ id, token, pub string }{{seller1, s1Token, pubA}, {seller2, s2Token, pubB}} {
			o := findOrder(m.listOrders(t, s.token, "seller"), orderID)
			if o == nil {
				t.Fatalf("order %s not in seller %s's list", orderID, s.id)
			}
			sl := lines(o)
			if len(sl) != 1 || sl[0]["publication_id"] != s.pub || sl[0]["seller_id"] != s.id {
				t.Fatalf("seller %s sees lines %v, want only their own (%s)", s.id, sl, s.pub)
			}
			if findOrder(m.listOrders(t, s.token, ""), orderID) != nil {
				t.Fatalf("the order shows in seller %s's list as buyer", s.id)
			}
		}
		if findOrder(m.listOrders(t, strangerToken, "seller"), orderID) != nil {
			t.Fatalf("the order shows in a stranger's seller list")
		}
	})
	t.Run("the publications' stock went down", func(t *testing.T) {
		if q := m.pubQuantity(t, pubA); q != 3 {
			t.Fatalf("publication A quantity %d, want 3", q)
		}
		if q := m.pubQuantity(t, pubB); q != 3 {
			t.Fatalf("publication B quantity %d, want 3", q)
		}
	})
	t.Run("a stranger cannot see or move the order", func(t *testing.T) {
		a := m.send("GET", "/v1/orders/"+orderID, strangerToken, nil, nil)
		if a.status != 404 || a.errCode() != "not_found" {
			t.Fatalf("stranger GET: %s", a)
		}
		for _, step := range []string{"cancel", "ship", "deliver"} {
			if a := m.send("POST", "/v1/orders/"+orderID+"/"+step, strangerToken, nil, nil); a.status != 404 && a.status != 403 {
				t.Fatalf("stranger %s: %s", step, a)
			}
		}
		if a := m.send("POST", "/v1/orders/"+orderID+"/ship", bToken, nil, nil); a.status != 403 && a.status != 404 && a.status != 409 {
			t.Fatalf("the buyer shipping: %s", a)
		}
	})
	t.Run("sellers ship and deliver; the buyer cannot cancel once shipped", func(t *testing.T) {
		if a := m.send("POST", "/v1/orders/"+orderID+"/deliver", s1Token, nil, nil); a.status != 409 {
			t.Errorf("deliver before ship: %s, want 409", a)
		}
		expectAnswer(t, "seller 1 ships", m.send("POST", "/v1/orders/"+orderID+"/ship", s1Token, nil, nil), 200)
		if a := m.send("POST", "/v1/orders/"+orderID+"/cancel", bToken, nil, nil); a.status != 409 {
			t.Errorf("buyer cancel after one seller shipped: %s, want 409", a)
		}
		shipped := expectAnswer(t, "seller 2 ships", m.send("POST", "/v1/orders/"+orderID+"/ship", s2Token, nil, nil), 200)
		o := expectAnswer(t, "GET order", m.send("GET", "/v1/orders/"+orderID, bToken, nil, nil), 200)
		if o["status"] != "shipped" {
			t.Fatalf("after both sellers shipped, the order is %v (ship answered %v)", o["status"], shipped)
		}
		for _, s := range o["shipments"].([]any) {
			if s.(map[string]any)["status"] != "shipped" {
				t.Fatalf("shipments: %v", o["shipments"])
			}
		}
		a := m.send("POST", "/v1/orders/"+orderID+"/cancel", bToken, nil, nil)
		if a.status != 409 {
			t.Fatalf("buyer cancel after shipping: %s, want 409", a)
		}
		expectAnswer(t, "seller 1 delivers", m.send("POST", "/v1/orders/"+orderID+"/deliver", s1Token, nil, nil), 200)
		expectAnswer(t, "seller 2 delivers", m.send("POST", "/v1/orders/"+orderID+"/deliver", s2Token, nil, nil), 200)
		o = expectAnswer(t, "GET order", m.send("GET", "/v1/orders/"+orderID, bToken, nil, nil), 200)
		pay, _ := o["payment"].(map[string]any)
		if o["status"] != "delivered" || pay["status"] != "succeeded" {
			t.Fatalf("after delivery: %v", o)
		}
		if q := m.pubQuantity(t, pubA); q != 3 {
			t.Fatalf("publication A quantity %d after delivery, want 3", q)
		}
	})
	t.Run("a paid order cancelled by the buyer is refunded and restocked", func(t *testing.T) {
		a := m.placeOrder(bToken, orderBody(pubA, 2, "tok_visa"), "journey-order-2")
		o2 := expectAnswer(t, "POST /v1/orders", a, 201)
		id2, _ := o2["id"].(string)
		if o2["status"] != "paid" || id2 == "" {
			t.Fatalf("second order: %s", a)
		}
		if q := m.pubQuantity(t, pubA); q != 1 {
			t.Fatalf("publication A quantity %d after the second order, want 1", q)
		}
		c := m.send("POST", "/v1/orders/"+id2+"/cancel", bToken, nil, nil)
		cancelled := expectAnswer(t, "buyer cancels", c, 200)
		pay, _ := cancelled["payment"].(map[string]any)
		if cancelled["status"] != "cancelled" || pay["status"] != "refunded" {
			t.Fatalf("cancel answer: %s", c)
		}
		if amt, _ := moneyOf(pay["refunded"]); amt != 5000 {
			t.Errorf("payment.refunded %d, want 5000: %s", amt, c)
		}
		got := expectAnswer(t, "GET order", m.send("GET", "/v1/orders/"+id2, bToken, nil, nil), 200)
		if p, _ := got["payment"].(map[string]any); got["status"] != "cancelled" || p["status"] != "refunded" {
			t.Fatalf("cancelled order page: %v", got)
		}
		// Restocking is part of the cancellation; allow the api's read a moment anyway.
		if q := m.pubQuantity(t, pubA); q != 3 {
			t.Errorf("publication A quantity %d right after the cancel answered, want 3", q)
			meshtest.Eventually(t, 15*time.Second, func() error {
				if q := m.pubQuantity(t, pubA); q != 3 {
					return fmt.Errorf("publication A quantity %d, want 3", q)
				}
				return nil
			})
		}
		if a := m.send("POST", "/v1/orders/"+id2+"/ship", s1Token, nil, nil); a.status != 409 {
			t.Fatalf("shipping a cancelled order: %s, want 409", a)
		}
		if a := m.send("POST", "/v1/orders/"+id2+"/cancel", bToken, nil, nil); a.status != 409 && a.status != 200 {
			t.Fatalf("cancelling twice: %s", a)
		}
		if q := m.pubQuantity(t, pubA); q != 3 {
			t.Fatalf("publication A quantity %d after a second cancel, want 3 (restocked twice?)", q)
		}
		// The seller's list shows orders paid or later.
		if o := findOrder(m.listOrders(t, s1Token, "seller"), id2); o == nil || o["status"] != "cancelled" {
			t.Fatalf("seller's view of the cancelled order: %v", o)
		}
	})
}

func TestOrderOutcomesBySandboxToken(t *testing.T) {
	m := startMesh(t)
	_, sToken := m.signup("tok-seller@example.com")
	_, bToken := m.signup("tok-buyer@example.com")
	pub := m.seedPublication(sToken, "Teapot", 1500, "EUR", 3)

	t.Run("tok_declined: 402 payment_declined, the order failed, the stock back", func(t *testing.T) {
		a := m.placeOrder(bToken, orderBody(pub, 2, "tok_declined"), "")
		if a.status != http.StatusPaymentRequired || a.errCode() != "payment_declined" || a.errOrderID() == "" {
			t.Fatalf("declined: %s", a)
		}
		errorCode(t, a.body, a.hdr)
		o := expectAnswer(t, "GET failed order", m.send("GET", "/v1/orders/"+a.errOrderID(), bToken, nil, nil), 200)
		if o["status"] != "failed" || o["failure_reason"] != "payment_declined" {
			t.Fatalf("declined order: %v", o)
		}
		if q := m.pubQuantity(t, pub); q != 3 {
			t.Fatalf("quantity %d after a declined payment, want 3", q)
		}
	})
	t.Run("more than available: 409 out_of_stock, the order failed, the stock unchanged", func(t *testing.T) {
		a := m.placeOrder(bToken, orderBody(pub, 4, "tok_visa"), "")
		if a.status != http.StatusConflict || a.errCode() != "out_of_stock" || a.errOrderID() == "" {
			t.Fatalf("out of stock: %s", a)
		}
		o := expectAnswer(t, "GET failed order", m.send("GET", "/v1/orders/"+a.errOrderID(), bToken, nil, nil), 200)
		if o["status"] != "failed" || o["failure_reason"] != "out_of_stock" {
			t.Fatalf("out-of-stock order: %v", o)
		}
		if p, _ := o["payment"].(map[string]any); p != nil && p["status"] == "succeeded" {
			t.Fatalf("an out-of-stock order was charged: %v", o)
		}
		if q := m.pubQuantity(t, pub); q != 3 {
			t.Fatalf("quantity %d after out of stock, want 3", q)
		}
	})
	t.Run("an unknown card token: 422, no order", func(t *testing.T) {
		before := len(m.listOrders(t, bToken, ""))
		a := m.placeOrder(bToken, orderBody(pub, 1, "tok_mastercard"), "")
		if a.status != http.StatusUnprocessableEntity {
			t.Fatalf("unknown token: %s", a)
		}
		errorCode(t, a.body, a.hdr)
		if after := len(m.listOrders(t, bToken, "")); after != before {
			t.Fatalf("an unknown token created an order: %d orders before, %d after", before, after)
		}
	})
	t.Run("tok_pending: 202 pending, then paid through the sandbox's signed webhook", func(t *testing.T) {
		a := m.placeOrder(bToken, orderBody(pub, 1, "tok_pending"), "pending-1")
		o := expectAnswer(t, "POST /v1/orders tok_pending", a, http.StatusAccepted)
		id, _ := o["id"].(string)
		if o["status"] != "pending" || id == "" {
			t.Fatalf("pending: %s", a)
		}
		start := time.Now()
		var got map[string]any
		meshtest.Eventually(t, 30*time.Second, func() error {
			r := m.send("GET", "/v1/orders/"+id, bToken, nil, nil)
			if r.status != 200 {
				return fmt.Errorf("GET order: %s", r)
			}
			if r.body["status"] != "paid" {
				return fmt.Errorf("order is %v: %s", r.body["status"], r)
			}
			got = r.body
			return nil
		})
		t.Logf("pending → paid after %v (PAYMENTS_CONFIRM_AFTER=500ms)", time.Since(start).Round(time.Millisecond))
		if p, _ := got["payment"].(map[string]any); p["status"] != "succeeded" {
			t.Fatalf("paid order's payment: %v", got)
		}
		if q := m.pubQuantity(t, pub); q != 2 {
			t.Fatalf("quantity %d after the pending order was paid, want 2", q)
		}
		n := countByStatus(m.listOrders(t, bToken, ""))
		if n["paid"] != 1 || n["failed"] != 2 || n["pending"] != 0 {
			t.Fatalf("buyer's orders by status: %v, want 1 paid and 2 failed", n)
		}
	})
}

func TestOrderConcurrentBuyersNeverOversell(t *testing.T) {
	m := startMesh(t)
	_, sToken := m.signup("rush-seller@example.com")
	const stock, buyers, attempts = 10, 10, 50
	pub := m.seedPublication(sToken, "Limited edition print", 4000, "USD", stock)
	tokens := make([]string, buyers)
	for i := range tokens {
		_, tokens[i] = m.signup(fmt.Sprintf("rush-buyer-%d@example.com", i))
	}

	answers := make([]answer, attempts)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range attempts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			answers[i] = m.placeOrder(tokens[i%buyers], orderBody(pub, 1, "tok_visa"), fmt.Sprintf("rush-%d", i))
		}()
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	took := time.Since(start)

	var paid, oos []string
	var other []string
	var slowest time.Duration
	for i, a := range answers {
		slowest = max(slowest, a.took)
		switch {
		case a.status == 201 && a.body["status"] == "paid":
			paid = append(paid, a.body["id"].(string))
		case a.status == 409 && a.errCode() == "out_of_stock" && a.errOrderID() != "":
			oos = append(oos, a.errOrderID())
		default:
			other = append(other, fmt.Sprintf("attempt %d (buyer %d): %s", i, i%buyers, a))
		}
	}
	t.Logf("%d concurrent orders for %d units: %d paid, %d out_of_stock, %d other in %v (slowest answer %v)",
		attempts, stock, len(paid), len(oos), len(other), took.Round(time.Millisecond), slowest.Round(time.Millisecond))
	if len(other) > 0 {
		t.Errorf("unexpected answers:\n%s", strings.Join(other, "\n"))
	}
	if len(paid) != stock || len(oos) != attempts-stock {
		t.Fatalf("%d paid and %d out_of_stock; want exactly %d paid and %d out_of_stock", len(paid), len(oos), stock, attempts-stock)
	}
	if q := m.pubQuantity(t, pub); q != 0 {
		t.Fatalf("publication quantity %d after selling out, want 0", q)
	}
	var listedPaid []string
	total := map[string]int{}
	for _, tok := range tokens {
		for _, o := range m.listOrders(t, tok, "") {
			total[o["status"].(string)]++
			if o["status"] == "paid" {
				listedPaid = append(listedPaid, o["id"].(string))
			}
		}
	}
	slices.Sort(paid)
	slices.Sort(listedPaid)
	if !slices.Equal(paid, listedPaid) {
		t.Fatalf("paid orders listed by the buyers %v differ from the 201 answers %v (all: %v)", listedPaid, paid, total)
	}
	if total["failed"] != attempts-stock || len(total) != 2 {
		t.Fatalf("buyers' orders by status: %v, want %d paid and %d failed", total, stock, attempts-stock)
	}
	if n := countByStatus(m.listOrders(t, sToken, "seller"))["paid"]; n != stock {
		t.Fatalf("the seller sees %d paid orders, want %d", n, stock)
	}
}

func TestOrderIdempotencyKey(t *testing.T) {
	m := startMesh(t)
	_, sToken := m.signup("idem-seller@example.com")
	_, bToken := m.signup("idem-buyer@example.com")
	_, b2Token := m.signup("idem-buyer2@example.com")
	pub := m.seedPublication(sToken, "Fountain pen", 8900, "GBP", 20)
	body := orderBody(pub, 1, "tok_visa")

	first := m.placeOrder(bToken, body, "key-one")
	o1 := expectAnswer(t, "first request", first, 201)
	id1, _ := o1["id"].(string)
	if id1 == "" || o1["status"] != "paid" {
		t.Fatalf("first: %s", first)
	}

	t.Run("the same key and body replays the first answer and does nothing twice", func(t *testing.T) {
		again := m.placeOrder(bToken, body, "key-one")
		if again.status != first.status || !reflect.DeepEqual(again.body, first.body) {
			t.Fatalf("replay differs:\nfirst:  %s\nreplay: %s", first, again)
		}
		if n := len(m.listOrders(t, bToken, "")); n != 1 {
			t.Fatalf("the buyer has %d orders, want 1", n)
		}
		if q := m.pubQuantity(t, pub); q != 19 {
			t.Fatalf("quantity %d, want 19 (one unit sold)", q)
		}
	})
	t.Run("the same key with another body is 422 idempotency_key_reused", func(t *testing.T) {
		a := m.placeOrder(bToken, orderBody(pub, 2, "tok_visa"), "key-one")
		if a.status != 422 || a.errCode() != "idempotency_key_reused" {
			t.Fatalf("reused key: %s", a)
		}
		errorCode(t, a.body, a.hdr)
		if n := len(m.listOrders(t, bToken, "")); n != 1 {
			t.Fatalf("the buyer has %d orders, want 1", n)
		}
		if q := m.pubQuantity(t, pub); q != 19 {
			t.Fatalf("quantity %d, want 19", q)
		}
	})
	t.Run("the key is scoped to the user", func(t *testing.T) {
		a := m.placeOrder(b2Token, body, "key-one")
		o := expectAnswer(t, "another user, same key", a, 201)
		if o["id"] == id1 || o["status"] != "paid" {
			t.Fatalf("another user with the same key got %s; first was %s", a, first)
		}
		if q := m.pubQuantity(t, pub); q != 18 {
			t.Fatalf("quantity %d, want 18", q)
		}
	})
	t.Run("concurrent requests with one key make one order", func(t *testing.T) {
		before := len(m.listOrders(t, bToken, ""))
		qBefore := m.pubQuantity(t, pub)
		const n = 8
		answers := make([]answer, n)
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				answers[i] = m.placeOrder(bToken, body, "key-concurrent")
			}()
		}
		close(gate)
		wg.Wait()
		ids := map[string]bool{}
		inProgress := 0
		for i, a := range answers {
			switch {
			case a.status == 201 && a.body["status"] == "paid":
				ids[a.body["id"].(string)] = true
			case a.status == 409 && a.errCode() == "request_in_progress":
				inProgress++
			default:
				t.Errorf("concurrent request %d: %s", i, a)
			}
		}
		t.Logf("%d concurrent requests with one key: %d answered the order, %d request_in_progress", n, n-inProgress, inProgress)
		if len(ids) != 1 {
			t.Fatalf("concurrent requests answered orders %v, want exactly one", ids)
		}
		if after := len(m.listOrders(t, bToken, "")); after != before+1 {
			t.Fatalf("%d orders before, %d after; want one more", before, after)
		}
		if q := m.pubQuantity(t, pub); q != qBefore-1 {
			t.Fatalf("quantity %d, want %d (one unit sold)", q, qBefore-1)
		}
		// Once done, the key replays.
		a := m.placeOrder(bToken, body, "key-concurrent")
		if a.status != 201 || !ids[fmt.Sprint(a.body["id"])] {
			t.Fatalf("after the concurrent requests the key answers %s, want the replay of %v", a, ids)
		}
	})
	t.Run("an invalid key is 400 and creates nothing", func(t *testing.T) {
		before := len(m.listOrders(t, bToken, ""))
		q := m.pubQuantity(t, pub)
		for name, key := range map[string]string{"300 characters": strings.Repeat("k", 300), "non-ASCII": "clé-ü"} {
			a := m.placeOrder(bToken, body, key)
			if a.status != 400 {
				t.Fatalf("%s key: %s", name, a)
			}
			errorCode(t, a.body, a.hdr)
		}
		if after := len(m.listOrders(t, bToken, "")); after != before {
			t.Fatalf("%d orders before, %d after", before, after)
		}
		if got := m.pubQuantity(t, pub); got != q {
			t.Fatalf("quantity %d, want %d", got, q)
		}
	})
	t.Run("a cancel with a key replays too", func(t *testing.T) {
		h := map[string]string{"Idempotency-Key": "cancel-1"}
		q := m.pubQuantity(t, pub)
		c1 := m.send("POST", "/v1/orders/"+id1+"/cancel", bToken, nil, h)
		expectAnswer(t, "cancel", c1, 200)
		c2 := m.send("POST", "/v1/orders/"+id1+"/cancel", bToken, nil, h)
		if c2.status != 200 || c2.body["status"] != "cancelled" {
			t.Fatalf("cancel replay: %s (first %s)", c2, c1)
		}
		if got := m.pubQuantity(t, pub); got != q+1 {
			t.Fatalf("quantity %d after cancel and its replay, want %d (restocked once)", got, q+1)
		}
	})
}

func TestWebhookSignature(t *testing.T) {
	m := startMesh(t)
	secret := m.webhookSecret(t)
	now := time.Now()
	post := func(body []byte, sig string) answer {
		h := map[string]string{}
		if sig != "" {
			h["X-Signature"] = sig
		}
		return m.send("POST", "/v1/payments/webhook", "", body, h)
	}
	ev := webhookEvent("evt_e2e_1", "ch_e2e_1", "01UNKNOWNORDER0000000000000", 1500, "USD", now)

	t.Run("unsigned is 401", func(t *testing.T) {
		a := post(ev, "")
		if a.status != 401 {
			t.Fatalf("unsigned: %s", a)
		}
		errorCode(t, a.body, a.hdr)
	})
	t.Run("a bad signature is 401", func(t *testing.T) {
		for name, sig := range map[string]string{
			"another secret": signWebhook([]byte("not the secret, not the secret!!"), ev, now),
			"another body":   signWebhook(secret, append([]byte(nil), webhookEvent("evt_e2e_1", "ch_e2e_1", "01UNKNOWNORDER0000000000000", 1, "USD", now)...), now),
			"garbage":        "nonsense",
			"no v1":          fmt.Sprintf("t=%d", now.Unix()),
		} {
			if a := post(ev, sig); a.status != 401 {
				t.Fatalf("%s: %s", name, a)
			}
		}
	})
	t.Run("a correctly signed but stale event is 401", func(t *testing.T) {
		old := now.Add(-6 * time.Minute)
		stale := webhookEvent("evt_e2e_stale", "ch_e2e_1", "01UNKNOWNORDER0000000000000", 1500, "USD", old)
		if a := post(stale, signWebhook(secret, stale, old)); a.status != 401 {
			t.Fatalf("stale: %s", a)
		}
	})
	t.Run("a correctly signed fresh event is 200, its repeat 200 duplicate", func(t *testing.T) {
		a := post(ev, signWebhook(secret, ev, time.Now()))
		b := expectAnswer(t, "signed event", a, 200)
		if b["duplicate"] != false {
			t.Fatalf("first delivery: %s", a)
		}
		a = post(ev, signWebhook(secret, ev, time.Now()))
		b = expectAnswer(t, "signed event again", a, 200)
		if b["duplicate"] != true {
			t.Fatalf("second delivery: %s, want duplicate true", a)
		}
	})
	t.Run("a signed event that is not an event is a 4xx", func(t *testing.T) {
		junk := []byte(`{"hello":"world"}`)
		a := post(junk, signWebhook(secret, junk, time.Now()))
		if a.status < 400 || a.status >= 500 {
			t.Fatalf("junk event: %s", a)
		}
	})
}

func TestCheckoutWithPublicationsDownChargesNothing(t *testing.T) {
	m := startMesh(t)
	_, sToken := m.signup("down-seller@example.com")
	_, bToken := m.signup("down-buyer@example.com")
	pub := m.seedPublication(sToken, "Vinyl record", 3000, "USD", 5)
	m.must(200, "POST", "/v1/cart/items", bToken, map[string]any{"publication_id": pub, "quantity": 1})

	m.procs["publications"].stop()
	a := m.placeOrder(bToken, orderBody(pub, 2, "tok_visa"), "down-1")
	if a.status != 503 {
		t.Errorf("POST /v1/orders with publications down: %s, want 503", a)
	} else {
		errorCode(t, a.body, a.hdr)
	}
	c := m.send("POST", "/v1/cart/checkout", bToken, map[string]any{
		"payment": map[string]any{"method": "card", "card_token": "tok_visa"}, "shipping_address": address()}, nil)
	if c.status != 503 {
		t.Errorf("POST /v1/cart/checkout with publications down: %s, want 503", c)
	}
	m.procs["publications"].start()
	m.consul.WaitPassing(t, "marketmesh.publications", 1, 20*time.Second)
	meshtest.Eventually(t, 20*time.Second, func() error { _, err := m.publication(pub); return err })

	// An order left behind (if any) must end failed, never paid: the
	// recovery loop runs every second in these tests.
	meshtest.Eventually(t, 30*time.Second, func() error {
		for _, o := range m.listOrders(t, bToken, "") {
			if o["status"] != "failed" {
				return fmt.Errorf("order %v is %v (reason %v)", o["id"], o["status"], o["failure_reason"])
			}
		}
		return nil
	})
	for _, o := range m.listOrders(t, bToken, "") {
		if p, _ := o["payment"].(map[string]any); p != nil && (p["status"] == "succeeded" || p["status"] == "pending") {
			t.Fatalf("a failed order has a live charge: %v", o)
		}
		t.Logf("left behind: order %v %v (%v)", o["id"], o["status"], o["failure_reason"])
	}
	if q := m.pubQuantity(t, pub); q != 5 {
		t.Fatalf("quantity %d after the outage, want 5", q)
	}
	cart := expectAnswer(t, "GET /v1/cart", m.send("GET", "/v1/cart", bToken, nil, nil), 200)
	if cl := lines(cart); len(cl) != 1 || cl[0]["publication_id"] != pub {
		t.Fatalf("the cart lost its line after a failed checkout: %v", cart)
	}
	// And with publications back, buying works again.
	// The first attempt may still meet a caller whose registry cache has
	// not caught up (a 503, nothing done: the same key tries again) or a
	// commit that fails once (202 pending: the saga finishes it).
	var orderID string
	meshtest.Eventually(t, 20*time.Second, func() error {
		a := m.placeOrder(bToken, orderBody(pub, 1, "tok_visa"), "down-after")
		if a.status != 201 && a.status != 202 {
			return fmt.Errorf("order after the outage: %s", a)
		}
		orderID, _ = a.body["id"].(string)
		return nil
	})
	meshtest.Eventually(t, 20*time.Second, func() error {
		st, o, _ := m.call("GET", "/v1/orders/"+orderID, bToken, nil)
		if st != 200 || o["status"] != "paid" {
			return fmt.Errorf("order after the outage: %d %v", st, o["status"])
		}
		return nil
	})
	if q := m.pubQuantity(t, pub); q != 4 {
		t.Fatalf("quantity %d after one order, want 4", q)
	}
}

func TestCartIsPartialWithPublicationsDownAndKeepsClosedLines(t *testing.T) {
	m := startMesh(t)
	_, sToken := m.signup("cart-seller@example.com")
	_, bToken := m.signup("cart-buyer@example.com")
	pubA := m.seedPublication(sToken, "Chess set", 6000, "USD", 2)
	pubB := m.seedPublication(sToken, "Chess clock", 4500, "USD", 2)
	m.must(200, "POST", "/v1/cart/items", bToken, map[string]any{"publication_id": pubA, "quantity": 1})
	m.must(200, "POST", "/v1/cart/items", bToken, map[string]any{"publication_id": pubB, "quantity": 2})

	t.Run("a closed publication's line stays, unavailable", func(t *testing.T) {
		expectAnswer(t, "close B", m.send("PATCH", "/v1/publications/"+pubB, sToken, map[string]any{"status": "closed"}, nil), 200)
		cart := expectAnswer(t, "GET /v1/cart", m.send("GET", "/v1/cart", bToken, nil, nil), 200)
		cl := lines(cart)
		if len(cl) != 2 {
			t.Fatalf("cart lines: %v", cart)
		}
		if cl[0]["publication_id"] != pubA || cl[0]["available"] != true {
			t.Fatalf("line A: %v", cl[0])
		}
		if cl[1]["publication_id"] != pubB || cl[1]["available"] != false || cl[1]["quantity"] != 2.0 {
			t.Fatalf("closed line B: %v", cl[1])
		}
		subs, _ := cart["subtotals"].([]any)
		if len(subs) != 1 {
			t.Fatalf("subtotals: %v", cart)
		}
		if amt, _ := moneyOf(subs[0]); amt != 6000 {
			t.Fatalf("subtotal %d, want 6000 (the closed line left out): %v", amt, cart)
		}
	})
	t.Run("with publications down the cart is 200 partial", func(t *testing.T) {
		m.procs["publications"].stop()
		defer func() {
			m.procs["publications"].start()
			m.consul.WaitPassing(t, "marketmesh.publications", 1, 20*time.Second)
		}()
		a := m.send("GET", "/v1/cart", bToken, nil, nil)
		cart := expectAnswer(t, "GET /v1/cart", a, 200)
		un, _ := cart["unavailable"].([]any)
		if cart["partial"] != true || !slices.Contains(un, any("publications")) {
			t.Fatalf("cart with publications down: %s", a)
		}
		cl := lines(cart)
		if len(cl) != 2 || cl[0]["publication_id"] != pubA || cl[1]["publication_id"] != pubB || cl[1]["quantity"] != 2.0 {
			t.Fatalf("cart lines with publications down: %s", a)
		}
	})
	t.Run("back to whole once publications is back", func(t *testing.T) {
		meshtest.Eventually(t, 20*time.Second, func() error {
			a := m.send("GET", "/v1/cart", bToken, nil, nil)
			if a.status != 200 || a.body["partial"] != false {
				return fmt.Errorf("cart: %s", a)
			}
			return nil
		})
	})
	t.Run("removing a line", func(t *testing.T) {
		a := m.send("DELETE", "/v1/cart/items/"+pubB, bToken, nil, nil)
		cart := expectAnswer(t, "DELETE cart line", a, 200)
		if cl := lines(cart); len(cl) != 1 || cl[0]["publication_id"] != pubA {
			t.Fatalf("after removing B: %s", a)
		}
	})
}

func TestOrderBadInputIsA4xx(t *testing.T) {
	m := startMesh(t)
	_, sToken := m.signup("bad-seller@example.com")
	_, bToken := m.signup("bad-buyer@example.com")
	pub := m.seedPublication(sToken, "Garden gnome", 1200, "USD", 10)

	item := func(q any) string { return `{"publication_id":"` + pub + `","quantity":` + fmt.Sprint(q) + `}` }
	const pay = `"payment":{"method":"card","card_token":"tok_visa"}`
	const addr = `"shipping_address":{"name":"Ada","line1":"1 Road","city":"London","postal_code":"N1 1AA","country":"GB"}`
	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprintf(`{"publication_id":"01UNKNOWNPUB%014d","quantity":1}`, i)
	}
	cases := []struct {
		name, token, path, body, mention string
	}{
		{"malformed JSON", bToken, "/v1/orders", `{"items":[` + item(1), ""},
		{"an unknown field", bToken, "/v1/orders", `{"items":[` + item(1) + `],` + pay + `,` + addr + `,"coupon":"FREE"}`, "coupon"},
		{"a quantity of the wrong type", bToken, "/v1/orders", `{"items":[` + item(`"1"`) + `],` + pay + `,` + addr + `}`, "quantity"},
		{"a fractional quantity", bToken, "/v1/orders", `{"items":[` + item(1.5) + `],` + pay + `,` + addr + `}`, "quantity"},
		{"quantity 0", bToken, "/v1/orders", `{"items":[` + item(0) + `],` + pay + `,` + addr + `}`, "quantity"},
		{"quantity -1", bToken, "/v1/orders", `{"items":[` + item(-1) + `],` + pay + `,` + addr + `}`, "quantity"},
		{"quantity 1001", bToken, "/v1/orders", `{"items":[` + item(1001) + `],` + pay + `,` + addr + `}`, "quantity"},
		{"no items", bToken, "/v1/orders", `{"items":[],` + pay + `,` + addr + `}`, "items"},
		{"101 items", bToken, "/v1/orders", `{"items":[` + strings.Join(many, ",") + `],` + pay + `,` + addr + `}`, "items"},
		{"a missing shipping_address.city", bToken, "/v1/orders", `{"items":[` + item(1) + `],` + pay +
			`,"shipping_address":{"name":"Ada","line1":"1 Road","postal_code":"N1 1AA","country":"GB"}}`, "city"},
		{"no shipping_address", bToken, "/v1/orders", `{"items":[` + item(1) + `],` + pay + `}`, "shipping_address"},
		{"a payment method other than card", bToken, "/v1/orders", `{"items":[` + item(1) + `],"payment":{"method":"cash","card_token":"tok_visa"},` + addr + `}`, "method"},
		{"no card token", bToken, "/v1/orders", `{"items":[` + item(1) + `],"payment":{"method":"card"},` + addr + `}`, "card_token"},
		{"buying one's own publication", sToken, "/v1/orders", `{"items":[` + item(1) + `],` + pay + `,` + addr + `}`, ""},
		{"an unknown publication", bToken, "/v1/orders", `{"items":[{"publication_id":"01UNKNOWNPUB00000000000000","quantity":1}],` + pay + `,` + addr + `}`, "01UNKNOWNPUB00000000000000"},
		{"a body that is an array", bToken, "/v1/orders", `[]`, ""},
		{"checkout of an empty cart", bToken, "/v1/cart/checkout", `{` + pay + `,` + addr + `}`, ""},
		{"checkout with an unknown field", bToken, "/v1/cart/checkout", `{` + pay + `,` + addr + `,"items":[]}`, "items"},
		{"a cart line with quantity -1", bToken, "/v1/cart/items", item(-1), "quantity"},
		{"a cart line with quantity 1001", bToken, "/v1/cart/items", item(1001), "quantity"},
		{"a cart line without publication_id", bToken, "/v1/cart/items", `{"quantity":1}`, "publication_id"},
		{"a cart line with an unknown field", bToken, "/v1/cart/items", `{"publication_id":"` + pub + `","quantity":1,"price":1}`, "price"},
		{"a cart line for one's own publication", sToken, "/v1/cart/items", item(1), ""},
		{"a cart line for an unknown publication", bToken, "/v1/cart/items", `{"publication_id":"01UNKNOWNPUB00000000000000","quantity":1}`, ""},
		{"a bad order list role", bToken, "/v1/orders?role=admin", "", "role"},
		{"an unknown order", bToken, "/v1/orders/01UNKNOWNORDER000000000000", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method := "POST"
			var body any = c.body
			if c.body == "" {
				method, body = "GET", nil
			}
			a := m.send(method, c.path, c.token, body, nil)
			if a.status < 400 || a.status >= 500 {
				t.Fatalf("%s %s: %s, want a 4xx", method, c.path, a)
			}
			errorCode(t, a.body, a.hdr)
			if msg, _ := a.body["error"].(map[string]any)["message"].(string); c.mention != "" && !strings.Contains(msg, c.mention) {
				t.Errorf("%d: message %q does not name %q", a.status, msg, c.mention)
			}
			t.Logf("%d %s: %s", a.status, a.errCode(), a.body["error"].(map[string]any)["message"])
		})
	}
	t.Run("none of them created an order or moved stock", func(t *testing.T) {
		if n := len(m.listOrders(t, bToken, "")); n != 0 {
			t.Fatalf("the buyer has %d orders: %v", n, m.listOrders(t, bToken, ""))
		}
		if n := len(m.listOrders(t, sToken, "")); n != 0 {
			t.Fatalf("the seller has %d orders as buyer", n)
		}
		if q := m.pubQuantity(t, pub); q != 10 {
			t.Fatalf("quantity %d, want 10", q)
		}
		cart := expectAnswer(t, "GET /v1/cart", m.send("GET", "/v1/cart", bToken, nil, nil), 200)
		if n := len(lines(cart)); n != 0 {
			t.Fatalf("bad cart lines were added: %v", cart)
		}
	})
}
