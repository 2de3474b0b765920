package rpcclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"go-micro.dev/v4/client"
	mbytes "go-micro.dev/v4/codec/bytes"
	merrors "go-micro.dev/v4/errors"
	"go-micro.dev/v4/metadata"
	"go-micro.dev/v4/registry"
	"go-micro.dev/v4/selector"
	pnet "go-micro.dev/v4/util/net"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	gmetadata "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The stack makes its calls itself (call, invoke) instead of through the
// go-micro gRPC client's Call, with the same steps, options, wire format
// (headers, codec, method names), connection pool rules (pool) and errors,
// but in the calling goroutine: that client runs every attempt in a
// goroutine of its own and every gRPC invocation in another (two goroutines,
// their stacks grown and copied, per call), and builds a TLS credential, a
// codec table, a dial context and its dial options on every call even when
// a pooled connection serves it. That was a fifth of the api's CPU per
// GET /v1/users/me. The go-micro client still provides the options
// (selector, call options, pool size), NewRequest, streams and publishing;
// calls it was not set up for by New (another content type, a protobuf
// message) still go through it. Not carried over, as New never sets them:
// grpcclient.Codec, MaxRecvMsgSize/MaxSendMsgSize, PoolMaxStreams/PoolMaxIdle,
// CallOptions and UseNumber (go-micro's defaults are used).

// jsonContentType is the content type New sets; its codec is jsonCodec.
const jsonContentType = "application/json"

// grpcTransport is what invoke needs to dial: what New gave the go-micro
// client (grpcclient.AuthTLS, grpcclient.DialOptions).
type grpcTransport struct {
	tls      *tls.Config       // nil: plain text (tests of the stack only)
	dialOpts []grpc.DialOption // appended to every dial, as grpcclient.DialOptions
	pool     *pool

	// secure caches secureOption's answer per address.
	secure sync.Map // address -> grpc.DialOption
}

// The go-micro gRPC client's defaults, which New does not change.
const (
	defaultMaxRecvMsgSize = 1024 * 1024 * 4
	defaultMaxSendMsgSize = 1024 * 1024 * 4
)

// secureOption is the go-micro gRPC client's choice of transport security
// for a new connection to addr: the configured TLS, else TLS for
// "https://" addresses, port 443 or no port, else plain text.
func (t *grpcTransport) secureOption(addr string) grpc.DialOption {
	if o, ok := t.secure.Load(addr); ok {
		return o.(grpc.DialOption)
	}
	var o grpc.DialOption
	if t.tls != nil {
		o = grpc.WithTransportCredentials(credentials.NewTLS(t.tls))
	} else {
		defaultCreds := grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{}))
		_, port, err := net.SplitHostPort(addr)
		switch {
		case strings.HasPrefix(addr, "https://"), port == "443",
			err != nil && strings.Contains(err.Error(), "missing port in address"):
			o = defaultCreds
		default:
			o = grpc.WithInsecure() //nolint:staticcheck // as go-micro: tests of the stack dial plain text
		}
	}
	t.secure.Store(addr, o)
	return o
}

// viaGoMicro reports whether a call must take the go-micro client's own
// path: a content type other than New's, or a protobuf message (go-micro's
// JSON codec encodes those with protojson).
func viaGoMicro(req client.Request, rsp any) bool {
	return req.ContentType() != jsonContentType || isProto(req.Body()) || isProto(rsp)
}

var protoTypes sync.Map // reflect.Type -> bool

// isProto reports whether v is a protobuf message (has ProtoReflect).
func isProto(v any) bool {
	if v == nil {
		return false
	}
	t := reflect.TypeOf(v)
	if p, ok := protoTypes.Load(t); ok {
		return p.(bool)
	}
	_, p := t.MethodByName("ProtoReflect")
	protoTypes.Store(t, p)
	return p
}

// call is the go-micro gRPC client's Call (plugins/v4/client/grpc v1.2.1)
// with every attempt made in the calling goroutine: options, node
// selection, the request deadline, call wrappers, backoff, retries and the
// errors of each step are the same.
func (s *stack) call(ctx context.Context, req client.Request, rsp interface{}, opts ...client.CallOption) error {
	if req == nil {
		return merrors.InternalServerError("go.micro.client", "req is nil")
	} else if rsp == nil {
		return merrors.InternalServerError("go.micro.client", "rsp is nil")
	}
	gopts := s.Client.Options()
	callOpts := gopts.CallOptions
	for _, opt := range opts {
		opt(&callOpts)
	}

	next, err := nextNode(gopts.Selector, req, callOpts)
	if err != nil {
		return err
	}

	if d, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, callOpts.RequestTimeout)
		defer cancel()
	} else {
		// the timeout passed along is what is left of the deadline
		client.WithRequestTimeout(time.Until(d))(&callOpts)
	}
	if ctx.Err() != nil {
		return timeoutError(ctx)
	}

	gcall := s.invoke
	for i := len(callOpts.CallWrappers); i > 0; i-- {
		gcall = callOpts.CallWrappers[i-1](gcall)
	}

	attempt := func(i int) error {
		// backoff first: someone may want an initial start delay
		t, err := callOpts.Backoff(ctx, req, i)
		if err != nil {
			return internalError(err.Error())
		}
		if t.Seconds() > 0 {
			timer := time.NewTimer(t)
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				return timeoutError(ctx)
			}
		}
		node, err := next()
		service := req.Service()
		if err != nil {
			if err == selector.ErrNotFound {
				return merrors.InternalServerError("go.micro.client", "service %s: %s", service, err.Error())
			}
			return merrors.InternalServerError("go.micro.client", "error selecting %s node: %s", service, err.Error())
		}
		err = gcall(ctx, node, req, rsp, callOpts)
		gopts.Selector.Mark(service, node, err)
		return err
	}

	var gerr error
	for i := 0; i <= callOpts.Retries; i++ {
		err := attempt(i)
		if err == nil {
			return nil
		}
		// go-micro answered as soon as the call's context ended, whatever
		// the attempt then returned.
		if ctx.Err() != nil {
			return timeoutError(ctx)
		}
		retry, rerr := callOpts.Retry(ctx, req, i, err)
		if rerr != nil {
			return rerr
		}
		if !retry {
			return err
		}
		gerr = err
	}
	return gerr
}

// internalError is merrors.InternalServerError("go.micro.client", detail)
// as the go-micro gRPC client calls it, with detail as the format (so a "%"
// in it comes out as it did).
func internalError(detail string) error {
	return &merrors.Error{Id: "go.micro.client", Code: 500, Detail: formatDetail(detail), Status: http.StatusText(500)}
}

// formatDetail formats a detail that go-micro passed as a format string.
var formatDetail = fmt.Sprintf

// timeoutError is go-micro's error for a call whose context ended.
func timeoutError(ctx context.Context) error {
	return merrors.New("go.micro.client", fmt.Sprintf("%v", ctx.Err()), 408)
}

// nextNode is the go-micro gRPC client's node source for a call: a
// proxy's or the call's own address, else the selector's choice.
func nextNode(sel selector.Selector, req client.Request, opts client.CallOptions) (selector.Next, error) {
	service, address, _ := pnet.Proxy(req.Service(), opts.Address)
	if len(address) > 0 {
		return func() (*registry.Node, error) {
			return &registry.Node{Address: address[0]}, nil
		}, nil
	}
	next, err := sel.Select(service, opts.SelectOptions...)
	if err != nil {
		if err == selector.ErrNotFound {
			return nil, merrors.InternalServerError("go.micro.client", "service %s: %s", service, err.Error())
		}
		return nil, merrors.InternalServerError("go.micro.client", "error selecting %s node: %s", service, err.Error())
	}
	return next, nil
}

// invoke is one attempt on node: the go-micro gRPC client's call (a
// client.CallFunc, under the call wrappers) made in the calling goroutine.
// The request carries the context's go-micro metadata (lower-cased keys),
// the time left in "timeout" (nanoseconds) and the content type in
// "x-content-type"; the connection comes from the pool and goes back to it
// with the attempt's error.
func (s *stack) invoke(ctx context.Context, node *registry.Node, req client.Request, rsp interface{}, opts client.CallOptions) (grr error) {
	address := node.Address

	var header map[string]string
	if md, ok := metadata.FromContext(ctx); ok {
		header = make(map[string]string, len(md)+2)
		for k, v := range md {
			header[strings.ToLower(k)] = v
		}
	} else {
		header = make(map[string]string, 2)
	}
	header["timeout"] = strconv.FormatInt(int64(opts.RequestTimeout), 10)
	header["x-content-type"] = req.ContentType()
	ctx = gmetadata.NewOutgoingContext(ctx, gmetadata.New(header))

	t := s.transport
	cc, err := t.pool.getConn(address, func() (*grpc.ClientConn, error) {
		dialCtx, cancel := dialContext(ctx, opts.DialTimeout)
		defer cancel()
		dialOpts := append([]grpc.DialOption{
			t.secureOption(address),
			grpc.WithDefaultCallOptions(
				grpc.MaxCallRecvMsgSize(defaultMaxRecvMsgSize),
				grpc.MaxCallSendMsgSize(defaultMaxSendMsgSize),
			),
		}, t.dialOpts...)
		return grpc.DialContext(dialCtx, address, dialOpts...) //nolint:staticcheck // as go-micro: a non-blocking dial
	})
	if err != nil {
		return internalError(fmt.Sprintf("Error sending request: %v", err))
	}
	defer func() { t.pool.release(cc, grr) }()

	err = microError(cc.Invoke(ctx, grpcMethod(req.Service(), req.Endpoint()), req.Body(), rsp,
		grpc.ForceCodec(jsonCodec{}), grpc.CallContentSubtype(jsonCodec{}.Name())))
	if err != nil && ctx.Err() != nil {
		// go-micro stopped waiting for the invocation when the context ended.
		return merrors.Timeout("go.micro.client", "%v", ctx.Err())
	}
	return err
}

// grpcMethods caches grpcMethod's answers: a process calls few endpoints.
var grpcMethods sync.Map // [2]string{service, endpoint} -> string

// grpcMethod is the gRPC method of an endpoint ("Users.Me" of
// "marketmesh.users" is "/marketmesh.users.Users/Me"), as go-micro names it.
func grpcMethod(service, endpoint string) string {
	key := [2]string{service, endpoint}
	if m, ok := grpcMethods.Load(key); ok {
		return m.(string)
	}
	m := methodToGRPC(service, endpoint)
	grpcMethods.Store(key, m)
	return m
}

func methodToGRPC(service, method string) string {
	// no method or already grpc method
	if len(method) == 0 || method[0] == '/' {
		return method
	}
	// assume method is Foo.Bar
	mParts := strings.Split(method, ".")
	if len(mParts) != 2 {
		return method
	}
	if len(service) == 0 {
		return fmt.Sprintf("/%s/%s", mParts[0], mParts[1])
	}
	// return /pkg.Foo/Bar
	return fmt.Sprintf("/%s.%s/%s", service, mParts[0], mParts[1])
}

// microError turns a gRPC error into the go-micro error it carries, as the
// go-micro gRPC client does.
func microError(err error) error {
	if err == nil {
		return nil
	}
	if verr, ok := err.(*merrors.Error); ok {
		return verr
	}
	// grpc error
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	// return first error from details
	if details := s.Details(); len(details) > 0 {
		return microError(details[0].(error))
	}
	// try to decode micro *errors.Error
	if e := merrors.Parse(s.Message()); e.Code > 0 {
		return e // actually a micro error
	}
	// fallback
	return merrors.New("go.micro.client", s.Message(), microStatusFromGrpcCode(s.Code()))
}

func microStatusFromGrpcCode(code codes.Code) int32 {
	switch code {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusRequestTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.FailedPrecondition:
		return http.StatusPreconditionFailed
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Internal:
		return http.StatusInternalServerError
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// jsonCodec is the go-micro gRPC client's codec for application/json (its
// wrapCodec around its jsonCodec) for plain Go values: a *bytes.Frame is
// passed as it is, anything else is encoding/json's (viaGoMicro keeps
// protobuf messages, which it encodes with protojson, away from it).
type jsonCodec struct{}

func (jsonCodec) Marshal(v interface{}) ([]byte, error) {
	if f, ok := v.(*mbytes.Frame); ok {
		return f.Data, nil
	}
	return json.Marshal(v)
}

func (jsonCodec) Unmarshal(data []byte, v interface{}) error {
	if f, ok := v.(*mbytes.Frame); ok {
		f.Data = data
		return nil
	}
	if len(data) == 0 {
		return nil
	}
	// go-micro decodes with a json.Decoder, which reads the first value and
	// ignores what follows it. json.Unmarshal decodes a payload that is one
	// value the same way without the Decoder's buffer and copy; it checks
	// the whole payload before it writes anything to v, so one that is
	// not (a syntax error, trailing data) is left to the Decoder as before.
	err := json.Unmarshal(data, v)
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		return json.NewDecoder(bytes.NewReader(data)).Decode(v)
	}
	return err
}

func (jsonCodec) Name() string { return "json" }
