package payment

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/validate"
)

// Test card tokens of the sandbox.
const (
	TokenVisa     = "tok_visa"     // approves
	TokenDeclined = "tok_declined" // declines (card_declined)
	TokenPending  = "tok_pending"  // pending; confirmed later through the webhook
)

// The sandbox's ledger lives in the orders database, so a restart changes nothing.
var (
	chargesBucket  = []byte("sandbox.charges")  // idempotency key → chargeRecord
	refundsBucket  = []byte("sandbox.refunds")  // idempotency key → Refund
	pendingBucket  = []byte("sandbox.pending")  // idempotency key of a pending charge → confirm-at (unix nanos)
	webhooksBucket = []byte("sandbox.webhooks") // sequence → event body waiting to be posted
)

// chargeRecord is one charge in the sandbox's ledger.
type chargeRecord struct {
	Charge
	Key       string    `json:"key"`
	OrderID   string    `json:"order_id"`
	Token     string    `json:"token"`
	CreatedAt time.Time `json:"created_at"`
	Refunded  bool      `json:"refunded"`
}

// SandboxOptions configure the sandbox.
type SandboxOptions struct {
	// Secret signs the webhooks the sandbox posts.
	Secret []byte
	// WebhookURL is where webhooks are posted (the api's /v1/payments/webhook).
	WebhookURL string
	// ConfirmAfter is how long a tok_pending charge stays pending (default 2 s).
	ConfirmAfter time.Duration
	// HTTP posts the webhooks (default: a client with a 5 s timeout).
	HTTP *http.Client
}

// Sandbox is the built-in payment provider: deterministic test tokens, real
// idempotency, a durable ledger, and signed webhooks.
type Sandbox struct {
	db   *bolt.DB
	opts SandboxOptions
	now  func() time.Time
	wake chan struct{}
}

// NewSandbox returns the sandbox over db, creating its buckets.
func NewSandbox(db *bolt.DB, o SandboxOptions) (*Sandbox, error) {
	if len(o.Secret) < 16 {
		return nil, errors.New("payment: the webhook secret must be at least 16 bytes")
	}
	if o.ConfirmAfter <= 0 {
		o.ConfirmAfter = 2 * time.Second
	}
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: 5 * time.Second}
	}
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{chargesBucket, refundsBucket, pendingBucket, webhooksBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("payment: sandbox buckets: %w", err)
	}
	return &Sandbox{db: db, opts: o, now: time.Now, wake: make(chan struct{}, 1)}, nil
}

// Name implements Provider.
func (s *Sandbox) Name() string { return "sandbox" }

// CheckToken implements Provider: only the test tokens exist.
func (s *Sandbox) CheckToken(token string) error {
	switch token {
	case TokenVisa, TokenDeclined, TokenPending:
		return nil
	}
	return validate.Errorf("payment.card_token: unknown card token for the sandbox provider; use %s, %s or %s", TokenVisa, TokenDeclined, TokenPending)
}

// ErrKeyReused is a charge key repeated with other parameters.
var ErrKeyReused = errors.New("payment: idempotency key reused with other parameters")

// Charge implements Provider.
func (s *Sandbox) Charge(_ context.Context, r ChargeRequest) (Charge, error) {
	if err := s.CheckToken(r.CardToken); err != nil {
		return Charge{}, err
	}
	if r.IdempotencyKey == "" || r.Amount.Amount <= 0 {
		return Charge{}, errors.New("payment: a charge needs an idempotency key and a positive amount")
	}
	// A repeat (a retry, or recovery asking whether a pending charge settled)
	// is answered from a read: no write, no fsync.
	var out Charge
	found := false
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		out, found, err = existingCharge(tx, r)
		return err
	})
	if err != nil || found {
		return out, err
	}
	err = s.db.Batch(func(tx *bolt.Tx) error { // concurrent charges share a commit
		b := tx.Bucket(chargesBucket)
		var err error
		if out, found, err = existingCharge(tx, r); err != nil || found {
			return err
		}
		rec := chargeRecord{
			Charge: Charge{ID: "ch_" + ulid.Make().String(), Amount: r.Amount},
			Key:    r.IdempotencyKey, OrderID: r.OrderID, Token: r.CardToken, CreatedAt: s.now().UTC(),
		}
		switch r.CardToken {
		case TokenVisa:
			rec.Status = StatusSucceeded
		case TokenDeclined:
			rec.Status, rec.DeclineReason = StatusFailed, "card_declined"
		case TokenPending:
			rec.Status = StatusPending
			at := make([]byte, 8)
			binary.BigEndian.PutUint64(at, uint64(s.now().Add(s.opts.ConfirmAfter).UnixNano()))
			if err := tx.Bucket(pendingBucket).Put([]byte(r.IdempotencyKey), at); err != nil {
				return err
			}
		}
		out = rec.Charge
		return putJSON(b, r.IdempotencyKey, rec)
	})
	return out, err
}

// existingCharge returns the charge made with r's key, if any; the same key
// with other parameters is ErrKeyReused.
func existingCharge(tx *bolt.Tx, r ChargeRequest) (Charge, bool, error) {
	raw := tx.Bucket(chargesBucket).Get([]byte(r.IdempotencyKey))
	if raw == nil {
		return Charge{}, false, nil
	}
	var rec chargeRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return Charge{}, false, err
	}
	if rec.Amount != r.Amount || rec.OrderID != r.OrderID {
		return Charge{}, false, ErrKeyReused
	}
	return rec.Charge, true, nil
}

// Refund implements Provider.
func (s *Sandbox) Refund(_ context.Context, r RefundRequest) (Refund, error) {
	var out Refund
	err := s.db.Update(func(tx *bolt.Tx) error {
		rb := tx.Bucket(refundsBucket)
		if raw := rb.Get([]byte(r.IdempotencyKey)); raw != nil {
			return json.Unmarshal(raw, &out)
		}
		cb := tx.Bucket(chargesBucket)
		raw := cb.Get([]byte(r.ChargeKey))
		if raw == nil {
			out = Refund{Status: "none"}
			return nil // nothing was charged; not recorded, so a later charge could still be refunded
		}
		var rec chargeRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return err
		}
		switch {
		case rec.Refunded || rec.Status == StatusFailed || rec.Status == StatusCanceled:
			out = Refund{Status: "none"}
			if rec.Refunded {
				out = Refund{ID: "re_" + rec.ID[3:], Status: StatusSucceeded, Amount: rec.Amount}
			}
			return putJSON(rb, r.IdempotencyKey, out)
		case rec.Status == StatusPending:
			// Not settled yet: cancel it, so it never settles.
			rec.Status = StatusCanceled
			if err := tx.Bucket(pendingBucket).Delete([]byte(r.ChargeKey)); err != nil {
				return err
			}
			out = Refund{Status: StatusCanceled, Amount: rec.Amount}
		default:
			rec.Refunded = true
			out = Refund{ID: "re_" + rec.ID[3:], Status: StatusSucceeded, Amount: rec.Amount}
		}
		if err := putJSON(cb, r.ChargeKey, rec); err != nil {
			return err
		}
		return putJSON(rb, r.IdempotencyKey, out)
	})
	return out, err
}

// ParseWebhook implements Provider.
func (s *Sandbox) ParseWebhook(body []byte, signature string, now time.Time) (Event, error) {
	return Verify(s.opts.Secret, body, signature, now)
}

// Run settles pending charges when they are due and posts their webhooks,
// until ctx ends. A webhook is retried with backoff (1 s doubling to 30 s)
// until the receiver answers 2xx.
func (s *Sandbox) Run(ctx context.Context) {
	backoff := time.Duration(0)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var retryAt time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
		if err := s.settle(); err != nil {
			slog.Error("sandbox: settle pending charges", "err", err)
		}
		if s.now().Before(retryAt) {
			continue
		}
		if err := s.post(ctx); err != nil {
			backoff = min(max(2*backoff, time.Second), 30*time.Second)
			retryAt = s.now().Add(backoff)
			slog.Warn("sandbox: webhook not delivered; retrying", "in", backoff, "err", err)
			continue
		}
		backoff = 0
	}
}

// settle confirms the pending charges that are due and queues their webhooks.
func (s *Sandbox) settle() error {
	now := s.now()
	var due [][]byte
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(pendingBucket).ForEach(func(k, v []byte) error {
			if len(v) == 8 && int64(binary.BigEndian.Uint64(v)) <= now.UnixNano() {
				due = append(due, append([]byte(nil), k...))
			}
			return nil
		})
	})
	if err != nil || len(due) == 0 {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		pb, cb, wb := tx.Bucket(pendingBucket), tx.Bucket(chargesBucket), tx.Bucket(webhooksBucket)
		for _, k := range due {
			if pb.Get(k) == nil {
				continue // refunded (canceled) meanwhile
			}
			var rec chargeRecord
			if err := json.Unmarshal(cb.Get(k), &rec); err != nil {
				return err
			}
			rec.Status = StatusSucceeded
			if err := putJSON(cb, string(k), rec); err != nil {
				return err
			}
			if err := pb.Delete(k); err != nil {
				return err
			}
			body, err := EncodeEvent(Event{ID: "evt_" + ulid.Make().String(), Type: EventSucceeded, Created: now.Unix(),
				ChargeID: rec.ID, OrderID: rec.OrderID, Amount: rec.Amount})
			if err != nil {
				return err
			}
			seq, _ := wb.NextSequence()
			key := make([]byte, 8)
			binary.BigEndian.PutUint64(key, seq)
			if err := wb.Put(key, body); err != nil {
				return err
			}
		}
		return nil
	})
}

// post delivers queued webhooks in order; it stops at the first failure.
func (s *Sandbox) post(ctx context.Context) error {
	for {
		var key, body []byte
		err := s.db.View(func(tx *bolt.Tx) error {
			k, v := tx.Bucket(webhooksBucket).Cursor().First()
			key, body = append([]byte(nil), k...), append([]byte(nil), v...)
			return nil
		})
		if err != nil || len(key) == 0 {
			return err
		}
		if s.opts.WebhookURL == "" {
			return errors.New("no webhook URL configured (PAYMENTS_WEBHOOK_URL)")
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.opts.WebhookURL, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(SignatureHeader, Sign(s.opts.Secret, body, s.now()))
		rsp, err := s.opts.HTTP.Do(req)
		if err != nil {
			return err
		}
		rsp.Body.Close()
		if rsp.StatusCode/100 != 2 {
			return fmt.Errorf("webhook answered %s", rsp.Status)
		}
		if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(webhooksBucket).Delete(key) }); err != nil {
			return err
		}
	}
}

// Ledger lists every charge of the sandbox (for tests and operators).
func (s *Sandbox) Ledger() ([]LedgerEntry, error) { return ReadLedger(s.db) }

// LedgerEntry is one charge as the sandbox's ledger holds it.
type LedgerEntry struct {
	Key, OrderID, ChargeID, Status string
	Amount                         int64
	Refunded                       bool
}

// ReadLedger reads the sandbox's charges from an orders database.
func ReadLedger(db *bolt.DB) ([]LedgerEntry, error) {
	var out []LedgerEntry
	err := db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(chargesBucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var rec chargeRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return err
			}
			out = append(out, LedgerEntry{Key: rec.Key, OrderID: rec.OrderID, ChargeID: rec.ID, Status: rec.Status,
				Amount: rec.Amount.Amount, Refunded: rec.Refunded})
			return nil
		})
	})
	return out, err
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), raw)
}
