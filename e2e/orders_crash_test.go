package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/meshtest"
)

// crashCase kills the orders process (SIGKILL, from inside, at a fault
// point compiled into the e2e build) in the middle of a saga.
type crashCase struct {
	point  string // ORDERS_FAULT_POINT
	token  string // card token of the order
	cancel bool   // place a paid order first, then crash while cancelling it
	want   string // the status the order must end in
}

// TestKillingOrdersAtEachSagaStepLeavesEveryOrderConsistent kills orders at
// each step of the checkout saga and of its compensation, restarts it, and
// checks the invariants: every order ends paid, failed or cancelled; no
// reservation stays held; stock sold equals what paid orders bought; the
// provider's ledger has one charge per charged order, kept only by paid
// orders and refunded for every other.
func TestKillingOrdersAtEachSagaStepLeavesEveryOrderConsistent(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts the orders process a dozen times")
	}
	m := startMesh(t)
	_, seller := m.signup("crash-seller@example.com")
	const stock = 50
	pubA := m.seedPublication(seller, "Crash test phone", 1500, "USD", stock)
	pubB := m.seedPublication(seller, "Crash test case", 300, "USD", stock)
	orders := m.procs["orders"]
	base := orders.env

	cases := []crashCase{
		{point: "reserve:2", token: "tok_visa", want: "failed"},   // first line reserved, dies before the second: turned back
		{point: "reserved", token: "tok_visa", want: "failed"},    // a reservation made, its record written, then death
		{point: "charge", token: "tok_visa", want: "paid"},        // charging persisted, provider not asked yet: forward
		{point: "charged", token: "tok_visa", want: "paid"},       // charged at the provider, not recorded: forward, charged once
		{point: "commit:2", token: "tok_visa", want: "paid"},      // one line committed: forward
		{point: "committed", token: "tok_visa", want: "paid"},     // every line committed, not yet paid
		{point: "charged", token: "tok_declined", want: "failed"}, // declined, not recorded
		{point: "refund", token: "tok_declined", want: "failed"},  // compensating, before the refund
		{point: "release", token: "tok_declined", want: "failed"}, // compensating, before giving stock back
		{point: "refund", token: "tok_visa", cancel: true, want: "cancelled"},
		{point: "release", token: "tok_visa", cancel: true, want: "cancelled"},
	}
	restart := func(env []string) {
		t.Helper()
		orders.kill() // reaps a process that killed itself, or kills a live one
		orders.env = env
		orders.start()
		m.consul.WaitPassing(t, "marketmesh.orders", 1, 30*time.Second)
	}
	body := func(token string) map[string]any {
		return map[string]any{
			"items": []any{
				map[string]any{"publication_id": pubA, "quantity": 2},
				map[string]any{"publication_id": pubB, "quantity": 1},
			},
			"payment":          map[string]any{"method": "card", "card_token": token},
			"shipping_address": address(),
		}
	}
	type placed struct {
		c     crashCase
		token string
		id    string
	}
	var all []placed
	for i, c := range cases {
		_, buyer := m.signup(fmt.Sprintf("crash-buyer-%d@example.com", i))
		faulty := append(append([]string(nil), base...), "ORDERS_FAULT_POINT="+c.point)
		// crash sends the request until the process dies of it: right after
		// a restart the api may still route to the dead instance (a fast
		// 503 that never reached the new one).
		crash := func(send func() answer) {
			t.Helper()
			meshtest.Eventually(t, 60*time.Second, func() error {
				a := send()
				if a.status/100 == 2 {
					t.Fatalf("%s: answered %s although orders should have died", c.point, a)
				}
				for range 20 {
					if orders.exited() {
						return nil
					}
					time.Sleep(50 * time.Millisecond)
				}
				return fmt.Errorf("orders has not died at %s (last answer %s)", c.point, a)
			})
		}
		if c.cancel {
			restart(base)
			var a answer
			meshtest.Eventually(t, 30*time.Second, func() error {
				if a = m.placeOrder(buyer, body(c.token), "cancel-me"); a.status != 201 {
					return fmt.Errorf("order to cancel: %s", a)
				}
				return nil
			})
			id := a.body["id"].(string)
			restart(faulty)
			crash(func() answer { return m.send("POST", "/v1/orders/"+id+"/cancel", buyer, nil, nil) })
		} else {
			restart(faulty)
			crash(func() answer { return m.placeOrder(buyer, body(c.token), "crash-"+c.point) })
		}
		restart(base)
		var id string
		meshtest.Eventually(t, 60*time.Second, func() error {
			a := m.send("GET", "/v1/orders", buyer, nil, nil)
			if a.status != 200 {
				return fmt.Errorf("GET /v1/orders: %s", a) // the api may still route to the dead instance
			}
			list := lines(a.body)
			if len(list) != 1 {
				return fmt.Errorf("%s: buyer has %d orders, want 1", c.point, len(list))
			}
			id, _ = list[0]["id"].(string)
			if st := list[0]["status"]; st != c.want {
				return fmt.Errorf("%s: order %s is %v, want %s", c.point, id, st, c.want)
			}
			return nil
		})
		all = append(all, placed{c, buyer, id})
	}

	// Stock: nothing held, and sold = what paid orders bought.
	soldA, soldB := int64(0), int64(0)
	for _, p := range all {
		if p.c.want == "paid" {
			soldA, soldB = soldA+2, soldB+1
		}
	}
	meshtest.Eventually(t, 30*time.Second, func() error {
		for _, s := range []struct {
			id   string
			sold int64
		}{{pubA, soldA}, {pubB, soldB}} {
			p, err := m.publication(s.id)
			if err != nil {
				return err
			}
			q, r := int64(p["quantity"].(float64)), int64(p["reserved"].(float64))
			if r != 0 || q != stock-s.sold {
				return fmt.Errorf("publication %s: quantity %d reserved %d, want %d and 0", s.id, q, r, stock-s.sold)
			}
		}
		return nil
	})

	// The provider's ledger, read from the orders file once orders is stopped.
	orders.stop()
	db, err := bolt.Open(filepath.Join(m.data, "orders", "orders.db"), 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	type charge struct {
		ID       string `json:"id"`
		Status   string `json:"status"`
		OrderID  string `json:"order_id"`
		Refunded bool   `json:"refunded"`
	}
	charges := map[string][]charge{}
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("sandbox.charges"))
		if b == nil {
			return fmt.Errorf("no sandbox.charges bucket")
		}
		return b.ForEach(func(_, v []byte) error {
			var c charge
			if err := json.Unmarshal(v, &c); err != nil {
				return err
			}
			charges[c.OrderID] = append(charges[c.OrderID], c)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range all {
		cs := charges[p.id]
		if len(cs) > 1 {
			t.Errorf("%s: order %s was charged %d times", p.c.point, p.id, len(cs))
		}
		kept := len(cs) == 1 && cs[0].Status == "succeeded" && !cs[0].Refunded
		switch {
		case p.c.want == "paid" && !kept:
			t.Errorf("%s: paid order %s has no kept charge: %+v", p.c.point, p.id, cs)
		case p.c.want != "paid" && kept:
			t.Errorf("%s: %s order %s kept its charge: %+v", p.c.point, p.c.want, p.id, cs)
		}
	}
	known := map[string]bool{}
	for _, p := range all {
		known[p.id] = true
	}
	for id := range charges {
		if !known[id] {
			t.Errorf("a charge for an order nobody placed: %s", id)
		}
	}
	t.Logf("%d crash cases: %d charges in the ledger", len(all), len(charges))
}
