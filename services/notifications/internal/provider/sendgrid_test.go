package provider

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/plugins/saasfake"
)

const from = "marketmesh <no-reply@marketmesh.local>"

func email() Email {
	return Email{
		DeliveryID: "d-1", To: "ada@example.com", ToName: "Ada Lovelace",
		Subject: "Receipt for your order o-1", HTML: "<p>Thank you</p>\n", Text: "Thank you\n",
	}
}

func newSendGrid(t *testing.T, f *saasfake.Fakes, key string, opts ...Option) *SendGrid {
	t.Helper()
	sg, err := NewSendGrid(key, f.SendGrid.URL, from, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return sg
}

// providerError asserts err is an *Error and returns it.
func providerError(t *testing.T, err error) *Error {
	t.Helper()
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("error %T %v, want *provider.Error", err, err)
	}
	return e
}

func TestSendGridSendsTheEmailAndReturnsSendGridsMessageID(t *testing.T) {
	f := saasfake.New(t)
	sg := newSendGrid(t, f, saasfake.DefaultSendGridKey)
	id, err := sg.Send(t.Context(), email())
	if err != nil {
		t.Fatal(err)
	}
	mails, err := f.SendGrid.WaitMessages(1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := mails[0]
	if id == "" || id != m.MessageID {
		t.Errorf("returned ID %q, fake answered %q", id, m.MessageID)
	}
	if m.Subject != "Receipt for your order o-1" || m.HTML != "<p>Thank you</p>\n" || m.Text != "Thank you\n" {
		t.Errorf("content: subject %q html %q text %q", m.Subject, m.HTML, m.Text)
	}
	if m.From != (saasfake.Address{Email: "no-reply@marketmesh.local", Name: "marketmesh"}) {
		t.Errorf("from %+v", m.From)
	}
	if len(m.To) != 1 || m.To[0] != (saasfake.Address{Email: "ada@example.com", Name: "Ada Lovelace"}) {
		t.Errorf("to %+v", m.To)
	}
	if m.CustomArgs["delivery_id"] != "d-1" || m.Headers[DeliveryHeader] != "d-1" {
		t.Errorf("delivery ID not traced: custom_args %v headers %v", m.CustomArgs, m.Headers)
	}
	if sg.Name() != "sendgrid" {
		t.Errorf("Name() = %q", sg.Name())
	}
}

func TestSendGridClassifiesItsAnswers(t *testing.T) {
	tests := []struct {
		name       string
		fail       saasfake.MailFailure
		key        string
		kind       Kind
		retryAfter time.Duration
		message    string
	}{
		{"429 with Retry-After is retryable after that long",
			saasfake.MailFailure{Status: 429, RetryAfter: "7"}, "", KindRetryable, 7 * time.Second, "too many requests"},
		{"500 is retryable",
			saasfake.MailFailure{Status: 500}, "", KindRetryable, 0, "internal error"},
		{"503 with Retry-After is retryable after that long",
			saasfake.MailFailure{Status: 503, RetryAfter: "120"}, "", KindRetryable, 2 * time.Minute, ""},
		{"400 is permanent with SendGrid's message",
			saasfake.MailFailure{Status: 400, Field: "from.email", Message: "The from email does not contain a valid address."}, "",
			KindPermanent, 0, "from.email: The from email does not contain a valid address."},
		{"413 is permanent",
			saasfake.MailFailure{Status: 413}, "", KindPermanent, 0, "Request Entity Too Large"},
		{"a wrong API key is permanent",
			saasfake.MailFailure{}, "SG.wrong", KindPermanent, 0, "The provided authorization grant is invalid, expired, or revoked"},
	}
	f := saasfake.New(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.SendGrid.Reset()
			key := saasfake.DefaultSendGridKey
			if tt.key != "" {
				key = tt.key
			}
			if tt.fail.Status != 0 {
				f.SendGrid.Fail(tt.fail, 1)
			}
			_, err := newSendGrid(t, f, key).Send(t.Context(), email())
			e := providerError(t, err)
			retry, after := Retryable(err)
			if e.Kind != tt.kind || retry != (tt.kind == KindRetryable) || after != tt.retryAfter || Permanent(err) == retry || TokenInvalid(err) {
				t.Errorf("%v: kind %v, Retryable %v %v, Permanent %v; want %v after %v", err, e.Kind, retry, after, Permanent(err), tt.kind, tt.retryAfter)
			}
			if tt.message != "" && e.Message != tt.message {
				t.Errorf("message %q, want %q", e.Message, tt.message)
			}
			if e.Status == 0 || !strings.Contains(err.Error(), "sendgrid") {
				t.Errorf("error %q, status %d", err, e.Status)
			}
			if n := len(f.SendGrid.Messages()); n != 0 {
				t.Errorf("%d messages accepted", n)
			}
		})
	}
}

func TestSendGridRetryAfterReadsSecondsDatesAndRateLimitReset(t *testing.T) {
	now := time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)
	sg := &SendGrid{now: func() time.Time { return now }}
	tests := []struct {
		header http.Header
		want   time.Duration
	}{
		{http.Header{"Retry-After": {"30"}}, 30 * time.Second},
		{http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, 90 * time.Second},
		{http.Header{"Retry-After": {now.Add(-time.Minute).Format(http.TimeFormat)}}, 0},
		{http.Header{"Retry-After": {"soon"}}, 0},
		{http.Header{"X-Ratelimit-Reset": {strconv.FormatInt(now.Add(45*time.Second).Unix(), 10)}}, 45 * time.Second},
		{http.Header{}, 0},
	}
	for _, tt := range tests {
		if got := sg.retryAfter(tt.header); got != tt.want {
			t.Errorf("%v: %v, want %v", tt.header, got, tt.want)
		}
	}
}

func TestSendGridTransportFailuresAreRetryableAndBounded(t *testing.T) {
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // from then on, a client hanging up cancels r's context
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer hang.Close()
	sg, err := NewSendGrid("SG.k", hang.URL, from, Timeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = sg.Send(t.Context(), email())
	if retry, _ := Retryable(err); !retry || time.Since(start) > 2*time.Second {
		t.Errorf("hung SendGrid: %v after %v; want a retryable error within the timeout", err, time.Since(start))
	}

	f := saasfake.New(t)
	sg = newSendGrid(t, f, saasfake.DefaultSendGridKey)
	f.SendGrid.Close()
	_, err = sg.Send(t.Context(), email())
	if retry, _ := Retryable(err); !retry || providerError(t, err).Status != 0 {
		t.Errorf("SendGrid down: %v; want retryable without status", err)
	}
}

func TestSendGridRefusesWhatItCannotSendWithoutCallingSendGrid(t *testing.T) {
	f := saasfake.New(t)
	sg := newSendGrid(t, f, saasfake.DefaultSendGridKey)
	for name, e := range map[string]Email{
		"without recipient": {DeliveryID: "d", Subject: "s", Text: "t"},
		"without content":   {DeliveryID: "d", To: "a@example.com", Subject: "s"},
	} {
		if _, err := sg.Send(t.Context(), e); !Permanent(err) {
			t.Errorf("%s: %v, want permanent", name, err)
		}
	}
	if f.SendGrid.Attempts() != 0 {
		t.Errorf("%d requests to SendGrid", f.SendGrid.Attempts())
	}
	if _, err := NewSendGrid("SG.k", "", "not an address"); err == nil {
		t.Error("NewSendGrid accepted a malformed from address")
	}
	if _, err := NewSendGrid("", "", from); err == nil {
		t.Error("NewSendGrid accepted no API key")
	}
}

func TestSendGridHonoursTheCallersContext(t *testing.T) {
	f := saasfake.New(t)
	sg := newSendGrid(t, f, saasfake.DefaultSendGridKey)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := sg.Send(ctx, email()); err == nil || f.SendGrid.Attempts() != 0 {
		t.Errorf("cancelled context: %v, %d attempts", err, f.SendGrid.Attempts())
	}
}
