package provider

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestLogSinksLogTheMessageMaskedAndSendNothing(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))

	email := NewLogEmail(Logger(log))
	id, err := email.Send(t.Context(), Email{DeliveryID: "d-1", To: "alice@example.com", Subject: "Receipt", Text: "Thank you"})
	if err != nil || id != "log-d-1" || email.Name() != "log" {
		t.Errorf("email: %q, %v, Name %q", id, err, email.Name())
	}
	pusher := NewLogPush(Logger(log))
	id, err = pusher.Send(t.Context(), Push{DeliveryID: "d-2", Token: "fcm-token-0123456789abcdef", Title: "Paid", Body: "Order o-1"})
	if err != nil || id != "log-d-2" || pusher.Name() != "log" {
		t.Errorf("push: %q, %v, Name %q", id, err, pusher.Name())
	}

	out := buf.String()
	if strings.Contains(out, "alice@") || strings.Contains(out, "0123456789abcdef") {
		t.Errorf("the log shows the address or the token:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want 2:\n%s", len(lines), out)
	}
	var e, p map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &p); err != nil {
		t.Fatal(err)
	}
	if e["to"] != "al***@example.com" || e["subject"] != "Receipt" || e["delivery"] != "d-1" {
		t.Errorf("email log %v", e)
	}
	if p["token"] != "fcm-to…" || p["title"] != "Paid" || p["delivery"] != "d-2" {
		t.Errorf("push log %v", p)
	}
}

func TestMaskShowsAtMostHalf(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.com": "al***@example.com",
		"al@example.com":    "a***@example.com",
		"a@example.com":     "***@example.com",
		"no-at-sign":        "no***",
		"":                  "***",
	} {
		if got := MaskEmail(in); got != want {
			t.Errorf("MaskEmail(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"fcm-token-0123456789": "fcm-to…",
		"abcd":                 "ab…",
		"":                     "…",
	} {
		if got := MaskToken(in); got != want {
			t.Errorf("MaskToken(%q) = %q, want %q", in, got, want)
		}
	}
}
