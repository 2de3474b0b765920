package config

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
		opts := (&consul.QueryOptions{WaitIndex: index, WaitTime: 30 * time.Second}).WithContext(ctx)
		pair, meta, err := kv.Get(key, opts)
		if err != nil {
			if ctx.Err() == nil {
				slog.Debug("config: consul kv watch", "key", key, "err", err)
				sleep(ctx, 2*time.Second)
			}
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
	switch {
	case next.RequestTimeout <= 0:
		return errors.New("request_timeout must be positive")
	case next.DialTimeout <= 0:
		return errors.New("dial_timeout must be positive")
	case next.ReadRetries < 0 || next.ReadRetries > 10:
		return errors.New("read_retries must be within 0..10")
	case next.BreakerFailures == 0:
		return errors.New("breaker_failures must be at least 1")
	case next.BreakerOpenFor <= 0:
		return errors.New("breaker_open_for must be positive")
	}
	*dst = next
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

// ConsulKV returns the KV handle of the Consul agent at addr.
func ConsulKV(addr string) (*consul.KV, error) {
	cfg := consul.DefaultConfig()
	cfg.Address = addr
	c, err := consul.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client %s: %w", addr, err)
	}
	return c.KV(), nil
}
