package apierror_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/plugins/apierror"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
)

func TestStatus(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantMsg    string
	}{
		{"an apierror keeps its status and message", apierror.New(http.StatusTooManyRequests, "slow down"), 429, "slow down"},
		{"a wrapped apierror is found", fmt.Errorf("handler: %w", apierror.New(403, "not yours")), 403, "not yours"},
		{"a micro 404 keeps its message", merrors.NotFound("marketmesh.users", "user u1 not found"), 404, "user u1 not found"},
		{"a micro 409 keeps its message", merrors.Conflict("marketmesh.users", "email taken"), 409, "email taken"},
		{"a micro 422 keeps its message", merrors.New("marketmesh.orders", "quantity must be positive", 422), 422, "quantity must be positive"},
		{"a micro 4xx without detail gets the status text", merrors.New("x", "", 404), 404, "Not Found"},
		{"a wrapped micro error is found", fmt.Errorf("call: %w", merrors.BadRequest("x", "bad id")), 400, "bad id"},
		{"a micro 500 hides its detail", merrors.InternalServerError("marketmesh.users", "pq: relation users does not exist"), 500, "internal error"},
		{"a micro 502 becomes an opaque 500", merrors.New("x", "upstream said no", 502), 500, "internal error"},
		{"a micro 503 keeps its detail", merrors.New("marketmesh.users", "users is unavailable (circuit open)", 503), 503, "users is unavailable (circuit open)"},
		{"a micro 408 becomes 504", merrors.Timeout("go.micro.client", "context deadline exceeded"), 504, "the request took too long"},
		{"a deadline becomes 504", fmt.Errorf("store: %w", context.DeadlineExceeded), 504, "the request took too long"},
		{"a cancellation becomes 503", context.Canceled, 503, "the request was cancelled"},
		{"any other error is an opaque 500", errors.New("disk on fire"), 500, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, msg := apierror.Status(tt.err)
			if status != tt.wantStatus || msg != tt.wantMsg {
				t.Fatalf("Status(%v) = %d %q, want %d %q", tt.err, status, msg, tt.wantStatus, tt.wantMsg)
			}
		})
	}
}

func TestCode(t *testing.T) {
	tests := []struct {
		status int
		want   string
	}{
		{400, "bad_request"}, {401, "unauthenticated"}, {404, "not_found"}, {409, "conflict"},
		{422, "unprocessable_entity"}, {429, "rate_limited"}, {500, "internal"}, {503, "unavailable"},
		{504, "deadline_exceeded"}, {418, "bad_request"}, {599, "internal"},
	}
	for _, tt := range tests {
		if got := apierror.Code(tt.status); got != tt.want {
			t.Errorf("Code(%d) = %q, want %q", tt.status, got, tt.want)
		}
	}
}

func requestWithID(id string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v1/users/u1", nil)
	return r.WithContext(rpcmeta.WithRequestID(r.Context(), id))
}

func TestWriteStatusWritesTheErrorDocument(t *testing.T) {
	w := httptest.NewRecorder()
	apierror.WriteStatus(w, requestWithID("req-123"), http.StatusNotFound, `user "u1" not found`)

	if w.Code != http.StatusNotFound {
		t.Fatalf("status %d, want 404", w.Code)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	want := `{"error":{"code":"not_found","message":"user \"u1\" not found","request_id":"req-123"}}` + "\n"
	if got := w.Body.String(); got != want {
		t.Fatalf("body\n got %s\nwant %s", got, want)
	}
}

func TestWriteStatusWithoutRequestIDWritesAnEmptyOne(t *testing.T) {
	w := httptest.NewRecorder()
	apierror.WriteStatus(w, httptest.NewRequest(http.MethodGet, "/", nil), 400, "bad")
	want := `{"error":{"code":"bad_request","message":"bad","request_id":""}}` + "\n"
	if got := w.Body.String(); got != want {
		t.Fatalf("body %s, want %s", got, want)
	}
}

func TestWriteHidesInternalDetails(t *testing.T) {
	w := httptest.NewRecorder()
	apierror.Write(w, requestWithID("req-9"), merrors.InternalServerError("marketmesh.users", "secret table name"))
	if w.Code != 500 {
		t.Fatalf("status %d, want 500", w.Code)
	}
	if strings.Contains(w.Body.String(), "secret") {
		t.Fatalf("the body leaks the detail: %s", w.Body)
	}
	want := `{"error":{"code":"internal","message":"internal error","request_id":"req-9"}}` + "\n"
	if got := w.Body.String(); got != want {
		t.Fatalf("body %s, want %s", got, want)
	}
}

func TestDescribeKeepsMachineCodes(t *testing.T) {
	apierror.RegisterCode("test_only_code")
	tests := []struct {
		name       string
		err        error
		wantStatus int
		want       apierror.Detail
	}{
		{"an apierror with a code keeps it and its order", &apierror.Error{Status: 402, Code: "payment_declined", Message: "card declined", OrderID: "o1"},
			402, apierror.Detail{Code: "payment_declined", Message: "card declined", OrderID: "o1"}},
		{"a wrapped apierror with a code is found", fmt.Errorf("x: %w", &apierror.Error{Status: 409, Code: "out_of_stock", Message: "gone"}),
			409, apierror.Detail{Code: "out_of_stock", Message: "gone"}},
		{"an apierror without a code gets the status's", apierror.New(404, "nope"), 404, apierror.Detail{Code: "not_found", Message: "nope"}},
		{"a 5xx apierror with a code keeps it", &apierror.Error{Status: 502, Code: "payment_error", Message: "provider down", OrderID: "o2"},
			502, apierror.Detail{Code: "payment_error", Message: "provider down", OrderID: "o2"}},
		{"a micro 422 named idempotency_key_reused keeps its code", merrors.New(apierror.CodeIdempotencyKeyReused, "the key was used with another request", 422),
			422, apierror.Detail{Code: "idempotency_key_reused", Message: "the key was used with another request"}},
		{"a micro 409 named request_in_progress keeps its code", merrors.New(apierror.CodeRequestInProgress, "still running", 409),
			409, apierror.Detail{Code: "request_in_progress", Message: "still running"}},
		{"a registered code is kept", merrors.New("test_only_code", "m", 400), 400, apierror.Detail{Code: "test_only_code", Message: "m"}},
		{"a micro 4xx named by its service gets the status's code", merrors.Conflict("marketmesh.orders", "busy"), 409, apierror.Detail{Code: "conflict", Message: "busy"}},
		{"an unregistered id is not a code", merrors.New("made_up", "m", 422), 422, apierror.Detail{Code: "unprocessable_entity", Message: "m"}},
		{"a registered code on a 500 stays hidden", merrors.New(apierror.CodeRequestInProgress, "secret", 500), 500, apierror.Detail{Code: "internal", Message: "internal error"}},
		{"a registered code on a 503 is the status's", merrors.New(apierror.CodeRequestInProgress, "orders is unavailable", 503), 503, apierror.Detail{Code: "unavailable", Message: "orders is unavailable"}},
		{"a deadline", context.DeadlineExceeded, 504, apierror.Detail{Code: "deadline_exceeded", Message: "the request took too long"}},
		{"anything else", errors.New("boom"), 500, apierror.Detail{Code: "internal", Message: "internal error"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, d := apierror.Describe(tt.err)
			if status != tt.wantStatus || d != tt.want {
				t.Fatalf("Describe(%v) = %d %+v, want %d %+v", tt.err, status, d, tt.wantStatus, tt.want)
			}
			if s, msg := apierror.Status(tt.err); s != status || msg != d.Message {
				t.Errorf("Status = %d %q, Describe = %d %q", s, msg, status, d.Message)
			}
		})
	}
}

func TestWriteCarriesCodeAndOrderID(t *testing.T) {
	w := httptest.NewRecorder()
	apierror.Write(w, requestWithID("req-7"), &apierror.Error{Status: 402, Code: "payment_declined", Message: "the card was declined", OrderID: "01HORDER"})
	if w.Code != 402 {
		t.Fatalf("status %d, want 402", w.Code)
	}
	want := `{"error":{"code":"payment_declined","message":"the card was declined","request_id":"req-7","order_id":"01HORDER"}}` + "\n"
	if got := w.Body.String(); got != want {
		t.Fatalf("body\n got %s\nwant %s", got, want)
	}
}

func TestWriteKeepsARegisteredMicroCode(t *testing.T) {
	w := httptest.NewRecorder()
	apierror.Write(w, requestWithID("req-8"), fmt.Errorf("call: %w", merrors.New(apierror.CodeIdempotencyKeyReused, "Idempotency-Key was used with another request", 422)))
	want := `{"error":{"code":"idempotency_key_reused","message":"Idempotency-Key was used with another request","request_id":"req-8"}}` + "\n"
	if w.Code != 422 || w.Body.String() != want {
		t.Fatalf("%d %s, want 422 %s", w.Code, w.Body, want)
	}
}

func TestMessagesAreClippedAndValidUTF8(t *testing.T) {
	long := strings.Repeat("é", 1000) // 2000 bytes
	got := apierror.Clip(long)
	if len(got) > apierror.MaxMessage || !utf8.ValidString(got) || !strings.HasSuffix(got, "...") {
		t.Fatalf("Clip: %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
	if got := apierror.Clip("ab\xffcd"); got != "ab?cd" {
		t.Fatalf("invalid UTF-8: %q", got)
	}
	rec := httptest.NewRecorder()
	apierror.WriteStatus(rec, httptest.NewRequest("GET", "/", nil), 400, "unknown field "+strings.Repeat("\xff", 50000))
	if rec.Body.Len() > 2*apierror.MaxMessage {
		t.Fatalf("an error document of %d bytes", rec.Body.Len())
	}
}

// A 503 says when to retry: a service's own 503 (users out of password
// hashing slots) and the client stack's alike; a Retry-After already set
// (images' decode budget) stays; other statuses get none.
func TestA503CarriesRetryAfter(t *testing.T) {
	w := httptest.NewRecorder()
	apierror.Write(w, requestWithID("req-1"), merrors.New("marketmesh.users", "users is busy: too many password checks at once; retry in a second", 503))
	if w.Code != 503 || w.Header().Get("Retry-After") != apierror.RetryAfterUnavailable {
		t.Fatalf("busy users: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	if !strings.Contains(w.Body.String(), `"code":"unavailable"`) || !strings.Contains(w.Body.String(), "busy") {
		t.Fatalf("body %s", w.Body)
	}
	w = httptest.NewRecorder()
	w.Header().Set("Retry-After", "5")
	apierror.WriteStatus(w, requestWithID("req-2"), 503, "images is busy")
	if got := w.Header().Get("Retry-After"); got != "5" {
		t.Fatalf("Retry-After %q, want the caller's 5", got)
	}
	w = httptest.NewRecorder()
	apierror.Write(w, requestWithID("req-3"), merrors.InternalServerError("marketmesh.users", "x"))
	if got := w.Header().Get("Retry-After"); got != "" {
		t.Fatalf("a 500 carries Retry-After %q", got)
	}
}
