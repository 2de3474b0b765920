// Package apierror is the one place that turns errors into the public JSON
// error shape and HTTP status:
//
//	{"error": {"code": "not_found", "message": "...", "request_id": "..."}}
//
// Services return go-micro errors whose Code is the HTTP status they mean;
// the api maps them here. Details of 5xx errors are never forwarded. The code
// is derived from the status, unless the error names a machine code of its
// own: an *Error with a Code, or a go-micro 4xx whose Id is a registered
// machine code (RegisterCode). An error about a failed order also carries
// its "order_id".
package apierror

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/plugins/validate"
)

// Body is the JSON error document.
type Body struct {
	Error Detail `json:"error"`
}

// Detail is the inside of Body.
type Detail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
	OrderID   string `json:"order_id,omitempty"`
}

var codes = map[int]string{
	http.StatusBadRequest:            "bad_request",
	http.StatusUnauthorized:          "unauthenticated",
	http.StatusForbidden:             "forbidden",
	http.StatusNotFound:              "not_found",
	http.StatusMethodNotAllowed:      "method_not_allowed",
	http.StatusConflict:              "conflict",
	http.StatusRequestEntityTooLarge: "payload_too_large",
	http.StatusUnsupportedMediaType:  "unsupported_media_type",
	http.StatusUnprocessableEntity:   "unprocessable_entity",
	http.StatusTooManyRequests:       "rate_limited",
	http.StatusServiceUnavailable:    "unavailable",
	http.StatusGatewayTimeout:        "deadline_exceeded",
	http.StatusInternalServerError:   "internal",
}

// Code returns the error code string for an HTTP status.
func Code(status int) string {
	if c, ok := codes[status]; ok {
		return c
	}
	if status >= 500 {
		return "internal"
	}
	return "bad_request"
}

// Error is an error that already knows its HTTP status. Code, when set, is
// the document's machine code instead of the status's; OrderID, when set,
// names the order the error is about (a failed order).
type Error struct {
	Status  int
	Code    string
	Message string
	OrderID string
}

func (e *Error) Error() string { return e.Message }

// New returns an *Error.
func New(status int, msg string) *Error { return &Error{Status: status, Message: msg} }

// Machine codes that services raise as the Id of a go-micro error, and that
// are registered from the start.
const (
	CodeIdempotencyKeyReused = "idempotency_key_reused" // 422: the key was used with another request
	CodeRequestInProgress    = "request_in_progress"    // 409: the key's first request is still running
)

var machine = struct {
	sync.RWMutex
	codes map[string]bool
}{codes: map[string]bool{CodeIdempotencyKeyReused: true, CodeRequestInProgress: true}}

// RegisterCode makes the given machine codes pass through: a go-micro 4xx
// error whose Id is one of them keeps it as the document's code.
func RegisterCode(codes ...string) {
	machine.Lock()
	defer machine.Unlock()
	for _, c := range codes {
		machine.codes[c] = true
	}
}

func registered(code string) bool {
	machine.RLock()
	defer machine.RUnlock()
	return machine.codes[code]
}

// Status returns the HTTP status and public message for err: *Error as is,
// go-micro errors by their code, context errors as 503/504, anything else 500.
func Status(err error) (int, string) {
	status, d := Describe(err)
	return status, d.Message
}

// Describe returns the HTTP status for err and the document's detail
// (without the request ID): as Status, with the code and order ID.
func Describe(err error) (int, Detail) {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Status, detail(ae.Status, ae.Code, ae.Message, ae.OrderID)
	}
	var me *merrors.Error
	if errors.As(err, &me) {
		return fromMicro(me)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusGatewayTimeout, detail(http.StatusGatewayTimeout, "", "the request took too long", "")
	}
	if errors.Is(err, context.Canceled) {
		return http.StatusServiceUnavailable, detail(http.StatusServiceUnavailable, "", "the request was cancelled", "")
	}
	return http.StatusInternalServerError, detail(http.StatusInternalServerError, "", "internal error", "")
}

// detail fills a Detail; an empty code is the status's.
func detail(status int, code, msg, orderID string) Detail {
	if code == "" {
		code = Code(status)
	}
	return Detail{Code: code, Message: msg, OrderID: orderID}
}

func fromMicro(me *merrors.Error) (int, Detail) {
	status := int(me.Code)
	switch {
	case status == 408:
		return http.StatusGatewayTimeout, detail(http.StatusGatewayTimeout, "", "the request took too long", "")
	case status >= 400 && status < 500:
		msg := me.Detail
		if msg == "" {
			msg = http.StatusText(status)
		}
		code := ""
		if registered(me.Id) {
			code = me.Id
		}
		return status, detail(status, code, msg, "")
	case status == http.StatusServiceUnavailable:
		// Raised by our client stack; its detail names the service, not internals.
		return status, detail(status, "", me.Detail, "")
	default:
		return http.StatusInternalServerError, detail(http.StatusInternalServerError, "", "internal error", "")
	}
}

// RetryAfterUnavailable is the Retry-After (seconds) of a 503 that names none.
const RetryAfterUnavailable = "1"

// MaxMessage bounds an error message in bytes: messages quote input (a field
// name, a value), and an error must never echo megabytes back.
const MaxMessage = 512

// Clip makes msg valid UTF-8 and at most MaxMessage bytes.
func Clip(msg string) string { return validate.Shorten(msg, MaxMessage) }

// Write sends the error document for err and logs 5xx.
func Write(w http.ResponseWriter, r *http.Request, err error) {
	status, d := Describe(err)
	if status >= 500 {
		slog.ErrorContext(r.Context(), "request failed", "status", status, "err", err,
			"method", r.Method, "path", r.URL.Path)
	}
	writeDetail(w, r, status, d)
}

// WriteStatus sends the error document with an explicit status and message.
func WriteStatus(w http.ResponseWriter, r *http.Request, status int, msg string) {
	writeDetail(w, r, status, detail(status, "", msg, ""))
}

func writeDetail(w http.ResponseWriter, r *http.Request, status int, d Detail) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		// Every 503 is "not now": a service down or pacing its callers (users
		// out of password-hashing slots), a breaker open. Say when to retry,
		// unless the caller knows better (images' decode budget).
		w.Header().Set("Retry-After", RetryAfterUnavailable)
	}
	w.WriteHeader(status)
	d.RequestID = rpcmeta.RequestID(r.Context())
	d.Message = Clip(d.Message)
	_ = json.NewEncoder(w).Encode(Body{Error: d})
}
