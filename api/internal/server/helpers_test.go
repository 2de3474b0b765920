package server_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go-micro.dev/v4/client"

	"github.com/marketmesh/marketmesh/api/internal/server"
	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/contracts/notificationsrpc"
	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/auth"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/rpcfake"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
)

// TestMain keeps the request log out of test output.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

// fakeBlobs stands in for the images service's HTTP endpoint: uploads get
// 201 with an image, reads get the bytes (304 when If-None-Match matches).
type fakeBlobs struct {
	mu       sync.Mutex
	uploaded []byte
	busy     bool // uploads answer 503 with Retry-After, as images does with its decode budget taken
}

func (f *fakeBlobs) Do(_ context.Context, _ string, r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	f.mu.Lock()
	busy := f.busy
	f.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && busy:
		rec.Header().Set("Retry-After", "5")
		rec.Header().Set("Content-Type", "application/json")
		rec.WriteHeader(http.StatusServiceUnavailable)
		_, _ = rec.WriteString(`{"error":{"code":"unavailable","message":"decode budget taken"}}`)
	case r.Method == http.MethodPost:
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.uploaded = b
		f.mu.Unlock()
		rec.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(rec).Encode(imagesrpc.Image{ID: "img-1", OwnerType: r.URL.Query().Get("owner_type"),
			OwnerID: r.URL.Query().Get("owner_id"), UploaderID: r.URL.Query().Get("uploader_id"), ContentType: "image/png", Bytes: int64(len(b))})
	case r.Header.Get("If-None-Match") == `"abc"`:
		rec.WriteHeader(http.StatusNotModified)
	default:
		rec.Header().Set("Content-Type", "image/png")
		rec.Header().Set("ETag", `"abc"`)
		_, _ = rec.WriteString("PNGBYTES")
	}
	return rec.Result(), nil
}

// keyedClient is the shared fake as the orders client reaches it: it also
// records the Idempotency-Key in each call's context, which rpcfake does not.
type keyedClient struct {
	*rpcfake.Client
	mu   sync.Mutex
	keys []keyedCall
}

type keyedCall struct{ endpoint, key string }

func (k *keyedClient) Call(ctx context.Context, req client.Request, rsp any, opts ...client.CallOption) error {
	k.mu.Lock()
	k.keys = append(k.keys, keyedCall{req.Endpoint(), rpcmeta.IdempotencyKey(ctx)})
	k.mu.Unlock()
	return k.Client.Call(ctx, req, rsp, opts...)
}

// idempotencyKeys returns the endpoint and key of every orders call so far.
func (k *keyedClient) idempotencyKeys() []keyedCall {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]keyedCall(nil), k.keys...)
}

// testAPI is a server over fake services.
type testAPI struct {
	api    *server.API
	h      http.Handler
	signer *auth.Signer
	key    ed25519.PrivateKey
	users  *rpcfake.Client // every contract's client shares this fake
	orders *keyedClient    // the same fake, seen by the orders client
	blobs  *fakeBlobs
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// testAdmin is the user newTestAPI grants the admin role at login.
const testAdmin = "01HADMIN"

// producers are the short names of the services with an outbox.
var producers = []string{"orders", "products", "publications", "users"}

// deadLetterClients returns the dead-letter admin client of every producing
// service, each over the fake that fake(name) returns.
func deadLetterClients(fake func(name string) client.Client) map[string]*events.AdminClient {
	out := map[string]*events.AdminClient{}
	for _, name := range producers {
		out[name] = events.NewAdminClient(fake(name), "marketmesh."+name)
	}
	return out
}

func newTestAPI(t *testing.T, opts ...func(*server.Options)) *testAPI {
	t.Helper()
	key := newKey(t)
	users := &rpcfake.Client{}
	orders := &keyedClient{Client: users}
	blobs := &fakeBlobs{}
	o := server.Options{
		Users:               usersrpc.NewClient(users),
		Products:            productsrpc.NewClient(users),
		Publications:        publicationsrpc.NewClient(users),
		Images:              imagesrpc.NewClient(users),
		Orders:              ordersrpc.NewClient(orders),
		Notifications:       notificationsrpc.NewClient(users),
		Events:              deadLetterClients(func(string) client.Client { return users }),
		Blobs:               blobs,
		Signer:              auth.NewSigner(key),
		Admins:              []string{testAdmin},
		LoginPerMinuteIP:    1000,
		LoginPerMinuteEmail: 1000,
		RegisterPerHourIP:   1000,
		Metrics:             prometheus.NewRegistry(),
	}
	for _, opt := range opts {
		opt(&o)
	}
	a := server.New(o)
	return &testAPI{api: a, h: a.Handler(), signer: o.Signer, key: key, users: users, orders: orders, blobs: blobs}
}

// token returns a valid bearer token for uid.
func (ta *testAPI) token(t *testing.T, uid string) string {
	t.Helper()
	tok, _, err := ta.signer.Issue(uid)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// adminToken returns a valid bearer token for testAdmin with the admin role.
func (ta *testAPI) adminToken(t *testing.T) string {
	t.Helper()
	tok, _, err := ta.signer.Issue(testAdmin, auth.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type req struct {
	method, path string
	body         string
	header       map[string]string // Content-Type defaults to application/json when there is a body
	rawHeader    http.Header       // set as is, after header: empty and repeated values
	bearer       string            // token for Authorization: Bearer
	remote       string            // RemoteAddr
}

func (ta *testAPI) do(t *testing.T, r req) *httptest.ResponseRecorder {
	t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	if r.body != "" {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.bearer != "" {
		hr.Header.Set("Authorization", "Bearer "+r.bearer)
	}
	for k, v := range r.header {
		if v == "" {
			hr.Header.Del(k)
		} else {
			hr.Header.Set(k, v)
		}
	}
	for k, vs := range r.rawHeader {
		hr.Header[k] = vs
	}
	if r.remote != "" {
		hr.RemoteAddr = r.remote
	}
	rec := httptest.NewRecorder()
	ta.h.ServeHTTP(rec, hr)
	return rec
}

// errorBody is the public error document; decoding is strict so that any
// extra or missing member is noticed.
type errorBody struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
		OrderID   string `json:"order_id"`
	} `json:"error"`
}

// wantError checks status, content type, the exact error shape and that
// request_id equals the X-Request-Id header; it returns the message.
func wantError(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) string {
	t.Helper()
	return wantOrderError(t, rec, status, code, "")
}

// wantOrderError is wantError for an error document that names the failed
// order orderID (none when "").
func wantOrderError(t *testing.T, rec *httptest.ResponseRecorder, status int, code, orderID string) string {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var raw map[string]map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatalf("body %q is not an error document: %v", rec.Body, err)
	}
	members := 3
	if orderID != "" {
		members = 4
	}
	if len(raw) != 1 || len(raw["error"]) != members {
		t.Errorf("body %s: want exactly {\"error\":{code,message,request_id}} (and order_id %q)", rec.Body, orderID)
	}
	var b errorBody
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		t.Fatalf("body %s: %v", rec.Body, err)
	}
	if b.Error.Code != code {
		t.Errorf("code = %q, want %q", b.Error.Code, code)
	}
	if b.Error.OrderID != orderID {
		t.Errorf("order_id = %q, want %q", b.Error.OrderID, orderID)
	}
	if b.Error.Message == "" {
		t.Error("message is empty")
	}
	id := rec.Header().Get("X-Request-Id")
	if id == "" || b.Error.RequestID != id {
		t.Errorf("request_id = %q, X-Request-Id = %q; want equal and non-empty", b.Error.RequestID, id)
	}
	return b.Error.Message
}
