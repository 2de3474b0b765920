package provider

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"strings"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"golang.org/x/oauth2"
	"google.golang.org/api/option"
)

// DefaultFCMEndpoint is FCM's HTTP v1 endpoint; a fake's is its URL + "/v1".
const DefaultFCMEndpoint = "https://fcm.googleapis.com/v1"

// FCM sends push notifications through Firebase Cloud Messaging's HTTP v1 API
// with firebase-admin-go, authenticated as a service account (the JWT-bearer
// grant at the token_uri of its key file).
//
// firebase-admin-go retries by itself, within Send's timeout: on 503 and on
// transport errors (token fetches included) up to 4 times, waiting 0, 1, 2,
// 4 s or the Retry-After if longer (but gives up at once when Retry-After
// exceeds 2 minutes). A Send that runs out of time while the library waits
// returns a retryable error without the provider's Retry-After.
type FCM struct {
	client  *messaging.Client
	project string
	timeout time.Duration
	now     func() time.Time
}

// serviceAccount is the part of a service-account key file checked here.
type serviceAccount struct {
	Type        string `json:"type"`
	ProjectID   string `json:"project_id"`
	ClientEmail string `json:"client_email"`
	PrivateKey  string `json:"private_key"`
}

// NewFCM returns a sender authenticated by the service-account key file
// credentialsFile, whose project_id names the Firebase project, posting to
// endpoint ("" for DefaultFCMEndpoint). A missing, unreadable or malformed
// file is an error naming the file. Nothing is sent and no token is fetched
// until the first Send; ctx is used only for values (the token fetches
// outlive it).
func NewFCM(ctx context.Context, credentialsFile, endpoint string, opts ...Option) (*FCM, error) {
	o := newOptions(opts...)
	data, err := os.ReadFile(credentialsFile)
	if err != nil {
		return nil, fmt.Errorf("fcm: credentials file %s: %w", credentialsFile, err)
	}
	var sa serviceAccount
	if err := json.Unmarshal(data, &sa); err != nil {
		return nil, fmt.Errorf("fcm: credentials file %s: %w", credentialsFile, err)
	}
	switch {
	case sa.Type != "service_account":
		return nil, fmt.Errorf("fcm: credentials file %s: type %q, want a service_account key", credentialsFile, sa.Type)
	case sa.ProjectID == "":
		return nil, fmt.Errorf("fcm: credentials file %s: no project_id", credentialsFile)
	case sa.ClientEmail == "" || sa.PrivateKey == "":
		return nil, fmt.Errorf("fcm: credentials file %s: no client_email or private_key", credentialsFile)
	}
	if err := checkPrivateKey(sa.PrivateKey); err != nil {
		return nil, fmt.Errorf("fcm: credentials file %s: private_key: %w", credentialsFile, err)
	}
	if endpoint == "" {
		endpoint = DefaultFCMEndpoint
	}

	// x/oauth2 fetches every access token with the context the client was
	// built with, and with http.DefaultClient (no timeout) unless that
	// context names a client: give it a context that is never cancelled and
	// a bounded client, or a hung token endpoint would hang every Send.
	appCtx := context.WithValue(context.WithoutCancel(ctx), oauth2.HTTPClient, &http.Client{Timeout: o.Timeout})
	app, err := firebase.NewApp(appCtx, &firebase.Config{ProjectID: sa.ProjectID},
		option.WithCredentialsJSON(data), option.WithEndpoint(strings.TrimRight(endpoint, "/")))
	if err != nil {
		return nil, fmt.Errorf("fcm: credentials file %s: %w", credentialsFile, err)
	}
	client, err := app.Messaging(appCtx)
	if err != nil {
		return nil, fmt.Errorf("fcm: credentials file %s: %w", credentialsFile, err)
	}
	return &FCM{client: client, project: sa.ProjectID, timeout: o.Timeout, now: time.Now}, nil
}

// checkPrivateKey refuses a private_key the token fetch could not sign
// with: a PEM block holding an RSA key (PKCS #8 or PKCS #1).
func checkPrivateKey(pemKey string) error {
	block, _ := pem.Decode([]byte(pemKey))
	if block == nil {
		return errors.New("not a PEM block")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if _, ok := k.(*rsa.PrivateKey); !ok {
			return fmt.Errorf("a %T, want an RSA key", k)
		}
		return nil
	}
	if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
		return fmt.Errorf("not an RSA private key: %w", err)
	}
	return nil
}

// Name is "fcm".
func (f *FCM) Name() string { return "fcm" }

// Project is the Firebase project messages are sent in.
func (f *FCM) Project() string { return f.project }

// Send sends p to its token and returns FCM's message name
// (projects/<p>/messages/<id>). The delivery ID travels in the data as
// delivery_id unless the data has one.
func (f *FCM) Send(ctx context.Context, p Push) (string, error) {
	if p.Token == "" {
		return "", &Error{Provider: f.Name(), Kind: KindPermanent, Message: "no device token"}
	}
	data := maps.Clone(p.Data)
	if p.DeliveryID != "" && data["delivery_id"] == "" {
		if data == nil {
			data = map[string]string{}
		}
		data["delivery_id"] = p.DeliveryID
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	name, err := f.client.Send(ctx, &messaging.Message{
		Token:        p.Token,
		Notification: &messaging.Notification{Title: p.Title, Body: p.Body},
		Data:         data,
	})
	if err != nil {
		return "", f.classify(err)
	}
	return name, nil
}

// classify maps an error of messaging.Client.Send. The messaging.IsXxx
// predicates need the library's own error, unwrapped.
func (f *FCM) classify(err error) *Error {
	e := &Error{Provider: f.Name(), Err: err}
	rsp := errorutils.HTTPResponse(err) // nil if FCM did not answer
	if rsp != nil {
		e.Status = rsp.StatusCode
	}
	switch {
	case messaging.IsUnregistered(err):
		e.Kind, e.Code = KindTokenInvalid, "UNREGISTERED"
	case messaging.IsInvalidArgument(err):
		e.Kind, e.Code = KindPermanent, "INVALID_ARGUMENT"
		if aboutToken(rsp) {
			e.Kind = KindTokenInvalid
		}
	case messaging.IsSenderIDMismatch(err):
		// The token belongs to another Firebase project, or ours is
		// misconfigured: keep the token, do not retry.
		e.Kind, e.Code = KindPermanent, "SENDER_ID_MISMATCH"
	case messaging.IsThirdPartyAuthError(err):
		e.Kind, e.Code = KindPermanent, "THIRD_PARTY_AUTH_ERROR"
	case messaging.IsQuotaExceeded(err):
		e.Kind, e.Code = KindRetryable, "QUOTA_EXCEEDED"
	case messaging.IsUnavailable(err):
		e.Kind, e.Code = KindRetryable, "UNAVAILABLE"
	case messaging.IsInternal(err):
		e.Kind, e.Code = KindRetryable, "INTERNAL"
	case rsp != nil:
		e.Kind = byStatus(rsp.StatusCode)
	case errorutils.IsUnavailable(err), errorutils.IsDeadlineExceeded(err), errorutils.IsUnknown(err),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// FCM did not answer: connection refused, timeout, token fetch failed.
		e.Kind = KindRetryable
	default:
		// Refused by the library before sending (message validation).
		e.Kind = KindPermanent
	}
	if rsp != nil && e.Kind == KindRetryable {
		e.RetryAfter = retryAfter(rsp.Header, f.now())
	}
	return e
}

// aboutToken reports whether an INVALID_ARGUMENT answer blames the
// registration token (a BadRequest field violation on message.token, as FCM
// answers for a malformed token) rather than the rest of the message.
func aboutToken(rsp *http.Response) bool {
	if rsp == nil || rsp.Body == nil {
		return false
	}
	b, err := io.ReadAll(io.LimitReader(rsp.Body, 64<<10))
	if err != nil {
		return false
	}
	var body struct {
		Error struct {
			Message string `json:"message"`
			Details []struct {
				FieldViolations []struct {
					Field string `json:"field"`
				} `json:"fieldViolations"`
			} `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &body) != nil {
		return false
	}
	violations := 0
	for _, d := range body.Error.Details {
		for _, v := range d.FieldViolations {
			violations++
			if v.Field == "message.token" {
				return true
			}
		}
	}
	return violations == 0 && strings.Contains(strings.ToLower(body.Error.Message), "registration token")
}
