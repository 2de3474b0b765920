package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/plugins/config"
)

// serviceConfig is shaped like a service's configuration: the shared mesh
// part inline plus the service's own sections.
type serviceConfig struct {
	config.Mesh `yaml:",inline"`
	Server      config.Server `yaml:"server"`
	Store       struct {
		Path string `yaml:"path" env:"TEST_STORE_PATH"`
	} `yaml:"store"`
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const fileBody = `
env: test
data_dir: /var/lib/marketmesh
consul:
  address: consul.internal:8500
  check_interval: 3s
rpc:
  request_timeout: 1500ms
  read_retries: 1
  breaker_failures: 4
log:
  level: debug
server:
  address: 127.0.0.1:9001
  ops_address: 127.0.0.1:9101
store:
  path: users.db
`

func TestLoadReadsTheFileThenAppliesEnvOverrides(t *testing.T) {
	t.Setenv(config.FileEnv, writeFile(t, fileBody))
	t.Setenv("MARKETMESH_RPC_TIMEOUT", "750ms")
	t.Setenv("MARKETMESH_BREAKER_FAILURES", "9")
	t.Setenv("CONSUL_HTTP_ADDR", "10.0.0.5:8500")
	t.Setenv("TEST_STORE_PATH", "/tmp/other.db")

	cfg := serviceConfig{Mesh: config.Defaults()}
	if err := config.Load(&cfg); err != nil {
		t.Fatalf("Load: %v", err)
	}

	checks := []struct {
		name      string
		got, want any
	}{
		{"file value replaces a default", cfg.Env, "test"},
		{"file duration is parsed", cfg.Consul.CheckInterval.D(), 3 * time.Second},
		{"env beats the file for a duration", cfg.RPC.RequestTimeout.D(), 750 * time.Millisecond},
		{"env beats the file for an unsigned int", cfg.RPC.BreakerFailures, uint32(9)},
		{"env beats the file for a string", cfg.Consul.Address, "10.0.0.5:8500"},
		{"env reaches nested service sections", cfg.Store.Path, "/tmp/other.db"},
		{"file value without env stays", cfg.RPC.ReadRetries, 1},
		{"default survives when neither sets it", cfg.RPC.DialTimeout.D(), time.Second},
		{"default kv prefix survives", cfg.Consul.KVPrefix, "marketmesh/config"},
		{"service section is read", cfg.Server.OpsAddress, "127.0.0.1:9101"},
		{"log level is read", cfg.Log.Level, "debug"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	if got := cfg.Path("users.db"); got != "/var/lib/marketmesh/users.db" {
		t.Errorf("Path resolves against data_dir: got %q", got)
	}
	if got := cfg.Path("/abs.db"); got != "/abs.db" {
		t.Errorf("Path keeps absolute paths: got %q", got)
	}
}

func TestLoadFails(t *testing.T) {
	tests := []struct {
		name    string
		file    string // config file body; "" means a path that does not exist
		env     map[string]string
		wantErr []string // substrings of the error
	}{
		{
			name:    "a bad env value names the variable",
			file:    fileBody,
			env:     map[string]string{"MARKETMESH_BREAKER_FAILURES": "many"},
			wantErr: []string{"MARKETMESH_BREAKER_FAILURES", "many"},
		},
		{
			name:    "a bad env duration names the variable",
			file:    fileBody,
			env:     map[string]string{"MARKETMESH_RPC_TIMEOUT": "soon"},
			wantErr: []string{"MARKETMESH_RPC_TIMEOUT"},
		},
		{
			name:    "a negative value for an unsigned field is refused",
			file:    fileBody,
			env:     map[string]string{"MARKETMESH_BREAKER_FAILURES": "-1"},
			wantErr: []string{"MARKETMESH_BREAKER_FAILURES"},
		},
		{
			name:    "an explicit config file that does not exist is an error",
			file:    "",
			wantErr: []string{"no such file"},
		},
		{
			name:    "malformed yaml names the file",
			file:    "rpc: [unclosed\n",
			wantErr: []string{"config.yaml"},
		},
		{
			name:    "a bad duration in the file is an error",
			file:    "rpc:\n  request_timeout: forever\n",
			wantErr: []string{"forever"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "missing.yaml")
			if tt.file != "" {
				path = writeFile(t, tt.file)
			}
			t.Setenv(config.FileEnv, path)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg := serviceConfig{Mesh: config.Defaults()}
			err := config.Load(&cfg)
			if err == nil {
				t.Fatalf("Load succeeded, want an error containing %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadWithoutAnyFileUsesDefaultsAndEnv(t *testing.T) {
	t.Chdir(t.TempDir()) // no config/local.yaml here or in any parent of a temp dir
	t.Setenv(config.FileEnv, "")
	t.Setenv("MARKETMESH_ENV", "ci")
	cfg := serviceConfig{Mesh: config.Defaults()}
	if err := config.Load(&cfg); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Env != "ci" || cfg.RPC != config.Defaults().RPC {
		t.Fatalf("got env %q rpc %+v; want env from the environment and default rpc", cfg.Env, cfg.RPC)
	}
}

func TestParseRPC(t *testing.T) {
	base := config.Defaults().RPC
	tests := []struct {
		name    string
		doc     string
		want    func(r *config.RPC) // applied to base to get the expected value
		wantErr string
	}{
		{
			name: "yaml changes only the fields it names",
			doc:  "request_timeout: 750ms\nbreaker_failures: 3\n",
			want: func(r *config.RPC) {
				r.RequestTimeout = config.Duration(750 * time.Millisecond)
				r.BreakerFailures = 3
			},
		},
		{
			name: "json changes only the fields it names",
			doc:  `{"request_timeout": "750ms", "read_retries": 0, "breaker_open_for": "1s"}`,
			want: func(r *config.RPC) {
				r.RequestTimeout = config.Duration(750 * time.Millisecond)
				r.ReadRetries = 0
				r.BreakerOpenFor = config.Duration(time.Second)
			},
		},
		{
			name: "an empty json object changes nothing",
			doc:  `{}`,
			want: func(*config.RPC) {},
		},
		{name: "a zero request timeout is refused", doc: "request_timeout: 0s", wantErr: "request_timeout"},
		{name: "a negative request timeout is refused", doc: "request_timeout: -1s", wantErr: "request_timeout"},
		{name: "a zero dial timeout in json is refused", doc: `{"dial_timeout": "0s"}`, wantErr: "dial_timeout"},
		{name: "negative read retries are refused", doc: "read_retries: -1", wantErr: "read_retries"},
		{name: "negative read retries in json are refused", doc: `{"read_retries": -1}`, wantErr: "read_retries"},
		{name: "too many read retries are refused", doc: "read_retries: 11", wantErr: "read_retries"},
		{name: "zero breaker failures are refused", doc: "breaker_failures: 0", wantErr: "breaker_failures"},
		{name: "negative breaker failures in json are refused", doc: `{"breaker_failures": -2}`, wantErr: "breaker_failures"},
		{name: "a zero breaker open time is refused", doc: "breaker_open_for: 0s", wantErr: "breaker_open_for"},
		{name: "a 1ns request timeout is refused", doc: `{"request_timeout":"1ns"}`, wantErr: "request_timeout must be within 50ms..1m0s"},
		{name: "a 10 minute request timeout is refused", doc: `{"request_timeout":"10m"}`, wantErr: "request_timeout"},
		{name: "an hour-long dial timeout is refused", doc: "dial_timeout: 1h", wantErr: "dial_timeout"},
		{name: "a breaker open for a day is refused", doc: "breaker_open_for: 24h", wantErr: "breaker_open_for"},
		{name: "a breaker that never opens is refused", doc: "breaker_failures: 1000000", wantErr: "breaker_failures"},
		{name: "the bounds themselves are accepted", doc: `{"request_timeout":"50ms","dial_timeout":"10s","breaker_open_for":"10m","breaker_failures":1000,"read_retries":10}`,
			want: func(r *config.RPC) {
				r.RequestTimeout, r.DialTimeout = config.Duration(50*time.Millisecond), config.Duration(10*time.Second)
				r.BreakerOpenFor, r.BreakerFailures, r.ReadRetries = config.Duration(10*time.Minute), 1000, 10
			}},
		{name: "a negative breaker open time in json is refused", doc: `{"breaker_open_for": "-5s"}`, wantErr: "breaker_open_for"},
		{name: "an unknown json field is refused", doc: `{"request_timeout": "1s", "retries": 3}`, wantErr: "retries"},
		{name: "a misspelt json field is refused", doc: `{"breaker_failure": 3}`, wantErr: "breaker_failure"},
		{name: "a malformed duration is refused", doc: "request_timeout: fast", wantErr: "fast"},
		{name: "malformed yaml is refused", doc: "request_timeout: [", wantErr: "yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := base
			err := config.ParseRPC([]byte(tt.doc), &got)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRPC(%q) error = %v, want one mentioning %q", tt.doc, err, tt.wantErr)
				}
				if got != base {
					t.Fatalf("ParseRPC changed dst on error: %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRPC(%q): %v", tt.doc, err)
			}
			want := base
			tt.want(&want)
			if got != want {
				t.Fatalf("ParseRPC(%q)\n got %+v\nwant %+v", tt.doc, got, want)
			}
		})
	}
}

func TestEnvOverridesTextAndSliceFields(t *testing.T) {
	var dst struct {
		Hosts   []string        `env:"TEST_HOSTS"`
		Wait    config.Duration `env:"TEST_WAIT"`
		Verbose bool            `env:"TEST_VERBOSE"`
		Count   int64           `env:"TEST_COUNT"`
		Unset   string          `env:"TEST_UNSET_VARIABLE"`
		private string          //nolint:unused // unexported fields are skipped
	}
	dst.Unset = "kept"
	t.Setenv("TEST_HOSTS", "a,b,c")
	t.Setenv("TEST_WAIT", "2m")
	t.Setenv("TEST_VERBOSE", "true")
	t.Setenv("TEST_COUNT", "-4")
	if err := config.ApplyEnv(&dst); err != nil {
		t.Fatal(err)
	}
	if strings.Join(dst.Hosts, "|") != "a|b|c" || dst.Wait.D() != 2*time.Minute || !dst.Verbose || dst.Count != -4 || dst.Unset != "kept" {
		t.Fatalf("ApplyEnv gave %+v", dst)
	}
	_ = dst.private
}
