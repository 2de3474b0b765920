package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marketmesh/marketmesh/plugins/config"
)

func TestConsulAPIConfigCarriesTheToken(t *testing.T) {
	t.Setenv("CONSUL_HTTP_TOKEN", "from-consul's-own-env")
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", "")
	dir := t.TempDir()
	file := filepath.Join(dir, "users.token")
	if err := os.WriteFile(file, []byte("  4f6c0b0e-1d1a-4c55-9a43-6f0f4c1f6b11\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		c     config.Consul
		token string
	}{
		{"no token: anonymous, whatever Consul's variables say", config.Consul{Address: "10.0.0.1:8500"}, ""},
		{"the token", config.Consul{Address: "10.0.0.1:8500", Token: " s3cret "}, "s3cret"},
		{"the file, trimmed", config.Consul{Address: "10.0.0.1:8500", TokenFile: file}, "4f6c0b0e-1d1a-4c55-9a43-6f0f4c1f6b11"},
		{"the token before the file", config.Consul{Address: "10.0.0.1:8500", Token: "s3cret", TokenFile: file}, "s3cret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tt.c.APIConfig()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Address != "10.0.0.1:8500" || cfg.Token != tt.token || cfg.TokenFile != "" {
				t.Fatalf("APIConfig = address %q token %q file %q; want 10.0.0.1:8500, %q, no file", cfg.Address, cfg.Token, cfg.TokenFile, tt.token)
			}
		})
	}

	empty := filepath.Join(dir, "empty.token")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(dir, "missing.token"), empty} {
		_, err := config.Consul{TokenFile: f}.APIConfig()
		if err == nil || !strings.Contains(err.Error(), "CONSUL_HTTP_TOKEN_FILE") || !strings.Contains(err.Error(), f) {
			t.Errorf("APIConfig with token file %s: %v, want an error naming the variable and the file", f, err)
		}
	}
}

func TestConsulTokenFromEnv(t *testing.T) {
	t.Setenv("CONSUL_HTTP_TOKEN", "")
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", "/run/secrets/consul.token")
	m := config.Defaults()
	if err := config.ApplyEnv(&m); err != nil {
		t.Fatal(err)
	}
	if m.Consul.TokenFile != "/run/secrets/consul.token" {
		t.Fatalf("TokenFile = %q", m.Consul.TokenFile)
	}
	got, ok := config.MeshOf(&struct {
		config.Mesh `yaml:",inline"`
	}{Mesh: m})
	if !ok || got.Consul.TokenFile != m.Consul.TokenFile || !got.IsLocal() {
		t.Fatalf("MeshOf = %+v, %v", got, ok)
	}
	if _, ok := config.MeshOf(&struct{ X int }{}); ok {
		t.Fatal("MeshOf found a Mesh in a struct without one")
	}
}
