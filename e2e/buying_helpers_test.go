package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Helpers of the buying tests (cart, orders, payments webhook).

// buyingClient waits longer than httpClient: a checkout runs a saga (reserve,
// charge, commit) in race-built binaries on a busy 2-core machine, and the
// orders contract gives it 15 s.
var buyingClient = &http.Client{Timeout: 60 * time.Second}

// answer is one HTTP answer: status, headers, raw body and the body decoded
// as a JSON object when it is one.
type answer struct {
	status int
	hdr    http.Header
	raw    []byte
	body   map[string]any
	took   time.Duration
}

func (a answer) String() string {
	return fmt.Sprintf("%d %s", a.status, strings.TrimSpace(string(a.raw)))
}

// errCode returns the error document's code ("" if the body is not one).
func (a answer) errCode() string {
	e, _ := a.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// errOrderID returns the error document's order_id.
func (a answer) errOrderID() string {
	e, _ := a.body["error"].(map[string]any)
	c, _ := e["order_id"].(string)
	return c
}

// send sends a request with a raw or JSON body and extra headers. It never
// fails the test on an error status; a transport error is returned as status 0.
func (m *mesh) send(method, path, token string, body any, headers map[string]string) answer {
	return doRequest(buyingClient, m.newRequest(method, path, token, body, headers))
}

// newRequest builds a request to the api: a raw body (string, []byte) or
// any other value as JSON, a bearer token and extra headers.
func (m *mesh) newRequest(method, path, token string, body any, headers map[string]string) *http.Request {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			panic(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, m.url+path, rd)
	if err != nil {
		panic(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return req
}

// doRequest sends req with c and reads the whole answer; a transport error,
// or an answer cut short, is status 0 with the error as its body.
func doRequest(c *http.Client, req *http.Request) answer {
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return answer{status: 0, raw: []byte(err.Error()), took: time.Since(start)}
	}
	defer resp.Body.Close()
	out := answer{status: resp.StatusCode, hdr: resp.Header}
	out.raw, err = io.ReadAll(resp.Body)
	out.took = time.Since(start)
	if err != nil {
		return answer{status: 0, raw: []byte(err.Error()), took: out.took}
	}
	if len(out.raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(out.raw, &out.body)
	}
	return out
}

// expectAnswer fails the test unless a has status want; it returns the body.
func expectAnswer(t testing.TB, what string, a answer, want int) map[string]any {
	t.Helper()
	if a.status != want {
		t.Fatalf("%s: got %s, want status %d", what, a, want)
	}
	return a.body
}

// seedPublication creates a product and a publication of it as the seller
// (token) and returns the publication's ID.
func (m *mesh) seedPublication(token, title string, amount int64, currency string, quantity int64) string {
	m.t.Helper()
	p := m.must(201, "POST", "/v1/products", token, map[string]any{"name": title, "category": "misc/things", "brand": "Acme"})
	pub := m.must(201, "POST", "/v1/publications", token, map[string]any{"product_id": p["id"], "title": title,
		"price": map[string]any{"amount": amount, "currency": currency}, "quantity": quantity, "condition": "new"})
	return pub["id"].(string)
}

// publication reads a publication through the api's publication page.
func (m *mesh) publication(id string) (map[string]any, error) {
	a := m.send("GET", "/v1/publications/"+id, "", nil, nil)
	if a.status != 200 {
		return nil, fmt.Errorf("GET /v1/publications/%s: %s", id, a)
	}
	p, ok := a.body["publication"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("GET /v1/publications/%s: no publication in %s", id, a)
	}
	return p, nil
}

// pubQuantity is a publication's quantity (its stock left) as the api shows it.
func (m *mesh) pubQuantity(t testing.TB, id string) int64 {
	t.Helper()
	p, err := m.publication(id)
	if err != nil {
		t.Fatal(err)
	}
	q, ok := p["quantity"].(float64)
	if !ok {
		t.Fatalf("publication %s has no numeric quantity: %v", id, p)
	}
	return int64(q)
}

// address is a valid shipping address.
func address() map[string]any {
	return map[string]any{"name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London",
		"postal_code": "SW1Y 4JH", "country": "GB"}
}

// orderBody is a POST /v1/orders body for one line.
func orderBody(pubID string, quantity int64, cardToken string) map[string]any {
	return map[string]any{
		"items":            []any{map[string]any{"publication_id": pubID, "quantity": quantity}},
		"payment":          map[string]any{"method": "card", "card_token": cardToken},
		"shipping_address": address(),
	}
}

// placeOrder posts an order with an optional Idempotency-Key.
func (m *mesh) placeOrder(token string, body any, idemKey string) answer {
	var h map[string]string
	if idemKey != "" {
		h = map[string]string{"Idempotency-Key": idemKey}
	}
	return m.send("POST", "/v1/orders", token, body, h)
}

// listOrders reads every page of the caller's orders (role "" is buyer).
func (m *mesh) listOrders(t testing.TB, token, role string) []map[string]any {
	t.Helper()
	var out []map[string]any
	pageToken := ""
	for range 1000 {
		path := "/v1/orders?page_size=100"
		if role != "" {
			path += "&role=" + role
		}
		if pageToken != "" {
			path += "&page_token=" + pageToken
		}
		a := m.send("GET", path, token, nil, nil)
		if a.status != 200 {
			t.Fatalf("GET %s: %s", path, a)
		}
		items, ok := a.body["items"].([]any)
		if !ok {
			t.Fatalf("GET %s: no items list: %s", path, a)
		}
		for _, it := range items {
			out = append(out, it.(map[string]any))
		}
		pageToken, _ = a.body["next_page_token"].(string)
		if pageToken == "" {
			return out
		}
	}
	t.Fatalf("GET /v1/orders: more than 1000 pages")
	return nil
}

// countByStatus counts orders by status.
func countByStatus(orders []map[string]any) map[string]int {
	n := map[string]int{}
	for _, o := range orders {
		s, _ := o["status"].(string)
		n[s]++
	}
	return n
}

// findOrder returns the order with id from orders, or nil.
func findOrder(orders []map[string]any, id string) map[string]any {
	for _, o := range orders {
		if o["id"] == id {
			return o
		}
	}
	return nil
}

// money reads a {amount, currency} object.
func moneyOf(v any) (int64, string) {
	mo, _ := v.(map[string]any)
	a, _ := mo["amount"].(float64)
	c, _ := mo["currency"].(string)
	return int64(a), c
}

// lines returns an order's (or cart's) items as objects.
func lines(v map[string]any) []map[string]any {
	items, _ := v["items"].([]any)
	out := make([]map[string]any, 0, len(items))
	for _, it := range items {
		out = append(out, it.(map[string]any))
	}
	return out
}

// webhookSecret reads the key the orders service generated on first run.
func (m *mesh) webhookSecret(t testing.TB) []byte {
	t.Helper()
	path := filepath.Join(m.data, "keys", "payments-webhook.key")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("webhook secret: %v", err)
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("webhook secret %s is not base64: %v", path, err)
	}
	return k
}

// signWebhook is the X-Signature header of body at time ts.
func signWebhook(secret, body []byte, ts time.Time) string {
	t := strconv.FormatInt(ts.Unix(), 10)
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(t + "." + string(body)))
	return "t=" + t + ",v1=" + hex.EncodeToString(h.Sum(nil))
}

// webhookEvent is a payment.succeeded event body.
func webhookEvent(id, chargeID, orderID string, amount int64, currency string, created time.Time) []byte {
	b, _ := json.Marshal(map[string]any{
		"id": id, "type": "payment.succeeded", "created": created.Unix(),
		"data": map[string]any{"charge_id": chargeID, "order_id": orderID,
			"amount": map[string]any{"amount": amount, "currency": currency}},
	})
	return b
}
