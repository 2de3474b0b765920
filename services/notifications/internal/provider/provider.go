// Package provider sends the rendered notifications: email through SendGrid's
// v3 API, push through FCM's HTTP v1 API, or either to the log when no
// provider is configured. Every failure is an *Error that says what the
// caller should do: try again (after RetryAfter, if the provider said),
// give up, or give up and remove the device token.
//
// A send is at least once: a request that timed out may still have been
// delivered, so each message carries its delivery ID (SendGrid custom_args
// and header, FCM data) for duplicates to be traced.
package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// Email is one email to one recipient.
type Email struct {
	DeliveryID string // traced through the provider: custom_args delivery_id, header X-Marketmesh-Delivery
	To         string // the address
	ToName     string // the display name, may be ""
	Subject    string
	HTML       string
	Text       string
}

// Push is one push notification to one device.
type Push struct {
	DeliveryID string // traced through the provider: data delivery_id
	Token      string // the device's FCM registration token
	Title      string
	Body       string
	Data       map[string]string // delivered to the app with the notification
}

// EmailSender sends emails. Send returns the provider's message ID, or an
// error for which Retryable and Permanent tell what to do.
type EmailSender interface {
	Send(ctx context.Context, e Email) (providerMessageID string, err error)
	Name() string // "sendgrid", "log"
}

// PushSender sends push notifications. Send returns the provider's message
// ID, or an error for which Retryable, TokenInvalid and Permanent tell what
// to do.
type PushSender interface {
	Send(ctx context.Context, p Push) (providerMessageID string, err error)
	Name() string // "fcm", "log"
}

// Kind is what a failed send calls for.
type Kind int

// Kinds of failure.
const (
	// KindRetryable: the provider may accept it later (429, 5xx, timeouts,
	// connection errors).
	KindRetryable Kind = iota + 1
	// KindPermanent: sending it again would fail the same way (4xx).
	KindPermanent
	// KindTokenInvalid: the device token is no longer valid; remove it.
	KindTokenInvalid
)

// String names k for errors and logs.
func (k Kind) String() string {
	switch k {
	case KindRetryable:
		return "retryable"
	case KindPermanent:
		return "permanent"
	case KindTokenInvalid:
		return "token invalid"
	default:
		return "Kind(" + strconv.Itoa(int(k)) + ")"
	}
}

// Error is a failed send.
type Error struct {
	Provider   string        // "sendgrid", "fcm"
	Kind       Kind          // what the caller should do
	Status     int           // the provider's HTTP status; 0 if it did not answer
	Code       string        // the provider's error code (FCM: UNREGISTERED, ...), if any
	Message    string        // the provider's own explanation, if any
	RetryAfter time.Duration // how long the provider asked to wait; 0 if it did not say
	Err        error         // the underlying error, if any
}

func (e *Error) Error() string {
	s := e.Provider + ": " + e.Kind.String()
	if e.Status != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %v)", e.RetryAfter)
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether err may succeed if sent again, and how long the
// provider asked to wait (0 if it did not say). An error not from this
// package counts as retryable: an unknown failure is taken as transient, and
// the caller bounds the attempts.
func Retryable(err error) (bool, time.Duration) {
	if err == nil {
		return false, 0
	}
	var e *Error
	if !errors.As(err, &e) {
		return true, 0
	}
	return e.Kind == KindRetryable, e.RetryAfter
}

// TokenInvalid reports whether err says the push token is invalid for good
// (FCM UNREGISTERED, or INVALID_ARGUMENT about the token): the caller should
// remove it.
func TokenInvalid(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == KindTokenInvalid
}

// Permanent reports whether sending again would fail the same way; it holds
// for an invalid token too.
func Permanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind != KindRetryable
}

// DefaultTimeout bounds one Send, the provider's own retries included.
const DefaultTimeout = 10 * time.Second

// Options configure the senders.
type Options struct {
	Timeout time.Duration // bound on one Send; DefaultTimeout unless set
	Logger  *slog.Logger  // where the log sinks write; slog.Default() at the time of each Send unless set
}

// Option changes Options.
type Option func(*Options)

// Timeout bounds each Send to d.
func Timeout(d time.Duration) Option { return func(o *Options) { o.Timeout = d } }

// Logger makes the log sinks write to l.
func Logger(l *slog.Logger) Option { return func(o *Options) { o.Logger = l } }

func newOptions(opts ...Option) Options {
	o := Options{Timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	return o
}

// retryAfter reads a Retry-After header: seconds or an HTTP date; 0 if
// absent, malformed or past.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return max(time.Duration(s)*time.Second, 0)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// byStatus classifies an HTTP answer that is not a success: 429 and 5xx are
// retryable, any other 4xx permanent, anything else (a 1xx or 3xx no
// provider sends) retryable.
func byStatus(status int) Kind {
	if status >= 400 && status < 500 && status != http.StatusTooManyRequests {
		return KindPermanent
	}
	return KindRetryable
}
