package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/api/internal/server"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
)

func TestUsersServiceErrorsKeepTheirStatus(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		status  int
		code    string
		message string // exact public message
	}{
		{"a conflict is 409 with its detail", merrors.Conflict(usersrpc.Service, "email is already registered"), 409, "conflict", "email is already registered"},
		{"a validation failure is 422 with its detail", merrors.New(usersrpc.Service, "password must be at least 8 characters", 422), 422, "unprocessable_entity", "password must be at least 8 characters"},
		{"not found is 404 with its detail", merrors.NotFound(usersrpc.Service, "user 01HX not found"), 404, "not_found", "user 01HX not found"},
		{"a bad page token is 400", merrors.BadRequest(usersrpc.Service, "page_token is not valid"), 400, "bad_request", "page_token is not valid"},
		{"an RPC timeout is 504", merrors.Timeout(usersrpc.Service, "call timed out"), 504, "deadline_exceeded", "the request took too long"},
		{"an unavailable service is 503", merrors.New(usersrpc.Service, "users is unavailable", 503), 503, "unavailable", "users is unavailable"},
		{"a 500 hides its detail", merrors.InternalServerError(usersrpc.Service, "bolt: database file /var/lib/users.db corrupt"), 500, "internal", "internal error"},
		{"a plain error is 500 without its text", errors.New("dial tcp 10.0.0.7:9000: refused"), 500, "internal", "internal error"},
		{"a cancelled call is 503", context.Canceled, 503, "unavailable", "the request was cancelled"},
		{"a deadline is 504", context.DeadlineExceeded, 504, "deadline_exceeded", "the request took too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ta := newTestAPI(t)
			ta.users.Answer = func(string, any) (any, error) { return nil, tt.err }
			rec := ta.do(t, req{method: "GET", path: "/v1/users/01HX"})
			if msg := wantError(t, rec, tt.status, tt.code); msg != tt.message {
				t.Errorf("message = %q, want %q", msg, tt.message)
			}
		})
	}
}

func TestAPanicIsA500InTheErrorShape(t *testing.T) {
	// No users client: a route that needs one panics, and the recoverer answers.
	ta := newTestAPI(t, func(o *server.Options) { o.Users = nil })
	rec := ta.do(t, req{method: "GET", path: "/v1/users/01HX"})
	if msg := wantError(t, rec, 500, "internal"); msg != "internal error" {
		t.Errorf("message = %q", msg)
	}
	// The server keeps serving.
	if rec := ta.do(t, req{method: "GET", path: "/healthz"}); rec.Code != 200 {
		t.Errorf("healthz after a panic = %d", rec.Code)
	}
}

func TestHealthIsPublicAndReadinessAndMetricsAreNot(t *testing.T) {
	ta := newTestAPI(t, func(o *server.Options) { o.InstanceID = "node-1" })
	tests := []struct {
		name, path string
		status     int
		body       string
	}{
		{"healthz is ok", "/healthz", 200, "ok"},
		{"healthz for this instance is ok", "/healthz?instance=node-1", 200, "ok"},
		{"healthz for a predecessor instance is 503", "/healthz?instance=node-0", 503, "stale instance"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := ta.do(t, req{method: "GET", path: tt.path})
			var body struct{ Status string }
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tt.status || body.Status != tt.body {
				t.Errorf("got %d %q, want %d %q", rec.Code, body.Status, tt.status, tt.body)
			}
			if n := len(ta.users.Calls()); n != 0 {
				t.Errorf("healthz made %d calls: it must stay cheap", n)
			}
		})
	}
	// The ops listener (api/internal/ops) serves these; the public port does not.
	for _, p := range []string{"/readyz", "/metrics", "/debug/pprof/"} {
		t.Run(p+" is not on the public port", func(t *testing.T) {
			wantError(t, ta.do(t, req{method: "GET", path: p}), 404, "not_found")
		})
	}
}
