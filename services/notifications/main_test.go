package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/saasfake"
	"github.com/marketmesh/marketmesh/services/notifications/internal/provider"
)

func testConfig() Config {
	cfg := Config{Mesh: config.Defaults()}
	cfg.Notifications.EmailFrom = "marketmesh <no-reply@marketmesh.local>"
	return cfg
}

func TestAnUnusableFCMCredentialsFileStopsStartUpNamingTheFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name string
		path string
	}{
		{"a missing file", filepath.Join(dir, "missing.json")},
		{"a directory", dir},
		{"garbage", write("garbage.json", "this is not a key file\x00\xff")},
		{"an empty file", write("empty.json", "")},
		{"a key that is not a service account's", write("user.json", `{"type":"authorized_user","client_id":"x"}`)},
		{"a service account without a private key", write("nokey.json",
			`{"type":"service_account","project_id":"p","client_email":"a@p.iam.gserviceaccount.com"}`)},
		{"a service account whose private key is not a key", write("badkey.json",
			`{"type":"service_account","project_id":"p","client_email":"a@p.iam.gserviceaccount.com",`+
				`"private_key":"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Notifications.FCMCredentialsFile = tt.path
			email, push, err := providers(t.Context(), cfg)
			if err == nil {
				t.Fatalf("providers = %v, %v, nil; want an error", email, push)
			}
			if !strings.Contains(err.Error(), tt.path) {
				t.Errorf("error %q does not name the file %s", err, tt.path)
			}
		})
	}
}

func TestWithoutCredentialsBothChannelsGoToTheLog(t *testing.T) {
	email, push, err := providers(t.Context(), testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if email.Name() != "log" || push.Name() != "log" {
		t.Errorf("email %q, push %q; want the log sinks", email.Name(), push.Name())
	}
}

func TestConfiguredProvidersSendWhereTheConfigSays(t *testing.T) {
	fakes := saasfake.New(t)
	cfg := testConfig()
	n := &cfg.Notifications
	n.SendGridAPIKey = saasfake.DefaultSendGridKey
	n.SendGridEndpoint = fakes.SendGrid.URL

	email, push, err := providers(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if email.Name() != "sendgrid" || push.Name() != "log" {
		t.Errorf("with a SendGrid key: email %q, push %q; want sendgrid and the log", email.Name(), push.Name())
	}
	if _, err := email.Send(t.Context(), provider.Email{DeliveryID: "d-1", To: "ada@example.com", Subject: "Hi", Text: "Hello\n"}); err != nil {
		t.Fatalf("send through the configured endpoint: %v", err)
	}
	mails, err := fakes.SendGrid.WaitMessages(1, 10*time.Second)
	if err != nil || mails[0].From.Email != "no-reply@marketmesh.local" || mails[0].From.Name != "marketmesh" {
		t.Errorf("SendGrid got %+v, %v; want one mail from the configured address", mails, err)
	}

	n.FCMCredentialsFile = fakes.CredentialsFile
	n.FCMEndpoint = fakes.FCM.Endpoint()
	_, push, err = providers(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if push.Name() != "fcm" {
		t.Fatalf("with a credentials file: push %q, want fcm", push.Name())
	}
	if _, err := push.Send(t.Context(), provider.Push{DeliveryID: "d-2", Token: "tok-1", Title: "Hi", Body: "Hello"}); err != nil {
		t.Fatalf("push through the configured endpoint: %v", err)
	}
	if pushes, err := fakes.FCM.WaitMessages(1, 10*time.Second); err != nil || pushes[0].Token != "tok-1" {
		t.Errorf("FCM got %v, %v; want one push", len(pushes), err)
	}

	n.EmailFrom = "not an address"
	if _, _, err := providers(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "not an address") {
		t.Errorf("a malformed from address: %v, want an error naming it", err)
	}
}
