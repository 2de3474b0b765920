package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/sendgrid/rest"
	"github.com/sendgrid/sendgrid-go"
	sgmail "github.com/sendgrid/sendgrid-go/helpers/mail"
)

// SendGrid defaults.
const (
	DefaultSendGridURL = "https://api.sendgrid.com"
	sendGridMailSend   = "/v3/mail/send"
	// DeliveryHeader carries the delivery ID in every email, beside
	// custom_args delivery_id (which SendGrid's event webhook reports).
	DeliveryHeader = "X-Marketmesh-Delivery"
)

// SendGrid sends email through SendGrid's v3 mail/send API.
type SendGrid struct {
	key     string
	baseURL string
	from    *mail.Address
	client  *rest.Client
	timeout time.Duration
	now     func() time.Time
}

// NewSendGrid returns a sender that posts to baseURL ("" for
// https://api.sendgrid.com) with apiKey, from the address from
// ("marketmesh <no-reply@marketmesh.local>").
func NewSendGrid(apiKey, baseURL, from string, opts ...Option) (*SendGrid, error) {
	o := newOptions(opts...)
	if apiKey == "" {
		return nil, errors.New("sendgrid: no API key")
	}
	addr, err := mail.ParseAddress(from)
	if err != nil {
		return nil, fmt.Errorf("sendgrid: from address %q: %w", from, err)
	}
	if baseURL == "" {
		baseURL = DefaultSendGridURL
	}
	return &SendGrid{
		key:     apiKey,
		baseURL: strings.TrimRight(baseURL, "/"),
		from:    addr,
		// sendgrid.DefaultClient (and so sendgrid.API and Client.Send) has
		// no timeout: this client is ours, bounded.
		client:  &rest.Client{HTTPClient: &http.Client{Timeout: o.Timeout}},
		timeout: o.Timeout,
		now:     time.Now,
	}, nil
}

// Name is "sendgrid".
func (s *SendGrid) Name() string { return "sendgrid" }

// Send posts e and returns SendGrid's X-Message-Id. A refusal (4xx other
// than 429, including a wrong API key) is permanent with SendGrid's message;
// 429, 5xx and transport errors are retryable, with the wait SendGrid asked
// for (Retry-After, or X-RateLimit-Reset on 429).
func (s *SendGrid) Send(ctx context.Context, e Email) (string, error) {
	if e.To == "" {
		return "", &Error{Provider: s.Name(), Kind: KindPermanent, Message: "no recipient address"}
	}
	if e.Text == "" && e.HTML == "" {
		return "", &Error{Provider: s.Name(), Kind: KindPermanent, Message: "no content"}
	}
	m := sgmail.NewV3Mail()
	m.SetFrom(sgmail.NewEmail(s.from.Name, s.from.Address))
	m.Subject = e.Subject
	p := sgmail.NewPersonalization()
	p.AddTos(sgmail.NewEmail(e.ToName, e.To))
	m.AddPersonalizations(p)
	// SendGrid wants text/plain first.
	if e.Text != "" {
		m.AddContent(sgmail.NewContent("text/plain", e.Text))
	}
	if e.HTML != "" {
		m.AddContent(sgmail.NewContent("text/html", e.HTML))
	}
	if e.DeliveryID != "" {
		m.SetCustomArg("delivery_id", e.DeliveryID)
		m.SetHeader(DeliveryHeader, e.DeliveryID)
	}

	req := sendgrid.GetRequest(s.key, sendGridMailSend, s.baseURL)
	req.Method = rest.Post
	req.Body = sgmail.GetRequestBody(m)
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rsp, err := s.client.SendWithContext(ctx, req)
	if err != nil {
		return "", &Error{Provider: s.Name(), Kind: KindRetryable, Err: err}
	}
	if rsp.StatusCode >= 200 && rsp.StatusCode < 300 {
		return http.Header(rsp.Headers).Get("X-Message-Id"), nil
	}
	fail := &Error{
		Provider: s.Name(),
		Kind:     byStatus(rsp.StatusCode),
		Status:   rsp.StatusCode,
		Message:  sendGridMessage(rsp.Body),
	}
	if fail.Kind == KindRetryable {
		fail.RetryAfter = s.retryAfter(http.Header(rsp.Headers))
	}
	return "", fail
}

// retryAfter is the wait SendGrid asked for: Retry-After, else on a rate
// limit the X-RateLimit-Reset time (Unix seconds).
func (s *SendGrid) retryAfter(h http.Header) time.Duration {
	now := s.now()
	if d := retryAfter(h, now); d > 0 {
		return d
	}
	if reset, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil {
		return max(time.Unix(reset, 0).Sub(now), 0)
	}
	return 0
}

// sendGridMessage extracts the messages of SendGrid's error JSON
// ({"errors":[{"message":"...","field":"..."}]}), or a short prefix of a body
// that is not that.
func sendGridMessage(body string) string {
	var e struct {
		Errors []struct {
			Message string  `json:"message"`
			Field   *string `json:"field"`
		} `json:"errors"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || len(e.Errors) == 0 {
		const limit = 200
		if len(body) > limit {
			body = body[:limit] + "…"
		}
		return strings.TrimSpace(body)
	}
	msgs := make([]string, 0, len(e.Errors))
	for _, x := range e.Errors {
		if x.Field != nil && *x.Field != "" {
			msgs = append(msgs, *x.Field+": "+x.Message)
		} else {
			msgs = append(msgs, x.Message)
		}
	}
	return strings.Join(msgs, "; ")
}
