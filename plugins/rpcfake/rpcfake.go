// Package rpcfake gives tests a go-micro client that talks to no service: it
// records every call and answers from a function, so that the typed RPC
// clients (usersrpc.NewClient and the like) and the code above them can be
// tested without a mesh. It also holds the assertions those tests share.
//
// It is an ordinary package, not a _test file, so that the tests of every
// module can import it; nothing outside tests should.
package rpcfake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"go-micro.dev/v4/client"
	"go-micro.dev/v4/codec"
	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
)

// Call is one call a Client received.
type Call struct {
	Service, Endpoint string // "marketmesh.users", "Users.Me"
	Caller, RequestID string // rpcmeta.Caller and rpcmeta.RequestID of the call's context
	Req, Rsp          any    // the request body and the response the caller passed
}

// Client is a go-micro client.Client that records calls. Without Answer every
// call succeeds and leaves the response untouched; with it, a call returns
// Answer's error, or copies Answer's non-nil result into the response through
// JSON, as the wire would. Only NewRequest and Call are implemented: anything
// else panics. The zero value is ready to use and safe for concurrent calls;
// set Answer before the calls it is to answer.
type Client struct {
	client.Client // nil: only NewRequest and Call are implemented

	// Answer, if set, answers each call from its endpoint and request body.
	Answer func(endpoint string, req any) (any, error)

	mu    sync.Mutex
	calls []Call
}

// request is the client.Request that NewRequest returns.
type request struct {
	service, endpoint string
	body              any
}

func (r request) Service() string     { return r.service }
func (r request) Method() string      { return r.endpoint }
func (r request) Endpoint() string    { return r.endpoint }
func (r request) ContentType() string { return "application/json" }
func (r request) Body() any           { return r.body }
func (r request) Codec() codec.Writer { return nil }
func (r request) Stream() bool        { return false }

// NewRequest implements client.Client.
func (c *Client) NewRequest(service, endpoint string, req any, _ ...client.RequestOption) client.Request {
	return request{service: service, endpoint: endpoint, body: req}
}

// Call implements client.Client: it records the call, then answers it.
func (c *Client) Call(ctx context.Context, req client.Request, rsp any, _ ...client.CallOption) error {
	c.mu.Lock()
	c.calls = append(c.calls, Call{
		Service: req.Service(), Endpoint: req.Endpoint(),
		Caller: rpcmeta.Caller(ctx), RequestID: rpcmeta.RequestID(ctx),
		Req: req.Body(), Rsp: rsp,
	})
	answer := c.Answer
	c.mu.Unlock()
	if answer == nil {
		return nil
	}
	res, err := answer(req.Endpoint(), req.Body())
	if err != nil || res == nil {
		return err
	}
	raw, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, rsp)
}

// Calls returns a copy of the calls received so far, oldest first.
func (c *Client) Calls() []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// Reset forgets the calls received so far; Answer stays.
func (c *Client) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = nil
}

// CheckContract checks that a typed client and its service's handler agree.
// calls names each client method and calls it on a typed client built over c;
// each must make exactly one call, to service, at an endpoint prefix+Method
// (prefix is e.g. "Users.") where Method is a method of handler (e.g.
// &handler.Users{}) of the go-micro shape func(ctx, req *Req, rsp *Rsp) error
// whose request and response types are the ones the client sent. Each client
// method is a subtest "Client.<name> reaches a handler method"; c is Reset
// before each.
func CheckContract(t *testing.T, service, prefix string, handler any, c *Client, calls map[string]func() error) {
	t.Helper()
	h := reflect.TypeOf(handler)
	for _, name := range slices.Sorted(maps.Keys(calls)) {
		t.Run("Client."+name+" reaches a handler method", func(t *testing.T) {
			c.Reset()
			if err := calls[name](); err != nil {
				t.Fatal(err)
			}
			for _, p := range contractProblems(service, prefix, h, c.Calls()) {
				t.Error(p)
			}
		})
	}
}

// contractProblems is CheckContract's verdict on the calls one client method
// made: nothing when they are right. It stops at the first problem that makes
// the rest meaningless.
func contractProblems(service, prefix string, h reflect.Type, calls []Call) []string {
	if len(calls) != 1 {
		return []string{fmt.Sprintf("%d calls, want 1", len(calls))}
	}
	got := calls[0]
	var problems []string
	if got.Service != service {
		problems = append(problems, fmt.Sprintf("service = %q, want %q", got.Service, service))
	}
	method, ok := strings.CutPrefix(got.Endpoint, prefix)
	if !ok {
		return append(problems, fmt.Sprintf("endpoint %q does not start with %s", got.Endpoint, prefix))
	}
	m, ok := h.MethodByName(method)
	if !ok {
		return append(problems, fmt.Sprintf("endpoint %q: the handler has no method %s", got.Endpoint, method))
	}
	// func(h *Handler, ctx, req *Req, rsp *Rsp) error
	if m.Type.NumIn() != 4 {
		return append(problems, fmt.Sprintf("handler method %s has %d inputs", method, m.Type.NumIn()))
	}
	if want, have := m.Type.In(2), reflect.TypeOf(got.Req); want != have {
		problems = append(problems, fmt.Sprintf("request type %v, the handler takes %v", have, want))
	}
	if want, have := m.Type.In(3), reflect.TypeOf(got.Rsp); want != have {
		problems = append(problems, fmt.Sprintf("response type %v, the handler takes %v", have, want))
	}
	return problems
}

// RequireCode fails the test at once unless err is a go-micro error with
// code, and reports an error unless its id is service (the name of the
// service whose handler answered). It returns the error.
func RequireCode(t testing.TB, err error, service string, code int32) *merrors.Error {
	t.Helper()
	var me *merrors.Error
	if !errors.As(err, &me) {
		t.Fatalf("err = %v (%T), want a go-micro error with code %d", err, err, code)
	}
	if me.Code != code {
		t.Fatalf("code = %d (%q), want %d", me.Code, me.Detail, code)
	}
	if me.Id != service {
		t.Errorf("error id = %q, want %q", me.Id, service)
	}
	return me
}
