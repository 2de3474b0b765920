package config

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	consul "github.com/hashicorp/consul/api"
	"gopkg.in/yaml.v3"
)

// Live holds the RPC values that operators may tune while the mesh runs
// (timeouts, retries, breaker thresholds). Readers call Get on every use,
// which is a single atomic load.
type Live struct {
	v       atomic.Pointer[RPC]
	version atomic.Uint64
}

// NewLive starts with the values from file and env.
func NewLive(initial RPC) *Live {
	l := &Live{}
	l.Set(initial)
	return l
}

// Get returns the current values.
func (l *Live) Get() RPC { return *l.v.Load() }

// Version increases on every Set; users that cache derived state (breakers)
// rebuild it when it changes.
func (l *Live) Version() uint64 { return l.version.Load() }

// Set replaces the current values.
func (l *Live) Set(r RPC) {
	l.v.Store(&r)
	l.version.Add(1)
}

// WatchConsul applies <prefix>/rpc from Consul KV (YAML or JSON, any subset of
// RPC's fields, on top of base) now and on every change, until ctx ends. It uses
// Consul blocking queries, so a change lands within a second or so. Errors
// (Consul down, bad value) are logged and the last good values stay.
func (l *Live) WatchConsul(ctx context.Context, kv *consul.KV, prefix string, base RPC) {
	key := strings.TrimSuffix(prefix, "/") + "/rpc"
	var index uint64
	for ctx.Err() == nil {
		// A long wait: each answer is a Consul request from every process.
		// An agent that restarted breaks the connection, and the query after
		// an error starts from index 0, so a restarted agent's lower index
		// never leaves the watch waiting out the whole time.
		opts := (&consul.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Minute}).WithContext(ctx)
		pair, meta, err := kv.Get(key, opts)
		if err != nil {
			if ctx.Err() == nil {
				slog.Debug("config: consul kv watch", "key", key, "err", err)
				sleep(ctx, 2*time.Second)
			}
			index = 0
			continue
		}
		if meta.LastIndex < index {
			index = 0 // Consul's index went backwards (agent restarted): start over
			continue
		}
		changed := meta.LastIndex != index
		index = meta.LastIndex
		if !changed {
			continue
		}
		next := base
		if pair != nil {
			if err := ParseRPC(pair.Value, &next); err != nil {
				slog.Error("config: ignoring bad live value", "key", key, "err", err)
				continue
			}
		}
		if next != l.Get() {
			slog.Info("config: live rpc values changed", "key", key, "values", fmt.Sprintf("%+v", next))
			l.Set(next)
		}
	}
}

// ParseRPC decodes a YAML (or JSON, a subset of YAML) document over dst and
// refuses values that would disable the mechanisms they tune.
func ParseRPC(b []byte, dst *RPC) error {
	next := *dst // fields absent from b keep their values
	if json.Valid(b) {
		// yaml.v3 reads JSON too, but json names unknown fields and bad types clearly.
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&next); err != nil {
			return err
		}
	} else if err := yaml.Unmarshal(b, &next); err != nil {
		return err
	}
	if err := next.CheckBounds(); err != nil {
		return err
	}
	*dst = next
	return nil
}

// Bounds of the live RPC values. Whoever can write Consul KV can tune the
// mesh, but not disable it: a 1 ns timeout would fail every call, a 10 min
// one would hold every caller's goroutines on a hung node.
const (
	MinRequestTimeout = 50 * time.Millisecond
	MaxRequestTimeout = time.Minute
	MinDialTimeout    = 10 * time.Millisecond
	MaxDialTimeout    = 10 * time.Second
	MaxReadRetries    = 10
	MaxBreakerFailure = 1000
	MinBreakerOpenFor = 100 * time.Millisecond
	MaxBreakerOpenFor = 10 * time.Minute
)

// CheckBounds refuses values outside the bounds above, naming the field.
func (r RPC) CheckBounds() error {
	within := func(name string, d Duration, lo, hi time.Duration) error {
		if d.D() < lo || d.D() > hi {
			return fmt.Errorf("%s must be within %s..%s, got %s", name, lo, hi, d.D())
		}
		return nil
	}
	if err := within("request_timeout", r.RequestTimeout, MinRequestTimeout, MaxRequestTimeout); err != nil {
		return err
	}
	if err := within("dial_timeout", r.DialTimeout, MinDialTimeout, MaxDialTimeout); err != nil {
		return err
	}
	if err := within("breaker_open_for", r.BreakerOpenFor, MinBreakerOpenFor, MaxBreakerOpenFor); err != nil {
		return err
	}
	switch {
	case r.ReadRetries < 0 || r.ReadRetries > MaxReadRetries:
		return fmt.Errorf("read_retries must be within 0..%d, got %d", MaxReadRetries, r.ReadRetries)
	case r.BreakerFailures == 0 || r.BreakerFailures > MaxBreakerFailure:
		return fmt.Errorf("breaker_failures must be within 1..%d, got %d", MaxBreakerFailure, r.BreakerFailures)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// ConsulKV returns the KV handle of the Consul agent c names, with c's token.
func ConsulKV(c Consul) (*consul.KV, error) {
	client, err := ConsulClient(c)
	if err != nil {
		return nil, err
	}
	return client.KV(), nil
}
