package config_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/meshtest"
)

// logTap records the messages slog emits while a test runs.
type logTap struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logTap) Enabled(context.Context, slog.Level) bool { return true }
func (l *logTap) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logTap) WithGroup(string) slog.Handler            { return l }
func (l *logTap) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}

func (l *logTap) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}

func (l *logTap) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

func tapLogs(t *testing.T) *logTap {
	t.Helper()
	tap := &logTap{}
	prev := slog.Default()
	slog.SetDefault(slog.New(tap))
	t.Cleanup(func() { slog.SetDefault(prev) })
	return tap
}

func TestLiveWatchConsul(t *testing.T) {
	agent := meshtest.Consul(t)
	tap := tapLogs(t)
	kv := agent.Client.KV()
	const prefix = "marketmesh/test"
	put := func(v string) {
		t.Helper()
		if _, err := kv.Put(&consul.KVPair{Key: prefix + "/rpc", Value: []byte(v)}, nil); err != nil {
			t.Fatalf("kv put: %v", err)
		}
	}
	waitFor := func(what string, cond func(config.RPC) bool, live *config.Live) {
		t.Helper()
		meshtest.Eventually(t, 5*time.Second, func() error {
			if got := live.Get(); !cond(got) {
				return fmt.Errorf("%s: live values are %+v", what, got)
			}
			return nil
		})
	}

	base := config.Defaults().RPC
	// A value present before the watch starts is applied at once.
	put("read_retries: 1\n")
	live := config.NewLive(base)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		live.WatchConsul(ctx, kv, prefix, base)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("WatchConsul did not return after its context ended")
		}
	})
	waitFor("initial value", func(r config.RPC) bool { return r.ReadRetries == 1 }, live)

	// A change lands within seconds, on top of base (the earlier read_retries is gone).
	put(`{"request_timeout": "750ms", "breaker_failures": 2}`)
	waitFor("json change", func(r config.RPC) bool {
		return r.RequestTimeout.D() == 750*time.Millisecond && r.BreakerFailures == 2 && r.ReadRetries == base.ReadRetries
	}, live)
	good, version := live.Get(), live.Version()

	// A bad value is logged and ignored: the last good values stay.
	put("request_timeout: 0s\n")
	meshtest.Eventually(t, 5*time.Second, func() error {
		if tap.count("config: ignoring bad live value") == 0 {
			return fmt.Errorf("the bad value was not reported; logs: %q", tap.all())
		}
		return nil
	})
	if got := live.Get(); got != good || live.Version() != version {
		t.Fatalf("after a bad value live is %+v (version %d), want the last good %+v (version %d)", got, live.Version(), good, version)
	}

	// The watch keeps going after a bad value.
	put("breaker_open_for: 1s\n")
	waitFor("change after a bad value", func(r config.RPC) bool { return r.BreakerOpenFor.D() == time.Second }, live)

	// Deleting the key returns to base.
	if _, err := kv.Delete(prefix+"/rpc", nil); err != nil {
		t.Fatal(err)
	}
	waitFor("key deleted", func(r config.RPC) bool { return r == base }, live)
}

func TestLiveVersionChangesOnEverySet(t *testing.T) {
	live := config.NewLive(config.Defaults().RPC)
	v := live.Version()
	next := live.Get()
	next.ReadRetries = 0
	live.Set(next)
	if live.Version() != v+1 || live.Get().ReadRetries != 0 {
		t.Fatalf("after Set: version %d (was %d), values %+v", live.Version(), v, live.Get())
	}
}
