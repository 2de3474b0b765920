package payment

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/plugins/validate"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func openDB(t *testing.T, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func sandbox(t *testing.T, db *bolt.DB, o SandboxOptions) *Sandbox {
	t.Helper()
	o.Secret = secret
	s, err := NewSandbox(db, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignatureVerifiesOnlyTheSignedFreshBody(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body, _ := EncodeEvent(Event{ID: "evt_1", Type: EventSucceeded, Created: now.Unix(), ChargeID: "ch_1", OrderID: "O1",
		Amount: money.Money{Amount: 100, Currency: "USD"}})
	sig := Sign(secret, body, now)
	ev, err := Verify(secret, body, sig, now.Add(time.Minute))
	if err != nil || ev.ID != "evt_1" || ev.OrderID != "O1" || ev.Amount.Amount != 100 {
		t.Fatalf("Verify = %+v, %v", ev, err)
	}
	// A rotation: several v1 values, one good.
	if _, err := Verify(secret, body, sig+",v1=00", now); err != nil {
		t.Errorf("two signatures, one valid: %v", err)
	}
	for name, c := range map[string]struct {
		body []byte
		sig  string
		at   time.Time
		want error
	}{
		"unsigned":        {body, "", now, ErrNoSignature},
		"garbage":         {body, "nonsense", now, ErrBadSignature},
		"no v1":           {body, "t=1800000000", now, ErrBadSignature},
		"tampered body":   {[]byte(strings.Replace(string(body), "100", "1", 1)), sig, now, ErrBadSignature},
		"other secret":    {body, Sign([]byte("another secret, 32 bytes long!!!"), body, now), now, ErrBadSignature},
		"too old":         {body, sig, now.Add(Tolerance + time.Second), ErrStale},
		"from the future": {body, sig, now.Add(-Tolerance - time.Second), ErrStale},
	} {
		if _, err := Verify(secret, c.body, c.sig, c.at); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	huge := []byte(`{"id":"evt_` + strings.Repeat("x", 40000) + `","type":"payment.succeeded","data":{"charge_id":"ch","order_id":"O"}}`)
	if _, err := Verify(secret, huge, Sign(secret, huge, now), now); !errors.Is(err, validate.ErrInvalid) {
		t.Errorf("a 40 KB event id: %v", err)
	}
	digits := []byte(`{"id":"e","type":"payment.succeeded","created":` + strings.Repeat("9", 5000) + `}`)
	if _, err := Verify(secret, digits, Sign(secret, digits, now), now); err == nil || len(err.Error()) > 300 {
		t.Errorf("a 5000-digit number: the error quotes the input (%d bytes)", len(fmt.Sprint(err)))
	}
	bad := []byte(`{"id":"evt_2","type":"payment.refunded","data":{}}`)
	if _, err := Verify(secret, bad, Sign(secret, bad, now), now); !errors.Is(err, validate.ErrInvalid) {
		t.Errorf("unknown event type: %v", err)
	}
}

func TestSandboxChargesOnceByKeyAndKeepsItsLedgerAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "orders.db")
	db := openDB(t, path)
	s := sandbox(t, db, SandboxOptions{})
	ctx := context.Background()
	usd := money.Money{Amount: 999, Currency: "USD"}

	if err := s.CheckToken("tok_mastercard"); !errors.Is(err, validate.ErrInvalid) {
		t.Errorf("unknown token: %v", err)
	}
	// Concurrent repeats of one key make one charge.
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := s.Charge(ctx, ChargeRequest{IdempotencyKey: "charge-O1", OrderID: "O1", CardToken: TokenVisa, Amount: usd})
			if err != nil {
				t.Error(err)
			}
			ids[i] = c.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("one key, several charges: %v", ids)
		}
	}
	if _, err := s.Charge(ctx, ChargeRequest{IdempotencyKey: "charge-O1", OrderID: "O1", CardToken: TokenVisa, Amount: money.Money{Amount: 1, Currency: "USD"}}); !errors.Is(err, ErrKeyReused) {
		t.Errorf("same key, other amount: %v", err)
	}
	d, _ := s.Charge(ctx, ChargeRequest{IdempotencyKey: "charge-O2", OrderID: "O2", CardToken: TokenDeclined, Amount: usd})
	if d.Status != StatusFailed || d.DeclineReason != "card_declined" {
		t.Errorf("declined = %+v", d)
	}
	// Refunds: once by key; nothing to refund for a declined or unknown charge.
	r1, _ := s.Refund(ctx, RefundRequest{IdempotencyKey: "refund-O1", ChargeKey: "charge-O1"})
	r2, _ := s.Refund(ctx, RefundRequest{IdempotencyKey: "refund-O1", ChargeKey: "charge-O1"})
	if r1.Status != StatusSucceeded || r1 != r2 || r1.Amount != usd {
		t.Errorf("refunds = %+v, %+v", r1, r2)
	}
	if r, _ := s.Refund(ctx, RefundRequest{IdempotencyKey: "refund-O2", ChargeKey: "charge-O2"}); r.Status != "none" {
		t.Errorf("refund of a declined charge = %+v", r)
	}
	if r, _ := s.Refund(ctx, RefundRequest{IdempotencyKey: "refund-O3", ChargeKey: "charge-O3"}); r.Status != "none" {
		t.Errorf("refund of no charge = %+v", r)
	}

	// Reopen the file: the same key still answers the same charge.
	db.Close()
	db = openDB(t, path)
	defer db.Close()
	s = sandbox(t, db, SandboxOptions{})
	c, err := s.Charge(ctx, ChargeRequest{IdempotencyKey: "charge-O1", OrderID: "O1", CardToken: TokenVisa, Amount: usd})
	if err != nil || c.ID != ids[0] {
		t.Fatalf("after restart: %+v, %v (want %s)", c, err, ids[0])
	}
	ledger, _ := s.Ledger()
	if len(ledger) != 2 || !ledger[0].Refunded {
		t.Fatalf("ledger = %+v", ledger)
	}
}

func TestAPendingChargeSettlesAndItsSignedWebhookIsRetriedUntilAccepted(t *testing.T) {
	var mu sync.Mutex
	var got []string
	fails := 2
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			http.Error(w, "not now", http.StatusServiceUnavailable)
			return
		}
		if _, err := Verify(secret, body, r.Header.Get(SignatureHeader), time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		got = append(got, string(body))
	}))
	defer srv.Close()
	db := openDB(t, filepath.Join(t.TempDir(), "orders.db"))
	defer db.Close()
	s := sandbox(t, db, SandboxOptions{WebhookURL: srv.URL, ConfirmAfter: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)

	c, _ := s.Charge(ctx, ChargeRequest{IdempotencyKey: "charge-P", OrderID: "P", CardToken: TokenPending, Amount: money.Money{Amount: 5, Currency: "EUR"}})
	if c.Status != StatusPending {
		t.Fatalf("charge = %+v", c)
	}
	// A pending charge refunded before it settles never settles.
	_, _ = s.Charge(ctx, ChargeRequest{IdempotencyKey: "charge-Q", OrderID: "Q", CardToken: TokenPending, Amount: money.Money{Amount: 5, Currency: "EUR"}})
	if r, _ := s.Refund(ctx, RefundRequest{IdempotencyKey: "refund-Q", ChargeKey: "charge-Q"}); r.Status != StatusCanceled {
		t.Fatalf("refund of a pending charge = %+v", r)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no webhook accepted within 20 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || !strings.Contains(got[0], `"order_id":"P"`) || !strings.Contains(got[0], EventSucceeded) {
		t.Fatalf("webhooks = %v", got)
	}
	again, _ := s.Charge(ctx, ChargeRequest{IdempotencyKey: "charge-P", OrderID: "P", CardToken: TokenPending, Amount: money.Money{Amount: 5, Currency: "EUR"}})
	if again.Status != StatusSucceeded {
		t.Errorf("the settled charge reads %s", again.Status)
	}
}
