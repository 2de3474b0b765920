package provider

import (
	"context"
	"log/slog"
	"strings"
)

// LogEmail is the email sender of a deployment without SendGrid: it logs
// each email, recipient masked, and sends nothing.
type LogEmail struct{ log *slog.Logger }

// NewLogEmail returns a log sink for email (Logger sets where it writes).
func NewLogEmail(opts ...Option) *LogEmail { return &LogEmail{log: newOptions(opts...).Logger} }

// Name is "log".
func (*LogEmail) Name() string { return "log" }

// Send logs e and returns "log-<delivery id>". The address is masked in
// the text too.
func (l *LogEmail) Send(ctx context.Context, e Email) (string, error) {
	text := e.Text
	if e.To != "" {
		text = strings.ReplaceAll(text, e.To, MaskEmail(e.To))
	}
	logger(l.log).InfoContext(ctx, "notifications: email not sent (log sink)",
		"delivery", e.DeliveryID, "to", MaskEmail(e.To), "subject", e.Subject, "text", text)
	return "log-" + e.DeliveryID, nil
}

// logger is l, or the default logger as it is now (the service sets its
// logging up after building its senders).
func logger(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.Default()
}

// LogPush is the push sender of a deployment without FCM: it logs each
// push, token masked, and sends nothing.
type LogPush struct{ log *slog.Logger }

// NewLogPush returns a log sink for push (Logger sets where it writes).
func NewLogPush(opts ...Option) *LogPush { return &LogPush{log: newOptions(opts...).Logger} }

// Name is "log".
func (*LogPush) Name() string { return "log" }

// Send logs p and returns "log-<delivery id>".
func (l *LogPush) Send(ctx context.Context, p Push) (string, error) {
	logger(l.log).InfoContext(ctx, "notifications: push not sent (log sink)",
		"delivery", p.DeliveryID, "token", MaskToken(p.Token), "title", p.Title, "body", p.Body, "data", p.Data)
	return "log-" + p.DeliveryID, nil
}

// MaskEmail hides most of an address's local part for logs:
// "alice@example.com" → "al***@example.com" (at most half the local part shows).
func MaskEmail(addr string) string {
	local, domain, found := strings.Cut(addr, "@")
	masked := keep(local, 2) + "***"
	if found {
		masked += "@" + domain
	}
	return masked
}

// MaskToken shows the start of a device token for logs: its first 6
// characters (at most half of it) and "…".
func MaskToken(token string) string { return keep(token, 6) + "…" }

// keep returns the first n runes of s, but no more than half of them.
func keep(s string, n int) string {
	r := []rune(s)
	return string(r[:min(n, len(r)/2)])
}
