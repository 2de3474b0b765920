// Package logging sets up slog as JSON on stderr for every marketmesh
// process, adds the request ID of the context to every record, and routes
// go-micro's own logger through the same handler.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	mlog "go-micro.dev/v4/logger"

	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
)

// Setup installs the default slog logger for service (e.g. "marketmesh.users").
func Setup(service, level string) *slog.Logger { return SetupWriter(os.Stderr, service, level) }

// SetupWriter is Setup with the log written to w instead of stderr (benchmarks).
func SetupWriter(w io.Writer, service, level string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv})
	l := slog.New(requestIDHandler{h}).With("service", service)
	slog.SetDefault(l)
	mlog.DefaultLogger = &microLogger{l: l, fields: map[string]interface{}{}}
	return l
}

// requestIDHandler adds request_id from the context, so call sites need not.
type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := rpcmeta.RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

// microLogger adapts go-micro's logger interface to slog.
type microLogger struct {
	l      *slog.Logger
	fields map[string]interface{}
	opts   mlog.Options
}

func (m *microLogger) Init(opts ...mlog.Option) error {
	for _, o := range opts {
		o(&m.opts)
	}
	return nil
}

func (m *microLogger) Options() mlog.Options { return m.opts }

func (m *microLogger) Fields(fields map[string]interface{}) mlog.Logger {
	merged := make(map[string]interface{}, len(m.fields)+len(fields))
	for k, v := range m.fields {
		merged[k] = v
	}
	for k, v := range fields {
		merged[k] = v
	}
	return &microLogger{l: m.l, fields: merged, opts: m.opts}
}

func (m *microLogger) Log(level mlog.Level, v ...interface{}) {
	m.emit(level, strings.TrimSpace(fmt.Sprint(v...)))
}

func (m *microLogger) Logf(level mlog.Level, format string, v ...interface{}) {
	m.emit(level, fmt.Sprintf(format, v...))
}

func (m *microLogger) emit(level mlog.Level, msg string) {
	lv := slog.LevelInfo
	switch {
	case level <= mlog.DebugLevel:
		lv = slog.LevelDebug
	case level == mlog.WarnLevel:
		lv = slog.LevelWarn
	case level >= mlog.ErrorLevel:
		lv = slog.LevelError
	}
	args := make([]any, 0, 2*len(m.fields)+2)
	args = append(args, "component", "go-micro")
	for k, v := range m.fields {
		args = append(args, k, v)
	}
	m.l.Log(context.Background(), lv, msg, args...)
}

func (m *microLogger) String() string { return "slog" }
