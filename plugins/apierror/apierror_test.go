package apierror_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
