package rpcfake

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
)

// echo is a handler of the go-micro shape, and echoClient its typed client.
type echo struct{}

type echoReq struct{ Text string }
type echoRsp struct{ Text string }

func (*echo) Say(context.Context, *echoReq, *echoRsp) error { return nil }
func (*echo) Odd(context.Context, *echoReq) error           { return nil }

type echoClient struct{ c *Client }

func (e echoClient) call(ctx context.Context, endpoint string, req, rsp any) error {
	return e.c.Call(ctx, e.c.NewRequest("test.echo", endpoint, req), rsp)
}

func (e echoClient) Say(ctx context.Context, text string) (echoRsp, error) {
	var rsp echoRsp
	err := e.call(ctx, "Echo.Say", &echoReq{Text: text}, &rsp)
	return rsp, err
}

func TestCallRecordsAndAnswers(t *testing.T) {
	c := &Client{}
	ctx := rpcmeta.WithRequestID(rpcmeta.WithCaller(context.Background(), "u1"), "req-1")
	e := echoClient{c}

	rsp, err := e.Say(ctx, "hi")
	if err != nil || rsp.Text != "" {
		t.Fatalf("without Answer: %+v, %v; want a zero answer", rsp, err)
	}
	calls := c.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d calls, want 1", len(calls))
	}
	got := calls[0]
	if got.Service != "test.echo" || got.Endpoint != "Echo.Say" || got.Caller != "u1" || got.RequestID != "req-1" {
		t.Errorf("recorded %+v", got)
	}
	if r, _ := got.Req.(*echoReq); r == nil || r.Text != "hi" {
		t.Errorf("request %#v", got.Req)
	}
	if _, ok := got.Rsp.(*echoRsp); !ok {
		t.Errorf("response %T, want *echoRsp", got.Rsp)
	}

	c.Answer = func(endpoint string, req any) (any, error) {
		return map[string]string{"Text": endpoint + " " + req.(*echoReq).Text}, nil
	}
	if rsp, err := e.Say(ctx, "there"); err != nil || rsp.Text != "Echo.Say there" {
		t.Errorf("answered %+v, %v; want the answer copied into the response", rsp, err)
	}
	boom := errors.New("boom")
	c.Answer = func(string, any) (any, error) { return echoRsp{Text: "ignored"}, boom }
	if rsp, err := e.Say(ctx, "x"); !errors.Is(err, boom) || rsp.Text != "" {
		t.Errorf("answered %+v, %v; want only the error", rsp, err)
	}
	c.Answer = func(string, any) (any, error) { return func() {}, nil }
	if _, err := e.Say(ctx, "x"); err == nil {
		t.Error("an answer JSON cannot encode did not fail the call")
	}
	if n := len(c.Calls()); n != 4 {
		t.Errorf("%d calls, want 4", n)
	}
	calls[0].Endpoint = "changed"
	if c.Calls()[0].Endpoint != "Echo.Say" {
		t.Error("Calls returned the client's own slice")
	}
	c.Reset()
	if n := len(c.Calls()); n != 0 {
		t.Errorf("%d calls after Reset", n)
	}
}

func TestConcurrentCalls(t *testing.T) {
	c := &Client{Answer: func(string, any) (any, error) { return echoRsp{Text: "ok"}, nil }}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if rsp, err := (echoClient{c}).Say(context.Background(), fmt.Sprint(i)); err != nil || rsp.Text != "ok" {
				t.Errorf("call %d: %+v, %v", i, rsp, err)
			}
			_ = c.Calls()
		})
	}
	wg.Wait()
	if n := len(c.Calls()); n != 20 {
		t.Errorf("%d calls, want 20", n)
	}
}

func TestCheckContractPassesAMatchingClient(t *testing.T) {
	c := &Client{}
	e := echoClient{c}
	CheckContract(t, "test.echo", "Echo.", &echo{}, c, map[string]func() error{
		"Say": func() error { _, err := e.Say(context.Background(), "hi"); return err },
	})
}

func TestContractProblems(t *testing.T) {
	h := reflect.TypeOf(&echo{})
	say := func(service, endpoint string, req, rsp any) Call {
		return Call{Service: service, Endpoint: endpoint, Req: req, Rsp: rsp}
	}
	good := say("test.echo", "Echo.Say", &echoReq{}, &echoRsp{})
	tests := []struct {
		name  string
		calls []Call
		want  []string // one substring per problem, in order
	}{
		{"a matching call", []Call{good}, nil},
		{"no call", nil, []string{"0 calls, want 1"}},
		{"two calls", []Call{good, good}, []string{"2 calls, want 1"}},
		{"another service", []Call{say("test.other", "Echo.Say", &echoReq{}, &echoRsp{})}, []string{`service = "test.other", want "test.echo"`}},
		{"another prefix", []Call{say("test.echo", "Other.Say", &echoReq{}, &echoRsp{})}, []string{"does not start with Echo."}},
		{"a method the handler lacks", []Call{say("test.echo", "Echo.Shout", &echoReq{}, &echoRsp{})}, []string{"the handler has no method Shout"}},
		{"a handler method of another shape", []Call{say("test.echo", "Echo.Odd", &echoReq{}, &echoRsp{})}, []string{"has 3 inputs"}},
		{"another request type", []Call{say("test.echo", "Echo.Say", echoReq{}, &echoRsp{})}, []string{"request type rpcfake.echoReq"}},
		{"another response type", []Call{say("test.echo", "Echo.Say", &echoReq{}, &echoReq{})}, []string{"response type *rpcfake.echoReq"}},
		{"every problem at once", []Call{say("x", "Echo.Say", 1, nil)}, []string{"service", "request type int", "response type <nil>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := contractProblems("test.echo", "Echo.", h, tt.calls)
			if len(got) != len(tt.want) {
				t.Fatalf("problems %q, want %d matching %q", got, len(tt.want), tt.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("problem %q does not say %q", got[i], tt.want[i])
				}
			}
		})
	}
}

// recordingTB records failures; Fatalf ends the goroutine as testing's does.
type recordingTB struct {
	testing.TB
	fatal  string
	errors []string
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recordingTB) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestRequireCode(t *testing.T) {
	tests := []struct {
		name        string
		err         error
		fatal, errs string // substrings; "" for none
	}{
		{"the code from the service", merrors.NotFound("test.echo", "no such thing"), "", ""},
		{"no error", nil, "want a go-micro error with code 404", ""},
		{"a plain error", errors.New("plain"), "want a go-micro error with code 404", ""},
		{"another code", merrors.BadRequest("test.echo", "bad"), `code = 400 ("bad"), want 404`, ""},
		{"another service", merrors.NotFound("test.other", "gone"), "", `error id = "test.other", want "test.echo"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recordingTB{TB: t}
			var me *merrors.Error
			done := make(chan struct{})
			go func() {
				defer close(done)
				me = RequireCode(r, tt.err, "test.echo", 404)
			}()
			<-done
			if (r.fatal == "") != (tt.fatal == "") || !strings.Contains(r.fatal, tt.fatal) {
				t.Errorf("fatal %q, want %q", r.fatal, tt.fatal)
			}
			if got := strings.Join(r.errors, "; "); (got == "") != (tt.errs == "") || !strings.Contains(got, tt.errs) {
				t.Errorf("errors %q, want %q", got, tt.errs)
			}
			if tt.fatal == "" && (me == nil || me.Code != 404) {
				t.Errorf("returned %v, want the 404", me)
			}
		})
	}
}
