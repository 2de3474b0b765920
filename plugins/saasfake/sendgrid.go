package saasfake

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/mail"
	"strings"
	"time"
)

// SendGrid fakes SendGrid's v3 mail/send: POST /v3/mail/send with
// "Authorization: Bearer <key>" and a v3 JSON body. A request with another key
// gets 401, a body SendGrid would refuse gets 400, both with SendGrid's error
// JSON; an accepted one is recorded and answered 202 with an X-Message-Id
// header and an empty body, as SendGrid does. FailNext programs other answers.
type SendGrid struct {
	// URL is the base URL to give the client ("http://127.0.0.1:port"), the
	// counterpart of https://api.sendgrid.com.
	URL string

	key      string
	srv      *server
	mails    record[Mail]
	attempts counter
	failures queue[MailFailure]
}

// Mail is one message the SendGrid fake accepted, as decoded from the v3 body.
type Mail struct {
	MessageID string // the X-Message-Id answered
	From      Address
	ReplyTo   *Address
	// To is the "to" recipients of every personalization, in order.
	To []Address
	// Subject is the message's subject, or the first personalization's when
	// the message has none.
	Subject    string
	Text, HTML string            // the text/plain and text/html content values
	CustomArgs map[string]string // message-level custom_args
	Headers    map[string]string // message-level headers
	Categories []string
	// Personalizations are as received, with their own subject, headers and
	// custom_args.
	Personalizations []Personalization
	Body             json.RawMessage // the request body as received
	ReceivedAt       time.Time
}

// Address is an email address with an optional display name.
type Address struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

// Personalization is one entry of a v3 body's personalizations.
type Personalization struct {
	To         []Address         `json:"to"`
	CC         []Address         `json:"cc,omitempty"`
	BCC        []Address         `json:"bcc,omitempty"`
	Subject    string            `json:"subject,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
	CustomArgs map[string]string `json:"custom_args,omitempty"`
}

// MailFailure is a programmed answer of the SendGrid fake.
type MailFailure struct {
	Status     int    // HTTP status, e.g. 429, 500, 400
	RetryAfter string // Retry-After header value ("30" or an HTTP date); "" for none
	Message    string // errors[0].message; "" for a default that fits Status
	Field      string // errors[0].field; "" for null
}

// NewSendGrid starts a SendGrid fake that accepts the API key key.
func NewSendGrid(key string) (*SendGrid, error) {
	s := &SendGrid{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v3/mail/send", s.send)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeSendGridError(w, http.StatusNotFound, "", "Not Found")
	})
	srv, err := listen("sendgrid", mux)
	if err != nil {
		return nil, err
	}
	s.srv, s.URL = srv, srv.url
	return s, nil
}

// Close stops the fake.
func (s *SendGrid) Close() { s.srv.close() }

// FailNext makes the next n authenticated requests fail with status and,
// unless retryAfter is "", a Retry-After header; the body is SendGrid's error
// JSON with a message that fits the status.
func (s *SendGrid) FailNext(status int, retryAfter string, n int) {
	s.failures.push(MailFailure{Status: status, RetryAfter: retryAfter}, n)
}

// Fail makes the next n authenticated requests answer f.
func (s *SendGrid) Fail(f MailFailure, n int) { s.failures.push(f, n) }

// Messages returns the messages accepted so far, oldest first.
func (s *SendGrid) Messages() []Mail { return s.mails.all() }

// WaitMessages waits until at least n messages were accepted and returns
// them all; after within it returns those there are and an error wrapping
// ErrTimeout.
func (s *SendGrid) WaitMessages(n int, within time.Duration) ([]Mail, error) {
	return s.mails.wait("mails", n, within)
}

// Attempts counts every request to /v3/mail/send, refused ones included.
func (s *SendGrid) Attempts() int { return s.attempts.get() }

// Reset forgets the messages, the attempts and the programmed failures.
func (s *SendGrid) Reset() {
	s.mails.reset()
	s.attempts.reset()
	s.failures.reset()
}

// sendGridBody is the part of SendGrid's v3 mail/send body the fake reads.
type sendGridBody struct {
	Personalizations []Personalization `json:"personalizations"`
	From             *Address          `json:"from"`
	ReplyTo          *Address          `json:"reply_to"`
	Subject          string            `json:"subject"`
	Content          []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"content"`
	TemplateID string            `json:"template_id"`
	Headers    map[string]string `json:"headers"`
	CustomArgs map[string]string `json:"custom_args"`
	Categories []string          `json:"categories"`
}

// maxMailBody is SendGrid's limit on the whole request (30 MB).
const maxMailBody = 30 << 20

func (s *SendGrid) send(w http.ResponseWriter, r *http.Request) {
	s.attempts.inc()
	switch auth := r.Header.Get("Authorization"); {
	case auth == "":
		writeSendGridError(w, http.StatusUnauthorized, "", "authorization required")
		return
	case auth != "Bearer "+s.key:
		writeSendGridError(w, http.StatusUnauthorized, "", "The provided authorization grant is invalid, expired, or revoked")
		return
	}
	if f, ok := s.failures.pop(); ok {
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		msg := f.Message
		if msg == "" {
			msg = defaultSendGridMessage(f.Status)
		}
		writeSendGridError(w, f.Status, f.Field, msg)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeSendGridError(w, http.StatusBadRequest, "", "Content-Type should be application/json.")
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxMailBody))
	if err != nil {
		writeSendGridError(w, http.StatusRequestEntityTooLarge, "", "Request Entity Too Large")
		return
	}
	var body sendGridBody
	if err := json.Unmarshal(raw, &body); err != nil {
		writeSendGridError(w, http.StatusBadRequest, "", "Bad Request")
		return
	}
	if field, msg := validateMail(&body); msg != "" {
		writeSendGridError(w, http.StatusBadRequest, field, msg)
		return
	}

	m := Mail{
		MessageID:        newMessageID(),
		From:             *body.From,
		ReplyTo:          body.ReplyTo,
		Subject:          body.Subject,
		CustomArgs:       body.CustomArgs,
		Headers:          body.Headers,
		Categories:       body.Categories,
		Personalizations: body.Personalizations,
		Body:             json.RawMessage(raw),
		ReceivedAt:       time.Now(),
	}
	for _, p := range body.Personalizations {
		m.To = append(m.To, p.To...)
	}
	if m.Subject == "" {
		m.Subject = body.Personalizations[0].Subject
	}
	for _, c := range body.Content {
		switch c.Type {
		case "text/plain":
			m.Text = c.Value
		case "text/html":
			m.HTML = c.Value
		}
	}
	s.mails.add(m)
	w.Header().Set("X-Message-Id", m.MessageID)
	w.WriteHeader(http.StatusAccepted)
}

// validateMail applies the rules of SendGrid's v3 API that a client can
// break; it returns the offending field and SendGrid's message, or "" "".
func validateMail(b *sendGridBody) (field, msg string) {
	if len(b.Personalizations) == 0 {
		return "personalizations", "The personalizations field is required and must have at least one personalization."
	}
	if len(b.Personalizations) > 1000 {
		return "personalizations", "The personalizations field must have no more than 1000 personalizations."
	}
	everyHasSubject := true
	for i, p := range b.Personalizations {
		if len(p.To) == 0 {
			return fmt.Sprintf("personalizations.%d.to", i), "The to array is required for all personalization objects, and must have at least one email object with a valid email address."
		}
		for j, a := range append(append(append([]Address(nil), p.To...), p.CC...), p.BCC...) {
			if !validEmail(a.Email) {
				return fmt.Sprintf("personalizations.%d.to.%d.email", i, j), "Does not contain a valid address."
			}
		}
		everyHasSubject = everyHasSubject && p.Subject != ""
	}
	if b.From == nil || b.From.Email == "" {
		return "from.email", "The from object must be provided for every email send. It is an object that requires the email parameter, but may also contain a name parameter."
	}
	if !validEmail(b.From.Email) {
		return "from.email", "The from email does not contain a valid address."
	}
	if b.TemplateID != "" {
		return "", ""
	}
	if b.Subject == "" && !everyHasSubject {
		return "subject", "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined."
	}
	if len(b.Content) == 0 {
		return "content", "Unless a valid template_id is provided, the content parameter is required. There must be at least one defined content block. We typically suggest both text/plain and text/html blocks are included, but only one block is required."
	}
	for i, c := range b.Content {
		if c.Value == "" {
			return fmt.Sprintf("content.%d.value", i), "The content value must be a string at least one character in length."
		}
		if c.Type == "text/plain" && i != 0 {
			return "content", "If present, text/plain content must be first, followed by any other content."
		}
	}
	return "", ""
}

func validEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s
}

func defaultSendGridMessage(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "too many requests"
	case status == http.StatusBadRequest:
		return "Bad Request"
	case status == http.StatusUnauthorized:
		return "The provided authorization grant is invalid, expired, or revoked"
	case status == http.StatusForbidden:
		return "access forbidden"
	case status == http.StatusRequestEntityTooLarge:
		return "Request Entity Too Large"
	case status >= 500:
		return "internal error"
	default:
		return http.StatusText(status)
	}
}

// writeSendGridError answers SendGrid's error JSON:
// {"errors":[{"message":"...","field":null,"help":null}]}.
func writeSendGridError(w http.ResponseWriter, status int, field, message string) {
	type sendGridError struct {
		Message string  `json:"message"`
		Field   *string `json:"field"`
		Help    *string `json:"help"`
	}
	e := sendGridError{Message: message}
	if field != "" {
		e.Field = &field
	}
	writeJSON(w, status, map[string][]sendGridError{"errors": {e}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// newMessageID returns an ID shaped like SendGrid's X-Message-Id (22
// characters of URL-safe base64).
func newMessageID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) (string, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return token, ok && token != ""
}
