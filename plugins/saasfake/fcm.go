package saasfake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// FCMCode is an FCM v1 error code (FcmError.errorCode): what the fake answers
// when told to fail, with the HTTP status and status string FCM pairs it with.
type FCMCode string

// The FCM error codes the fake can answer; firebase-admin-go maps each to its
// messaging.IsXxx predicate (IsUnregistered, IsInvalidArgument, ...).
const (
	Unregistered        FCMCode = "UNREGISTERED"           // 404 NOT_FOUND: the token is gone for good
	InvalidArgument     FCMCode = "INVALID_ARGUMENT"       // 400: here, a malformed registration token
	Unavailable         FCMCode = "UNAVAILABLE"            // 503: overloaded, retry later
	Internal            FCMCode = "INTERNAL"               // 500
	QuotaExceeded       FCMCode = "QUOTA_EXCEEDED"         // 429 RESOURCE_EXHAUSTED
	SenderIDMismatch    FCMCode = "SENDER_ID_MISMATCH"     // 403 PERMISSION_DENIED: token of another project
	ThirdPartyAuthError FCMCode = "THIRD_PARTY_AUTH_ERROR" // 401 UNAUTHENTICATED: APNs or web push refused our credentials
)

// fcmErrors describes each code's answer: HTTP status, google.rpc status, message.
var fcmErrors = map[FCMCode]struct {
	status  int
	rpc     string
	message string
}{
	Unregistered:        {http.StatusNotFound, "NOT_FOUND", "Requested entity was not found."},
	InvalidArgument:     {http.StatusBadRequest, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token"},
	Unavailable:         {http.StatusServiceUnavailable, "UNAVAILABLE", "The service is currently unavailable."},
	Internal:            {http.StatusInternalServerError, "INTERNAL", "Internal error encountered."},
	QuotaExceeded:       {http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Messages sent' and limit 'Messages sent per minute'."},
	SenderIDMismatch:    {http.StatusForbidden, "PERMISSION_DENIED", "SenderId mismatch"},
	ThirdPartyAuthError: {http.StatusUnauthorized, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service"},
}

// FCM scopes an access token needs to send messages.
const (
	ScopeFirebaseMessaging = "https://www.googleapis.com/auth/firebase.messaging"
	ScopeCloudPlatform     = "https://www.googleapis.com/auth/cloud-platform"
)

// FCM fakes Firebase Cloud Messaging's HTTP v1 API:
// POST /v1/projects/{project}/messages:send with "Authorization: Bearer
// <token>", where the token must be one the OAuth fake issued, unexpired,
// with a messaging scope (401/403 with Google's error JSON otherwise). It
// accepts a message with exactly one of token, topic and condition, records
// it and answers 200 {"name":"projects/<p>/messages/<id>"}. FailToken and
// FailNext program FCM's error answers.
type FCM struct {
	URL     string // "http://127.0.0.1:port", the counterpart of https://fcm.googleapis.com
	Project string // the only project served; another gets 403

	oauth    *OAuth
	srv      *server
	pushes   record[Push]
	attempts counter
	failures queue[fcmFailure]
	seq      atomic.Int64

	mu          sync.Mutex
	tokenErrors map[string]FCMCode
}

// Push is one message the FCM fake accepted.
type Push struct {
	Name                    string // the name answered: projects/<p>/messages/<id>
	Token, Topic, Condition string // the target
	Title, Body             string // notification.title and notification.body
	Data                    map[string]string
	ValidateOnly            bool
	// Message is the "message" object as received, for fields not decoded here.
	Message     json.RawMessage
	ClientEmail string // of the service account whose access token authorized it
	ReceivedAt  time.Time
}

// fcmFailure is a programmed answer of the FCM fake.
type fcmFailure struct {
	Code       FCMCode
	RetryAfter string // Retry-After header value ("30" or an HTTP date); "" for none
}

// NewFCM starts an FCM fake for project that accepts the access tokens oauth issues.
func NewFCM(project string, oauth *OAuth) (*FCM, error) {
	f := &FCM{Project: project, oauth: oauth, tokenErrors: map[string]FCMCode{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/projects/{project}/messages:send", f.send)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		googleError{status: http.StatusNotFound, rpc: "NOT_FOUND", message: "Requested entity was not found."}.write(w)
	})
	srv, err := listen("fcm", mux)
	if err != nil {
		return nil, err
	}
	f.srv, f.URL = srv, srv.url
	return f, nil
}

// Endpoint is the messaging endpoint to give firebase-admin-go
// (option.WithEndpoint): URL + "/v1", the counterpart of https://fcm.googleapis.com/v1.
func (f *FCM) Endpoint() string { return f.URL + "/v1" }

// Close stops the fake.
func (f *FCM) Close() { f.srv.close() }

// FailToken makes every message to token fail with code until ClearFailures.
func (f *FCM) FailToken(token string, code FCMCode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenErrors[token] = code
}

// FailNext makes the next n authorized requests fail with code and, unless
// retryAfter is "", a Retry-After header, whatever their target.
func (f *FCM) FailNext(code FCMCode, retryAfter string, n int) {
	f.failures.push(fcmFailure{Code: code, RetryAfter: retryAfter}, n)
}

// ClearFailures forgets the failures programmed by FailToken and FailNext.
func (f *FCM) ClearFailures() {
	f.mu.Lock()
	clear(f.tokenErrors)
	f.mu.Unlock()
	f.failures.reset()
}

// Messages returns the messages accepted so far, oldest first.
func (f *FCM) Messages() []Push { return f.pushes.all() }

// WaitMessages waits until at least n messages were accepted and returns
// them all; after within it returns those there are and an error wrapping
// ErrTimeout.
func (f *FCM) WaitMessages(n int, within time.Duration) ([]Push, error) {
	return f.pushes.wait("pushes", n, within)
}

// Attempts counts every request to messages:send, refused ones included.
func (f *FCM) Attempts() int { return f.attempts.get() }

// Reset forgets the messages, the attempts and the programmed failures.
func (f *FCM) Reset() {
	f.pushes.reset()
	f.attempts.reset()
	f.ClearFailures()
}

// fcmRequest is the body of messages:send, as far as the fake reads it.
type fcmRequest struct {
	ValidateOnly bool            `json:"validate_only"`
	Message      json.RawMessage `json:"message"`
}

type fcmMessage struct {
	Token        string `json:"token"`
	Topic        string `json:"topic"`
	Condition    string `json:"condition"`
	Notification *struct {
		Title string `json:"title"`
		Body  string `json:"body"`
	} `json:"notification"`
	Data map[string]string `json:"data"`
}

// maxFCMPayload is FCM's limit on a message's payload (4 KB).
const maxFCMPayload = 4096

func (f *FCM) send(w http.ResponseWriter, r *http.Request) {
	f.attempts.inc()
	access, ok := bearer(r)
	token, valid := f.oauth.Valid(access)
	switch {
	case !ok || !valid:
		googleError{status: http.StatusUnauthorized, rpc: "UNAUTHENTICATED",
			message: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."}.write(w)
		return
	case !token.hasScope(ScopeFirebaseMessaging, ScopeCloudPlatform):
		googleError{status: http.StatusForbidden, rpc: "PERMISSION_DENIED", message: "Request had insufficient authentication scopes."}.write(w)
		return
	case r.PathValue("project") != f.Project:
		googleError{status: http.StatusForbidden, rpc: "PERMISSION_DENIED",
			message: fmt.Sprintf("Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/%s' (or it may not exist).", r.PathValue("project"))}.write(w)
		return
	}
	if fail, ok := f.failures.pop(); ok {
		writeFCMError(w, fail)
		return
	}

	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		googleError{status: http.StatusRequestEntityTooLarge, rpc: "INVALID_ARGUMENT", message: "Request payload size exceeds the limit."}.write(w)
		return
	}
	var req fcmRequest
	var msg fcmMessage
	if err := json.Unmarshal(raw, &req); err != nil || len(req.Message) == 0 {
		googleError{status: http.StatusBadRequest, rpc: "INVALID_ARGUMENT", message: "Invalid JSON payload received."}.write(w)
		return
	}
	if err := json.Unmarshal(req.Message, &msg); err != nil {
		googleError{status: http.StatusBadRequest, rpc: "INVALID_ARGUMENT", message: "Invalid JSON payload received. " + err.Error()}.write(w)
		return
	}
	targets := 0
	for _, t := range []string{msg.Token, msg.Topic, msg.Condition} {
		if t != "" {
			targets++
		}
	}
	if targets != 1 {
		googleError{status: http.StatusBadRequest, rpc: "INVALID_ARGUMENT", message: "Exactly one of token, topic or condition must be specified.", fcmCode: InvalidArgument, field: "message"}.write(w)
		return
	}
	if len(req.Message) > maxFCMPayload {
		googleError{status: http.StatusBadRequest, rpc: "INVALID_ARGUMENT", message: "Message is too big: the payload exceeds 4096 bytes.", fcmCode: InvalidArgument, field: "message"}.write(w)
		return
	}
	f.mu.Lock()
	code, failToken := f.tokenErrors[msg.Token]
	f.mu.Unlock()
	if msg.Token != "" && failToken {
		writeFCMError(w, fcmFailure{Code: code})
		return
	}

	p := Push{
		Name:         fmt.Sprintf("projects/%s/messages/0:%d%%%08x", f.Project, time.Now().UnixMicro(), f.seq.Add(1)),
		Token:        msg.Token,
		Topic:        msg.Topic,
		Condition:    msg.Condition,
		Data:         msg.Data,
		ValidateOnly: req.ValidateOnly,
		Message:      req.Message,
		ClientEmail:  token.ClientEmail,
		ReceivedAt:   time.Now(),
	}
	if req.ValidateOnly {
		p.Name = fmt.Sprintf("projects/%s/messages/fake_message_id", f.Project)
	}
	if msg.Notification != nil {
		p.Title, p.Body = msg.Notification.Title, msg.Notification.Body
	}
	f.pushes.add(p)
	writeJSON(w, http.StatusOK, map[string]string{"name": p.Name})
}

func writeFCMError(w http.ResponseWriter, fail fcmFailure) {
	e, ok := fcmErrors[fail.Code]
	if !ok {
		e = fcmErrors[Internal]
	}
	if fail.RetryAfter != "" {
		w.Header().Set("Retry-After", fail.RetryAfter)
	}
	g := googleError{status: e.status, rpc: e.rpc, message: e.message, fcmCode: fail.Code}
	if fail.Code == InvalidArgument {
		g.field = "message.token"
	}
	g.write(w)
}

// googleError is a google.rpc.Status error answer.
type googleError struct {
	status  int     // HTTP status
	rpc     string  // google.rpc code name: NOT_FOUND, INVALID_ARGUMENT, ...
	message string  // human readable
	fcmCode FCMCode // "" for no FcmError detail
	field   string  // "" for no BadRequest detail
}

// write answers e as Google does, with an FcmError detail naming fcmCode and
// a BadRequest detail naming field when they are set:
//
//	{"error":{"code":404,"message":"...","status":"NOT_FOUND","details":[
//	  {"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}
func (e googleError) write(w http.ResponseWriter) {
	type rpcStatus struct {
		Code    int              `json:"code"`
		Message string           `json:"message"`
		Status  string           `json:"status"`
		Details []map[string]any `json:"details,omitempty"`
	}
	s := rpcStatus{Code: e.status, Message: e.message, Status: e.rpc}
	if e.fcmCode != "" {
		s.Details = append(s.Details, map[string]any{
			"@type":     "type.googleapis.com/google.firebase.fcm.v1.FcmError",
			"errorCode": string(e.fcmCode),
		})
	}
	if e.field != "" {
		s.Details = append(s.Details, map[string]any{
			"@type":           "type.googleapis.com/google.rpc.BadRequest",
			"fieldViolations": []map[string]string{{"field": e.field, "description": e.message}},
		})
	}
	writeJSON(w, e.status, map[string]rpcStatus{"error": s})
}
