package saasfake

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// post sends body to url with the given headers and returns status, headers and body.
func post(t *testing.T, url, contentType string, body []byte, headers map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rsp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	b, err := io.ReadAll(rsp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rsp.StatusCode, rsp.Header, b
}

const mailBody = `{
 "personalizations":[{"to":[{"email":"al@example.com","name":"Al"}]}],
 "from":{"email":"no-reply@marketmesh.local","name":"marketmesh"},
 "subject":"Your receipt",
 "content":[{"type":"text/plain","value":"plain <b>"},{"type":"text/html","value":"<p>html</p>"}],
 "custom_args":{"delivery_id":"d-1"},
 "headers":{"X-Marketmesh-Delivery":"d-1"},
 "categories":["receipt"]
}`

func sendMail(t *testing.T, sg *SendGrid, key, body string) (int, http.Header, []byte) {
	t.Helper()
	return post(t, sg.URL+"/v3/mail/send", "application/json", []byte(body), map[string]string{"Authorization": "Bearer " + key})
}

// sendGridErrors decodes SendGrid's error JSON, insisting on its exact shape.
func sendGridErrors(t *testing.T, body []byte) []map[string]any {
	t.Helper()
	var e struct {
		Errors []map[string]any `json:"errors"`
	}
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 {
		t.Fatalf("error body %s: %v", body, err)
	}
	for _, k := range []string{"message", "field", "help"} {
		if _, ok := e.Errors[0][k]; !ok {
			t.Errorf("error body %s has no %q", body, k)
		}
	}
	return e.Errors
}

func TestSendGridAcceptsAV3MessageAndRecordsIt(t *testing.T) {
	f := New(t)
	status, h, body := sendMail(t, f.SendGrid, DefaultSendGridKey, mailBody)
	if status != http.StatusAccepted || len(body) != 0 || len(h.Get("X-Message-Id")) != 22 {
		t.Fatalf("answer %d %q X-Message-Id=%q; want 202, empty body, an ID", status, body, h.Get("X-Message-Id"))
	}
	mails, err := f.SendGrid.WaitMessages(1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := mails[0]
	if m.MessageID != h.Get("X-Message-Id") || m.From != (Address{"no-reply@marketmesh.local", "marketmesh"}) ||
		len(m.To) != 1 || m.To[0] != (Address{"al@example.com", "Al"}) || m.Subject != "Your receipt" ||
		m.Text != "plain <b>" || m.HTML != "<p>html</p>" || m.CustomArgs["delivery_id"] != "d-1" ||
		m.Headers["X-Marketmesh-Delivery"] != "d-1" || len(m.Categories) != 1 || !json.Valid(m.Body) {
		t.Errorf("recorded %+v", m)
	}
	if f.SendGrid.Attempts() != 1 {
		t.Errorf("attempts %d, want 1", f.SendGrid.Attempts())
	}
}

func TestSendGridRefusesAWrongOrMissingKeyWith401(t *testing.T) {
	f := New(t)
	for _, key := range []string{"SG.wrong", ""} {
		headers := map[string]string{"Authorization": "Bearer " + key}
		if key == "" {
			headers = nil
		}
		status, _, body := post(t, f.SendGrid.URL+"/v3/mail/send", "application/json", []byte(mailBody), headers)
		if status != http.StatusUnauthorized {
			t.Fatalf("key %q: status %d, want 401", key, status)
		}
		e := sendGridErrors(t, body)
		if e[0]["field"] != nil || e[0]["help"] != nil || e[0]["message"] == "" {
			t.Errorf("key %q: body %s", key, body)
		}
	}
	if n := len(f.SendGrid.Messages()); n != 0 || f.SendGrid.Attempts() != 2 {
		t.Errorf("%d messages, %d attempts; want 0 and 2", n, f.SendGrid.Attempts())
	}
}

func TestSendGridAnswersProgrammedFailuresInOrderThenAccepts(t *testing.T) {
	f := New(t)
	f.SendGrid.FailNext(http.StatusTooManyRequests, "7", 2)
	f.SendGrid.FailNext(http.StatusInternalServerError, "", 1)
	f.SendGrid.Fail(MailFailure{Status: http.StatusBadRequest, Message: "The from email does not contain a valid address.", Field: "from.email"}, 1)

	want := []struct {
		status     int
		retryAfter string
		message    string
	}{
		{429, "7", "too many requests"},
		{429, "7", "too many requests"},
		{500, "", "internal error"},
		{400, "", "The from email does not contain a valid address."},
	}
	for i, w := range want {
		status, h, body := sendMail(t, f.SendGrid, DefaultSendGridKey, mailBody)
		e := sendGridErrors(t, body)
		if status != w.status || h.Get("Retry-After") != w.retryAfter || e[0]["message"] != w.message {
			t.Errorf("answer %d: %d Retry-After=%q %s; want %d %q %q", i, status, h.Get("Retry-After"), body, w.status, w.retryAfter, w.message)
		}
	}
	if status, _, _ := sendMail(t, f.SendGrid, DefaultSendGridKey, mailBody); status != http.StatusAccepted {
		t.Errorf("after the failures: %d, want 202", status)
	}
	if n := len(f.SendGrid.Messages()); n != 1 || f.SendGrid.Attempts() != 5 {
		t.Errorf("%d messages, %d attempts; want 1 and 5", n, f.SendGrid.Attempts())
	}
}

func TestSendGridRefusesBodiesTheRealAPIRefuses(t *testing.T) {
	f := New(t)
	base := map[string]any{}
	if err := json.Unmarshal([]byte(mailBody), &base); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		edit  func(m map[string]any)
		field string
	}{
		{"without personalizations", func(m map[string]any) { delete(m, "personalizations") }, "personalizations"},
		{"with a personalization without recipients", func(m map[string]any) { m["personalizations"] = []any{map[string]any{}} }, "personalizations.0.to"},
		{"with a malformed recipient", func(m map[string]any) {
			m["personalizations"] = []any{map[string]any{"to": []any{map[string]any{"email": "not an address"}}}}
		}, "personalizations.0.to.0.email"},
		{"without from", func(m map[string]any) { delete(m, "from") }, "from.email"},
		{"without subject", func(m map[string]any) { delete(m, "subject") }, "subject"},
		{"without content", func(m map[string]any) { delete(m, "content") }, "content"},
		{"with empty content", func(m map[string]any) { m["content"] = []any{map[string]any{"type": "text/plain", "value": ""}} }, "content.0.value"},
		{"with text after html", func(m map[string]any) {
			m["content"] = []any{map[string]any{"type": "text/html", "value": "<p>x</p>"}, map[string]any{"type": "text/plain", "value": "x"}}
		}, "content"},
		{"with a custom arg that is not a string", func(m map[string]any) { m["custom_args"] = map[string]any{"n": 1} }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := map[string]any{}
			for k, v := range base {
				m[k] = v
			}
			tt.edit(m)
			b, _ := json.Marshal(m)
			status, _, body := sendMail(t, f.SendGrid, DefaultSendGridKey, string(b))
			e := sendGridErrors(t, body)
			field, _ := e[0]["field"].(string)
			if status != http.StatusBadRequest || field != tt.field {
				t.Errorf("%d %s; want 400 with field %q", status, body, tt.field)
			}
		})
	}
	status, _, _ := post(t, f.SendGrid.URL+"/v3/mail/send", "text/plain", []byte(mailBody), map[string]string{"Authorization": "Bearer " + DefaultSendGridKey})
	if status != http.StatusBadRequest {
		t.Errorf("text/plain body: %d, want 400", status)
	}
	if n := len(f.SendGrid.Messages()); n != 0 {
		t.Errorf("%d messages recorded from refused bodies", n)
	}
}

func TestWaitMessagesWaitsForConcurrentSendsAndTimesOut(t *testing.T) {
	f := New(t)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			time.Sleep(20 * time.Millisecond)
			sendMail(t, f.SendGrid, DefaultSendGridKey, mailBody)
		})
	}
	mails, err := f.SendGrid.WaitMessages(5, 5*time.Second)
	wg.Wait()
	if err != nil || len(mails) != 5 {
		t.Fatalf("%d mails, %v; want 5", len(mails), err)
	}
	mails, err = f.SendGrid.WaitMessages(6, 50*time.Millisecond)
	if !errors.Is(err, ErrTimeout) || len(mails) != 5 {
		t.Errorf("%d mails, %v; want 5 and ErrTimeout", len(mails), err)
	}
	f.SendGrid.Reset()
	if len(f.SendGrid.Messages()) != 0 || f.SendGrid.Attempts() != 0 {
		t.Errorf("Reset left %d messages, %d attempts", len(f.SendGrid.Messages()), f.SendGrid.Attempts())
	}
}

func TestServiceAccountFileIsAGoogleKeyFileTheOAuthFakeTrusts(t *testing.T) {
	f := New(t)
	b, err := os.ReadFile(f.CredentialsFile)
	if err != nil {
		t.Fatal(err)
	}
	var sa map[string]string
	if err := json.Unmarshal(b, &sa); err != nil {
		t.Fatal(err)
	}
	if sa["type"] != "service_account" || sa["project_id"] != DefaultProject || sa["token_uri"] != f.OAuth.TokenURL ||
		!strings.HasSuffix(sa["client_email"], "@"+DefaultProject+".iam.gserviceaccount.com") ||
		sa["private_key_id"] == "" || sa["client_id"] == "" {
		t.Errorf("service account %v", sa)
	}
	block, _ := pem.Decode([]byte(sa["private_key"]))
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("private_key is not a PKCS#8 PEM block: %q", sa["private_key"])
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if rsaKey, ok := key.(*rsa.PrivateKey); err != nil || !ok || rsaKey.N.BitLen() != 2048 {
		t.Errorf("private key %T, %v; want RSA 2048", key, err)
	}
}

// signAssertion signs claims for sa as a service account's token request would.
func signAssertion(t *testing.T, sa *ServiceAccount, method jwt.SigningMethod, key any, edit func(*assertion)) string {
	t.Helper()
	now := time.Now()
	c := assertion{
		Scope: ScopeFirebaseMessaging + " " + ScopeCloudPlatform,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    sa.ClientEmail,
			Audience:  jwt.ClaimStrings{sa.TokenURI},
			IssuedAt:  jwt.NewNumericDate(now.Add(-10 * time.Second)),
			ExpiresAt: jwt.NewNumericDate(now.Add(-10 * time.Second).Add(time.Hour)),
		},
	}
	if edit != nil {
		edit(&c)
	}
	tok := jwt.NewWithClaims(method, c)
	tok.Header["kid"] = sa.PrivateKeyID
	if key == nil {
		key = sa.PrivateKey
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func requestToken(t *testing.T, o *OAuth, grantType, assertion string) (int, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {grantType}, "assertion": {assertion}}
	status, _, body := post(t, o.TokenURL, "application/x-www-form-urlencoded", []byte(form.Encode()), nil)
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("token answer %s: %v", body, err)
	}
	return status, m
}

func TestOAuthIssuesATokenForAnAssertionSignedByTheServiceAccount(t *testing.T) {
	f := New(t)
	sa, err := f.OAuth.NewServiceAccount(DefaultProject)
	if err != nil {
		t.Fatal(err)
	}
	status, m := requestToken(t, f.OAuth, JWTBearerGrant, signAssertion(t, sa, jwt.SigningMethodRS256, nil, nil))
	access, _ := m["access_token"].(string)
	if status != http.StatusOK || access == "" || m["token_type"] != "Bearer" || m["expires_in"] != float64(3600) {
		t.Fatalf("answer %d %v", status, m)
	}
	tok, ok := f.OAuth.Valid(access)
	if !ok || tok.ClientEmail != sa.ClientEmail || !tok.hasScope(ScopeFirebaseMessaging) || len(f.OAuth.Tokens()) != 1 {
		t.Errorf("issued %+v, valid %v", tok, ok)
	}
	if f.OAuth.TokenRequests() != 1 {
		t.Errorf("%d token requests, want 1", f.OAuth.TokenRequests())
	}
}

func TestOAuthRefusesAssertionsGoogleWouldRefuse(t *testing.T) {
	f := New(t)
	sa, err := f.OAuth.NewServiceAccount(DefaultProject)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		grantType string
		assertion string
		code      string
	}{
		{"when the grant type is not jwt-bearer", "client_credentials", signAssertion(t, sa, jwt.SigningMethodRS256, nil, nil), "unsupported_grant_type"},
		{"without an assertion", JWTBearerGrant, "", "invalid_request"},
		{"when another key signed it", JWTBearerGrant, signAssertion(t, sa, jwt.SigningMethodRS256, otherKey, nil), "invalid_grant"},
		{"when it is HMAC-signed", JWTBearerGrant, signAssertion(t, sa, jwt.SigningMethodHS256, []byte("secret"), nil), "invalid_grant"},
		{"when the issuer is unknown", JWTBearerGrant, signAssertion(t, sa, jwt.SigningMethodRS256, nil, func(c *assertion) { c.Issuer = "x@y.iam.gserviceaccount.com" }), "invalid_grant"},
		{"when the audience is not the token URL", JWTBearerGrant, signAssertion(t, sa, jwt.SigningMethodRS256, nil, func(c *assertion) { c.Audience = jwt.ClaimStrings{"https://oauth2.googleapis.com/token"} }), "invalid_grant"},
		{"when it has expired", JWTBearerGrant, signAssertion(t, sa, jwt.SigningMethodRS256, nil, func(c *assertion) {
			c.IssuedAt = jwt.NewNumericDate(time.Now().Add(-2 * time.Hour))
			c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
		}), "invalid_grant"},
		{"when it lives longer than an hour", JWTBearerGrant, signAssertion(t, sa, jwt.SigningMethodRS256, nil, func(c *assertion) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(2 * time.Hour)) }), "invalid_grant"},
		{"without a scope", JWTBearerGrant, signAssertion(t, sa, jwt.SigningMethodRS256, nil, func(c *assertion) { c.Scope = "" }), "invalid_scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, m := requestToken(t, f.OAuth, tt.grantType, tt.assertion)
			if status != http.StatusBadRequest || m["error"] != tt.code || m["error_description"] == "" {
				t.Errorf("answer %d %v; want 400 %s", status, m, tt.code)
			}
		})
	}
	if n := len(f.OAuth.Tokens()); n != 0 {
		t.Errorf("%d tokens issued for refused assertions", n)
	}
	if f.OAuth.TokenRequests() != len(tests) {
		t.Errorf("%d token requests, want %d", f.OAuth.TokenRequests(), len(tests))
	}
}

func TestOAuthAnswersProgrammedFailures(t *testing.T) {
	f := New(t)
	sa, err := f.OAuth.NewServiceAccount(DefaultProject)
	if err != nil {
		t.Fatal(err)
	}
	f.OAuth.FailNext(http.StatusServiceUnavailable, 1)
	if status, m := requestToken(t, f.OAuth, JWTBearerGrant, signAssertion(t, sa, jwt.SigningMethodRS256, nil, nil)); status != 503 || m["error"] != "internal_failure" {
		t.Errorf("programmed failure: %d %v", status, m)
	}
	if status, _ := requestToken(t, f.OAuth, JWTBearerGrant, signAssertion(t, sa, jwt.SigningMethodRS256, nil, nil)); status != 200 {
		t.Errorf("after it: %d, want 200", status)
	}
}

// accessToken gets an access token for a new service account of project.
func accessToken(t *testing.T, f *Fakes, scope string) string {
	t.Helper()
	sa, err := f.OAuth.NewServiceAccount(f.FCM.Project)
	if err != nil {
		t.Fatal(err)
	}
	_, m := requestToken(t, f.OAuth, JWTBearerGrant, signAssertion(t, sa, jwt.SigningMethodRS256, nil, func(c *assertion) { c.Scope = scope }))
	access, _ := m["access_token"].(string)
	if access == "" {
		t.Fatalf("no access token: %v", m)
	}
	return access
}

func sendPush(t *testing.T, f *Fakes, project, access, body string) (int, http.Header, []byte) {
	t.Helper()
	var headers map[string]string
	if access != "" {
		headers = map[string]string{"Authorization": "Bearer " + access}
	}
	return post(t, f.FCM.Endpoint()+"/projects/"+project+"/messages:send", "application/json", []byte(body), headers)
}

const pushBody = `{"message":{"token":"tok-1","notification":{"title":"Paid","body":"Order o-1 is paid"},"data":{"order_id":"o-1"}}}`

// googleErrorOf decodes a google.rpc.Status error body.
func googleErrorOf(t *testing.T, body []byte) (code int, status, fcmCode string) {
	t.Helper()
	var e struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Status  string `json:"status"`
			Details []struct {
				Type      string `json:"@type"`
				ErrorCode string `json:"errorCode"`
			} `json:"details"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" {
		t.Fatalf("error body %s: %v", body, err)
	}
	for _, d := range e.Error.Details {
		if d.Type == "type.googleapis.com/google.firebase.fcm.v1.FcmError" {
			fcmCode = d.ErrorCode
		}
	}
	return e.Error.Code, e.Error.Status, fcmCode
}

func TestFCMAcceptsAMessageAuthorizedByAnIssuedToken(t *testing.T) {
	f := New(t)
	access := accessToken(t, f, ScopeFirebaseMessaging)
	status, _, body := sendPush(t, f, DefaultProject, access, pushBody)
	var rsp struct{ Name string }
	if err := json.Unmarshal(body, &rsp); status != http.StatusOK || err != nil ||
		!strings.HasPrefix(rsp.Name, "projects/"+DefaultProject+"/messages/") {
		t.Fatalf("answer %d %s", status, body)
	}
	pushes, err := f.FCM.WaitMessages(1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p := pushes[0]
	if p.Name != rsp.Name || p.Token != "tok-1" || p.Title != "Paid" || p.Body != "Order o-1 is paid" ||
		p.Data["order_id"] != "o-1" || p.ValidateOnly || p.ClientEmail == "" || !json.Valid(p.Message) {
		t.Errorf("recorded %+v", p)
	}
}

func TestFCMRefusesRequestsWithoutAValidTokenScopeOrProject(t *testing.T) {
	f := New(t)
	good := accessToken(t, f, ScopeCloudPlatform)
	tests := []struct {
		name    string
		project string
		access  string
		status  int
	}{
		{"without a token", DefaultProject, "", 401},
		{"with a token the OAuth fake did not issue", DefaultProject, "ya29.forged", 401},
		{"with a token without a messaging scope", DefaultProject, accessToken(t, f, "https://www.googleapis.com/auth/userinfo.email"), 403},
		{"for another project", "other-project", good, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := sendPush(t, f, tt.project, tt.access, pushBody)
			code, _, _ := googleErrorOf(t, body)
			if status != tt.status || code != tt.status {
				t.Errorf("answer %d %s; want %d", status, body, tt.status)
			}
		})
	}
	f.OAuth.RevokeTokens()
	if status, _, _ := sendPush(t, f, DefaultProject, good, pushBody); status != 401 {
		t.Errorf("revoked token: %d, want 401", status)
	}
	if n := len(f.FCM.Messages()); n != 0 {
		t.Errorf("%d messages recorded from refused requests", n)
	}
}

func TestFCMAnswersEachErrorCodeAsFCMDoes(t *testing.T) {
	f := New(t)
	access := accessToken(t, f, ScopeFirebaseMessaging)
	tests := []struct {
		code   FCMCode
		status int
		rpc    string
	}{
		{Unregistered, 404, "NOT_FOUND"},
		{InvalidArgument, 400, "INVALID_ARGUMENT"},
		{Unavailable, 503, "UNAVAILABLE"},
		{Internal, 500, "INTERNAL"},
		{QuotaExceeded, 429, "RESOURCE_EXHAUSTED"},
		{SenderIDMismatch, 403, "PERMISSION_DENIED"},
		{ThirdPartyAuthError, 401, "UNAUTHENTICATED"},
	}
	for _, tt := range tests {
		t.Run(string(tt.code), func(t *testing.T) {
			f.FCM.FailNext(tt.code, "", 1)
			status, _, body := sendPush(t, f, DefaultProject, access, pushBody)
			code, rpc, fcmCode := googleErrorOf(t, body)
			if status != tt.status || code != tt.status || rpc != tt.rpc || fcmCode != string(tt.code) {
				t.Errorf("answer %d %s; want %d %s %s", status, body, tt.status, tt.rpc, tt.code)
			}
		})
	}
}

func TestFCMUnregisteredBodyIsExactlyFCMs(t *testing.T) {
	f := New(t)
	access := accessToken(t, f, ScopeFirebaseMessaging)
	f.FCM.FailToken("tok-1", Unregistered)
	status, _, body := sendPush(t, f, DefaultProject, access, pushBody)
	want := `{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}`
	if status != 404 || strings.TrimSpace(string(body)) != want {
		t.Errorf("answer %d %s\nwant 404 %s", status, body, want)
	}
}

func TestFCMFailsATokenUntilClearedAndQueuedFailuresInOrder(t *testing.T) {
	f := New(t)
	access := accessToken(t, f, ScopeFirebaseMessaging)
	f.FCM.FailToken("tok-1", Unregistered)
	other := strings.Replace(pushBody, "tok-1", "tok-2", 1)
	for range 2 {
		if status, _, _ := sendPush(t, f, DefaultProject, access, pushBody); status != 404 {
			t.Errorf("failed token: %d, want 404", status)
		}
	}
	if status, _, _ := sendPush(t, f, DefaultProject, access, other); status != 200 {
		t.Errorf("another token: %d, want 200", status)
	}

	f.FCM.FailNext(Unavailable, "30", 1)
	f.FCM.FailNext(QuotaExceeded, "", 1)
	if status, h, _ := sendPush(t, f, DefaultProject, access, other); status != 503 || h.Get("Retry-After") != "30" {
		t.Errorf("first queued: %d Retry-After=%q; want 503 30", status, h.Get("Retry-After"))
	}
	if status, _, _ := sendPush(t, f, DefaultProject, access, other); status != 429 {
		t.Errorf("second queued: %d, want 429", status)
	}
	f.FCM.ClearFailures()
	if status, _, _ := sendPush(t, f, DefaultProject, access, pushBody); status != 200 {
		t.Errorf("after ClearFailures: %d, want 200", status)
	}
	if n, a := len(f.FCM.Messages()), f.FCM.Attempts(); n != 2 || a != 6 {
		t.Errorf("%d messages, %d attempts; want 2 and 6", n, a)
	}
	f.FCM.Reset()
	if len(f.FCM.Messages()) != 0 || f.FCM.Attempts() != 0 {
		t.Errorf("Reset left %d messages, %d attempts", len(f.FCM.Messages()), f.FCM.Attempts())
	}
}

func TestFCMRefusesMessagesFCMWouldRefuse(t *testing.T) {
	f := New(t)
	access := accessToken(t, f, ScopeFirebaseMessaging)
	tests := []struct{ name, body string }{
		{"when the body is not JSON", `nope`},
		{"without a message", `{}`},
		{"without a target", `{"message":{"notification":{"title":"x"}}}`},
		{"with two targets", `{"message":{"token":"t","topic":"news"}}`},
		{"with a data value that is not a string", `{"message":{"token":"t","data":{"n":1}}}`},
		{"when the payload is over 4 KB", `{"message":{"token":"t","data":{"x":"` + strings.Repeat("x", 5000) + `"}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := sendPush(t, f, DefaultProject, access, tt.body)
			if code, rpc, _ := googleErrorOf(t, body); status != 400 || code != 400 || rpc != "INVALID_ARGUMENT" {
				t.Errorf("answer %d %s; want 400 INVALID_ARGUMENT", status, body)
			}
		})
	}
	status, _, body := sendPush(t, f, DefaultProject, access, `{"validate_only":true,"message":{"topic":"news"}}`)
	if status != 200 || !strings.Contains(string(body), "fake_message_id") {
		t.Errorf("validate_only: %d %s", status, body)
	}
}

func TestStartAndCloseWithoutATest(t *testing.T) {
	f, err := Start(SendGridKey("SG.other"), Project("p-2"))
	if err != nil {
		t.Fatal(err)
	}
	path, err := f.ServiceAccountFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), `"project_id": "p-2"`) {
		t.Errorf("service account %s", b)
	}
	if status, _, _ := sendMail(t, f.SendGrid, "SG.other", mailBody); status != http.StatusAccepted {
		t.Errorf("configured key: %d, want 202", status)
	}
	f.Close()
	if _, err := http.Post(f.SendGrid.URL+"/v3/mail/send", "application/json", strings.NewReader("{}")); err == nil {
		t.Error("the SendGrid fake still answers after Close")
	}
}
