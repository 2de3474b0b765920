// Package payment is the orders service's side of a payment provider: the
// Provider interface (charge, refund, verify a webhook), the webhook
// signature scheme, and the built-in sandbox provider.
package payment

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/plugins/validate"
)

// Charge statuses at the provider.
const (
	StatusSucceeded = "succeeded"
	StatusPending   = "pending"
	StatusFailed    = "failed"
	StatusCanceled  = "canceled" // a pending charge refunded before it settled
)

// Webhook event types.
const (
	EventSucceeded = "payment.succeeded"
	EventFailed    = "payment.failed"
)

// maxRef bounds the IDs a webhook names (event, charge, order): they become
// database keys.
const maxRef = 255

// SignatureHeader is the HTTP header of a webhook's signature.
const SignatureHeader = "X-Signature"

// Tolerance is how old (or how far in the future) a webhook's timestamp may be.
const Tolerance = 5 * time.Minute

// ChargeRequest asks for a charge. IdempotencyKey makes it safe to repeat:
// the same key returns the same charge and charges nothing more.
type ChargeRequest struct {
	IdempotencyKey string
	OrderID        string
	CardToken      string
	Amount         money.Money
}

// Charge is a provider's charge.
type Charge struct {
	ID            string      `json:"id"`
	Status        string      `json:"status"`
	Amount        money.Money `json:"amount"`
	DeclineReason string      `json:"decline_reason,omitempty"`
}

// RefundRequest refunds the whole charge made with ChargeKey; refunding a
// charge that does not exist, failed, or was refunded already does nothing.
type RefundRequest struct {
	IdempotencyKey string
	ChargeKey      string
}

// Refund is a provider's refund. Status "none" means there was nothing to
// refund (no charge, or a failed one).
type Refund struct {
	ID     string      `json:"id"`
	Status string      `json:"status"`
	Amount money.Money `json:"amount"`
}

// Event is a verified webhook event.
type Event struct {
	ID       string      `json:"id"`
	Type     string      `json:"type"`
	Created  int64       `json:"created"`
	ChargeID string      `json:"charge_id"`
	OrderID  string      `json:"order_id"`
	Amount   money.Money `json:"amount"`
}

// webhookBody is the JSON a provider posts.
type webhookBody struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Created int64  `json:"created"`
	Data    struct {
		ChargeID string      `json:"charge_id"`
		OrderID  string      `json:"order_id"`
		Amount   money.Money `json:"amount"`
	} `json:"data"`
}

// Provider is a payment provider.
type Provider interface {
	// Name is the provider's name, recorded on each order's payment.
	Name() string
	// CheckToken refuses a card token the provider would never accept
	// (validate.ErrInvalid), before an order is made.
	CheckToken(token string) error
	Charge(ctx context.Context, r ChargeRequest) (Charge, error)
	Refund(ctx context.Context, r RefundRequest) (Refund, error)
	// ParseWebhook verifies a webhook's signature and freshness and decodes it.
	ParseWebhook(body []byte, signature string, now time.Time) (Event, error)
}

// ErrBadSignature and ErrStale reject a webhook (401).
var (
	ErrBadSignature = errors.New("webhook signature does not verify")
	ErrStale        = errors.New("webhook timestamp is outside the 5-minute window")
	ErrNoSignature  = errors.New("webhook has no signature")
)

// Sign returns the X-Signature value for body sent at t: HMAC-SHA256 under
// secret of "<unix seconds>.<body>", hex encoded.
func Sign(secret, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret []byte, ts string, body []byte) string {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// Verify checks signature (as Sign makes it; several v1 values may be given
// during a secret rotation) over body at now, then decodes the event.
func Verify(secret, body []byte, signature string, now time.Time) (Event, error) {
	if strings.TrimSpace(signature) == "" {
		return Event{}, ErrNoSignature
	}
	var ts string
	var sigs []string
	for _, part := range strings.Split(signature, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return Event{}, ErrBadSignature
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return Event{}, ErrBadSignature
	}
	want := []byte(mac(secret, ts, body))
	ok := false
	for _, s := range sigs {
		if hmac.Equal([]byte(s), want) {
			ok = true
		}
	}
	if !ok {
		return Event{}, ErrBadSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > Tolerance || d < -Tolerance {
		return Event{}, ErrStale
	}
	var b webhookBody
	if err := json.Unmarshal(body, &b); err != nil {
		// Not the decoder's message: it quotes the input.
		return Event{}, validate.Errorf("webhook body is not a valid event: id, type, created and data {charge_id, order_id, amount} are expected")
	}
	if b.ID == "" || (b.Type != EventSucceeded && b.Type != EventFailed) || b.Data.ChargeID == "" || b.Data.OrderID == "" {
		return Event{}, validate.Errorf("webhook event needs id, type (%s or %s), data.charge_id and data.order_id", EventSucceeded, EventFailed)
	}
	if len(b.ID) > maxRef || len(b.Data.ChargeID) > maxRef || len(b.Data.OrderID) > maxRef {
		return Event{}, validate.Errorf("webhook event id, data.charge_id and data.order_id are at most %d bytes", maxRef)
	}
	return Event{ID: b.ID, Type: b.Type, Created: b.Created, ChargeID: b.Data.ChargeID, OrderID: b.Data.OrderID, Amount: b.Data.Amount}, nil
}

// EncodeEvent returns the webhook body of ev.
func EncodeEvent(ev Event) ([]byte, error) {
	var b webhookBody
	b.ID, b.Type, b.Created = ev.ID, ev.Type, ev.Created
	b.Data.ChargeID, b.Data.OrderID, b.Data.Amount = ev.ChargeID, ev.OrderID, ev.Amount
	body, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("payment: encode webhook: %w", err)
	}
	return body, nil
}

// NewSecret returns a new random webhook secret (32 bytes).
func NewSecret() ([]byte, error) {
	k := make([]byte, 32)
	_, err := rand.Read(k)
	return k, err
}
