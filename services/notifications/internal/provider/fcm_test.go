package provider

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/plugins/saasfake"
)

func push() Push {
	return Push{DeliveryID: "d-1", Token: "tok-ada-phone", Title: "Payment received", Body: "Your order o-1 is paid: $64.50.",
		Data: map[string]string{"order_id": "o-1"}}
}

func newFCM(t *testing.T, f *saasfake.Fakes, opts ...Option) *FCM {
	t.Helper()
	fcm, err := NewFCM(t.Context(), f.CredentialsFile, f.FCM.Endpoint(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return fcm
}

func TestFCMSendsThePushAfterGettingATokenWithTheServiceAccountKey(t *testing.T) {
	f := saasfake.New(t)
	fcm := newFCM(t, f)
	if f.OAuth.TokenRequests() != 0 {
		t.Errorf("NewFCM fetched a token")
	}
	name, err := fcm.Send(t.Context(), push())
	if err != nil {
		t.Fatal(err)
	}
	second := push()
	second.Token, second.DeliveryID = "tok-ada-tablet", "d-2"
	if _, err := fcm.Send(t.Context(), second); err != nil {
		t.Fatal(err)
	}
	pushes, err := f.FCM.WaitMessages(2, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p := pushes[0]
	if name != p.Name || !strings.HasPrefix(name, "projects/"+saasfake.DefaultProject+"/messages/") {
		t.Errorf("returned %q, fake answered %q", name, p.Name)
	}
	if p.Token != "tok-ada-phone" || p.Title != "Payment received" || p.Body != "Your order o-1 is paid: $64.50." ||
		p.Data["order_id"] != "o-1" || p.Data["delivery_id"] != "d-1" || pushes[1].Data["delivery_id"] != "d-2" {
		t.Errorf("recorded %+v", p)
	}
	if f.OAuth.TokenRequests() != 1 || len(f.OAuth.Tokens()) != 1 || !strings.HasPrefix(p.ClientEmail, "notifications-") {
		t.Errorf("%d token requests, %d tokens, sent as %q; want one token reused", f.OAuth.TokenRequests(), len(f.OAuth.Tokens()), p.ClientEmail)
	}
	if fcm.Name() != "fcm" || fcm.Project() != saasfake.DefaultProject {
		t.Errorf("Name %q Project %q", fcm.Name(), fcm.Project())
	}
}

func TestFCMClassifiesItsAnswers(t *testing.T) {
	tests := []struct {
		name       string
		code       saasfake.FCMCode
		retryAfter string
		kind       Kind
		after      time.Duration
	}{
		{"UNREGISTERED means the token is invalid", saasfake.Unregistered, "", KindTokenInvalid, 0},
		{"INVALID_ARGUMENT on the token means the token is invalid", saasfake.InvalidArgument, "", KindTokenInvalid, 0},
		// Over 2 minutes, firebase-admin-go gives up at once instead of waiting.
		{"UNAVAILABLE is retryable after Retry-After", saasfake.Unavailable, "300", KindRetryable, 5 * time.Minute},
		{"INTERNAL is retryable", saasfake.Internal, "", KindRetryable, 0},
		{"QUOTA_EXCEEDED is retryable after Retry-After", saasfake.QuotaExceeded, "30", KindRetryable, 30 * time.Second},
		{"SENDER_ID_MISMATCH is permanent but keeps the token", saasfake.SenderIDMismatch, "", KindPermanent, 0},
		{"THIRD_PARTY_AUTH_ERROR is permanent", saasfake.ThirdPartyAuthError, "", KindPermanent, 0},
	}
	f := saasfake.New(t)
	fcm := newFCM(t, f)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.FCM.Reset()
			f.FCM.FailToken(push().Token, tt.code)
			if tt.retryAfter != "" {
				f.FCM.ClearFailures()
				f.FCM.FailNext(tt.code, tt.retryAfter, 1)
			}
			_, err := fcm.Send(t.Context(), push())
			e := providerError(t, err)
			retry, after := Retryable(err)
			if e.Kind != tt.kind || retry != (tt.kind == KindRetryable) || after != tt.after ||
				TokenInvalid(err) != (tt.kind == KindTokenInvalid) || Permanent(err) == retry {
				t.Errorf("%v: kind %v, Retryable %v %v; want %v after %v", err, e.Kind, retry, after, tt.kind, tt.after)
			}
			if e.Code != string(tt.code) || e.Status == 0 {
				t.Errorf("code %q status %d, want %s", e.Code, e.Status, tt.code)
			}
			if n := f.FCM.Attempts(); n != 1 {
				t.Errorf("%d attempts, want 1 (no retry inside the library)", n)
			}
		})
	}
}

func TestFCMInvalidArgumentAboutTheMessageKeepsTheToken(t *testing.T) {
	f := saasfake.New(t)
	fcm := newFCM(t, f)
	p := push()
	p.Data["blob"] = strings.Repeat("x", 5000) // over FCM's 4 KB
	_, err := fcm.Send(t.Context(), p)
	if e := providerError(t, err); e.Kind != KindPermanent || e.Code != "INVALID_ARGUMENT" || TokenInvalid(err) {
		t.Errorf("%v: kind %v, want permanent without TokenInvalid", err, e.Kind)
	}
}

func TestFCMLibraryRetriesOneUnavailableByItself(t *testing.T) {
	f := saasfake.New(t)
	fcm := newFCM(t, f)
	f.FCM.FailNext(saasfake.Unavailable, "", 1)
	if _, err := fcm.Send(t.Context(), push()); err != nil {
		t.Fatalf("one 503: %v; firebase-admin-go retries it at once", err)
	}
	if f.FCM.Attempts() != 2 || len(f.FCM.Messages()) != 1 {
		t.Errorf("%d attempts, %d messages; want 2 and 1", f.FCM.Attempts(), len(f.FCM.Messages()))
	}
}

func TestFCMFailuresWithoutAnAnswerAreRetryableWithinTheTimeout(t *testing.T) {
	f := saasfake.New(t)
	down := newFCM(t, f, Timeout(500*time.Millisecond))

	// A key the token endpoint does not know: the token request gets 400
	// invalid_grant, which firebase-admin-go cannot tell from a network error.
	other := saasfake.New(t)
	sa, err := other.OAuth.NewServiceAccount(saasfake.DefaultProject)
	if err != nil {
		t.Fatal(err)
	}
	sa.TokenURI = f.OAuth.TokenURL
	b, err := sa.JSON()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "unknown-key.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	unknownKey, err := NewFCM(t.Context(), path, f.FCM.Endpoint(), Timeout(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	_, err = unknownKey.Send(t.Context(), push())
	if retry, _ := Retryable(err); !retry || time.Since(start) > 3*time.Second || f.FCM.Attempts() != 0 {
		t.Errorf("unknown key: %v after %v, %d FCM attempts; want retryable within the timeout", err, time.Since(start), f.FCM.Attempts())
	}
	if f.OAuth.TokenRequests() == 0 {
		t.Error("no token request reached the token endpoint")
	}

	f.FCM.Close()
	start = time.Now()
	_, err = down.Send(t.Context(), push())
	if retry, _ := Retryable(err); !retry || time.Since(start) > 3*time.Second {
		t.Errorf("FCM down: %v after %v; want retryable within the timeout", err, time.Since(start))
	}
}

func TestFCMRefusingOurAccessTokenIsPermanent(t *testing.T) {
	f := saasfake.New(t)
	other := saasfake.New(t) // its token endpoint issues tokens f's FCM does not accept
	fcm, err := NewFCM(t.Context(), other.CredentialsFile, f.FCM.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	_, err = fcm.Send(t.Context(), push())
	if e := providerError(t, err); e.Kind != KindPermanent || e.Status != 401 {
		t.Errorf("%v: kind %v status %d; want permanent 401", err, e.Kind, e.Status)
	}
}

func TestNewFCMNamesTheCredentialsFileItCannotUse(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for name, path := range map[string]string{
		"missing":               filepath.Join(dir, "nowhere.json"),
		"not JSON":              write("garbage.json", "{"),
		"not a service account": write("user.json", `{"type":"authorized_user","project_id":"p"}`),
		"without project":       write("noproject.json", `{"type":"service_account","client_email":"a@b","private_key":"k"}`),
		"without key":           write("nokey.json", `{"type":"service_account","project_id":"p"}`),
	} {
		_, err := NewFCM(t.Context(), path, "", Timeout(time.Second))
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v; want an error naming %s", name, err, path)
		}
	}
}

func TestFCMRefusesAPushWithoutTokenWithoutCallingFCM(t *testing.T) {
	f := saasfake.New(t)
	fcm := newFCM(t, f)
	if _, err := fcm.Send(t.Context(), Push{DeliveryID: "d", Title: "t"}); !Permanent(err) || TokenInvalid(err) {
		t.Errorf("%v; want permanent", err)
	}
	if f.FCM.Attempts() != 0 {
		t.Errorf("%d requests to FCM", f.FCM.Attempts())
	}
}
