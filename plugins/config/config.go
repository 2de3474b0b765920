// Package config loads marketmesh configuration: one YAML file per
// environment (config/local.yaml, config/docker.yaml), then environment
// variables named by `env` struct tags (12-factor), then, for the values that
// may change while running, Consul KV (see Live).
package config

import (
	"encoding"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// FileEnv names the environment variable that selects the config file.
const FileEnv = "MARKETMESH_CONFIG"

// DefaultFile is used when FileEnv is unset: the local environment.
const DefaultFile = "config/local.yaml"

// Duration is a time.Duration that reads "2s" from YAML and env.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Mesh is the part of the configuration every process shares.
type Mesh struct {
	Env     string `yaml:"env" env:"MARKETMESH_ENV"`
	DataDir string `yaml:"data_dir" env:"MARKETMESH_DATA_DIR"`
	Consul  Consul `yaml:"consul"`
	RPC     RPC    `yaml:"rpc"`
	Log     Log    `yaml:"log"`
	// DrainDelay is the pause between deregistering and stopping, so callers'
	// registry caches learn an instance is going before it stops answering.
	DrainDelay Duration `yaml:"drain_delay" env:"MARKETMESH_DRAIN_DELAY"`
}

// Consul says where the registry and KV store are, and which ACL token this
// process presents there (see APIConfig).
type Consul struct {
	Address string `yaml:"address" env:"CONSUL_HTTP_ADDR"`
	// Token is the ACL token (its secret ID) sent with every Consul request.
	// Prefer TokenFile: a variable shows in the process environment.
	Token string `yaml:"token" env:"CONSUL_HTTP_TOKEN"`
	// TokenFile holds the token (surrounding space trimmed); read at start.
	// Used when Token is empty. The same variable names as Consul's CLI.
	TokenFile string `yaml:"token_file" env:"CONSUL_HTTP_TOKEN_FILE"`
	// KVPrefix is where live values are read from: <prefix>/rpc holds RPC as YAML or JSON.
	KVPrefix string `yaml:"kv_prefix" env:"MARKETMESH_KV_PREFIX"`
	// CheckInterval is how often Consul probes each instance's /healthz.
	CheckInterval Duration `yaml:"check_interval" env:"MARKETMESH_CHECK_INTERVAL"`
}

// RPC tunes the client stack. Every field may be changed live through Consul KV.
type RPC struct {
	RequestTimeout Duration `yaml:"request_timeout" json:"request_timeout" env:"MARKETMESH_RPC_TIMEOUT"`
	DialTimeout    Duration `yaml:"dial_timeout" json:"dial_timeout" env:"MARKETMESH_RPC_DIAL_TIMEOUT"`
	// ReadRetries is how many extra attempts a read gets; writes never retry.
	ReadRetries int `yaml:"read_retries" json:"read_retries" env:"MARKETMESH_RPC_READ_RETRIES"`
	// BreakerFailures consecutive infrastructure failures open a node's breaker.
	BreakerFailures uint32 `yaml:"breaker_failures" json:"breaker_failures" env:"MARKETMESH_BREAKER_FAILURES"`
	// BreakerOpenFor is how long an open breaker refuses calls before a trial call.
	BreakerOpenFor Duration `yaml:"breaker_open_for" json:"breaker_open_for" env:"MARKETMESH_BREAKER_OPEN_FOR"`
}

// Log configures slog.
type Log struct {
	Level string `yaml:"level" env:"MARKETMESH_LOG_LEVEL"`
}

// Server is where one service listens.
type Server struct {
	// Address is the RPC listen address; ":0" or "127.0.0.1:0" picks a free port.
	Address string `yaml:"address" env:"ADDRESS"`
	// Advertise is the host other services use to reach this one (defaults to the listen host).
	Advertise string `yaml:"advertise" env:"ADVERTISE"`
	// OpsAddress serves /healthz, /readyz and /metrics; Consul probes /healthz here.
	OpsAddress string `yaml:"ops_address" env:"OPS_ADDRESS"`
}

// Defaults returns the values used when neither file nor env sets them.
func Defaults() Mesh {
	return Mesh{
		Env:     "local",
		DataDir: ".data",
		Consul:  Consul{Address: "127.0.0.1:8500", KVPrefix: "marketmesh/config", CheckInterval: Duration(2 * time.Second)},
		RPC: RPC{
			RequestTimeout:  Duration(time.Second),
			DialTimeout:     Duration(time.Second),
			ReadRetries:     1,
			BreakerFailures: 5,
			BreakerOpenFor:  Duration(5 * time.Second),
		},
		Log:        Log{Level: "info"},
		DrainDelay: Duration(time.Second),
	}
}

// Load fills dst (a pointer to a struct, usually embedding Mesh) from the
// file named by $MARKETMESH_CONFIG (default config/local.yaml, searched in
// the working directory and its parents) and then from env tags.
// A missing default file is not an error: defaults and env still apply.
func Load(dst any) error {
	path, explicit := os.Getenv(FileEnv), true
	if path == "" {
		path, explicit = findUp(DefaultFile), false
	}
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			if err := yaml.Unmarshal(b, dst); err != nil {
				return fmt.Errorf("config %s: %w", path, err)
			}
		case explicit || !os.IsNotExist(err):
			return fmt.Errorf("config: %w", err)
		}
	}
	return ApplyEnv(dst)
}

func findUp(rel string) string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		p := filepath.Join(dir, rel)
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// ApplyEnv overrides every field tagged `env:"NAME"` whose variable is set.
// A struct field tagged with a name ending in "_" (`env:"USERS_"`) prefixes
// the names inside it, so config.Server's ADDRESS becomes USERS_ADDRESS.
func ApplyEnv(dst any) error {
	return applyEnv(reflect.ValueOf(dst).Elem(), "")
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

func applyEnv(v reflect.Value, prefix string) error {
	t := v.Type()
	for i := range t.NumField() {
		f, fv := t.Field(i), v.Field(i)
		if !f.IsExported() {
			continue
		}
		name := f.Tag.Get("env")
		if fv.Kind() == reflect.Struct && (name == "" || strings.HasSuffix(name, "_")) {
			if err := applyEnv(fv, prefix+name); err != nil {
				return err
			}
			continue
		}
		if name == "" {
			continue
		}
		name = prefix + name
		raw, ok := os.LookupEnv(name)
		if !ok {
			continue
		}
		if err := setField(fv, raw); err != nil {
			return fmt.Errorf("config: env %s=%q: %w", name, raw, err)
		}
	}
	return nil
}

func setField(fv reflect.Value, raw string) error {
	if fv.CanAddr() && fv.Addr().Type().Implements(textUnmarshaler) {
		return fv.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(raw))
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return err
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return err
		}
		fv.SetInt(n)
	case reflect.Uint, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			return err
		}
		fv.SetUint(n)
	case reflect.Slice:
		if fv.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported slice type %s", fv.Type())
		}
		parts := strings.Split(raw, ",")
		fv.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("unsupported field type %s", fv.Type())
	}
	return nil
}

// LocalEnv is the development environment (make run, tests): the only one
// where missing secret keys are generated instead of refused.
const LocalEnv = "local"

// IsLocal reports whether this is the development environment.
func (m Mesh) IsLocal() bool { return m.Env == LocalEnv }

// mesh is implemented by *Mesh and by every struct embedding Mesh.
func (m *Mesh) mesh() *Mesh { return m }

// MeshOf returns the Mesh that cfg (a pointer to Mesh or to a struct
// embedding it, as given to Load) holds, if any.
func MeshOf(cfg any) (*Mesh, bool) {
	if m, ok := cfg.(interface{ mesh() *Mesh }); ok {
		return m.mesh(), true
	}
	return nil, false
}

// Path resolves p against the data directory unless it is absolute.
func (m Mesh) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(m.DataDir, p)
}
