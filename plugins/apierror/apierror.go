// Package apierror is the one place that turns errors into the public JSON
// error shape and HTTP status:
//
//	{"error": {"code": "not_found", "message": "...", "request_id": "..."}}
//
// Services return go-micro errors whose Code is the HTTP status they mean;
// the api maps them here. Details of 5xx errors are never forwarded.
package apierror

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
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

// Error is an error that already knows its HTTP status.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

// New returns an *Error.
func New(status int, msg string) *Error { return &Error{Status: status, Message: msg} }

// Status returns the HTTP status and public message for err: *Error as is,
// go-micro errors by their code, context errors as 503/504, anything else 500.
func Status(err error) (int, string) {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Status, ae.Message
	}
	var me *merrors.Error
	if errors.As(err, &me) {
		return fromMicro(me)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusGatewayTimeout, "the request took too long"
	}
	if errors.Is(err, context.Canceled) {
		return http.StatusServiceUnavailable, "the request was cancelled"
	}
	return http.StatusInternalServerError, "internal error"
}

func fromMicro(me *merrors.Error) (int, string) {
	status := int(me.Code)
	switch {
	case status == 408:
		return http.StatusGatewayTimeout, "the request took too long"
	case status >= 400 && status < 500:
		msg := me.Detail
		if msg == "" {
			msg = http.StatusText(status)
		}
		return status, msg
	case status == http.StatusServiceUnavailable:
		// Raised by our client stack; its detail names the service, not internals.
		return status, me.Detail
	default:
		return http.StatusInternalServerError, "internal error"
	}
}

// Write sends the error document with the status for err and logs 5xx.
func Write(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := Status(err)
	if status >= 500 {
		slog.ErrorContext(r.Context(), "request failed", "status", status, "err", err,
			"method", r.Method, "path", r.URL.Path)
	}
	WriteStatus(w, r, status, msg)
}

// WriteStatus sends the error document with an explicit status and message.
func WriteStatus(w http.ResponseWriter, r *http.Request, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Body{Error: Detail{
		Code:      Code(status),
		Message:   msg,
		RequestID: rpcmeta.RequestID(r.Context()),
	}})
}
