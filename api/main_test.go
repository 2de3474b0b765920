package main

import (
	"net/netip"
	"path/filepath"
	"slices"
	"testing"

	"github.com/marketmesh/marketmesh/api/internal/clientaddr"
	"github.com/marketmesh/marketmesh/plugins/config"
)

func TestAdminUsersComeFromAPIAdminUsers(t *testing.T) {
	tests := []struct {
		name, env string
		want      []string
	}{
		{"one user ID", "01HADMIN", []string{"01HADMIN"}},
		{"comma-separated IDs, spaces and empty entries dropped", " 01HA , ,01HB,", []string{"01HA", "01HB"}},
		{"an empty value grants nobody", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("API_ADMIN_USERS", tt.env)
			var cfg Config
			if err := config.ApplyEnv(&cfg); err != nil {
				t.Fatal(err)
			}
			if got := adminUsers(cfg.API.AdminUsers); !slices.Equal(got, tt.want) {
				t.Fatalf("admin users %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTheNewSettingsComeFromTheEnvironment(t *testing.T) {
	t.Setenv("API_OPS_ADDRESS", "0.0.0.0:9200")
	t.Setenv("API_TRUSTED_PROXIES", "172.18.0.0/16, 10.0.0.7,")
	t.Setenv("API_CORS_ORIGINS", "https://shop.example, ")
	t.Setenv("API_REGISTER_PER_HOUR_IP", "5")
	t.Setenv("API_LOGIN_FAILURES_PER_HOUR_ACCOUNT", "50")
	var cfg Config
	if err := config.ApplyEnv(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.API.OpsAddress != "0.0.0.0:9200" || cfg.API.RegisterPerHourIP != 5 || cfg.API.LoginFailuresPerHourAccount != 50 {
		t.Errorf("ops %q, register %d, account failures %d", cfg.API.OpsAddress, cfg.API.RegisterPerHourIP, cfg.API.LoginFailuresPerHourAccount)
	}
	trusted, err := clientaddr.ParseTrusted(cfg.API.TrustedProxies)
	if err != nil || len(trusted) != 2 || trusted[1] != netip.MustParsePrefix("10.0.0.7/32") {
		t.Errorf("trusted proxies %v, %v", trusted, err)
	}
	if got := cleanList(cfg.API.CORSOrigins); !slices.Equal(got, []string{"https://shop.example"}) {
		t.Errorf("CORS origins %q", got)
	}
}

func TestTheConfigFilesNameTheOpsListener(t *testing.T) {
	for file, want := range map[string]string{"local.yaml": "127.0.0.1:9200", "docker.yaml": "0.0.0.0:9200"} {
		t.Run(file, func(t *testing.T) {
			t.Setenv("MARKETMESH_CONFIG", filepath.Join("..", "config", file))
			var cfg Config
			if err := config.Load(&cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.API.OpsAddress != want {
				t.Errorf("api.ops_address = %q, want %q", cfg.API.OpsAddress, want)
			}
			if cfg.API.RegisterPerHourIP != 20 || cfg.API.LoginFailuresPerHourAccount != 100 {
				t.Errorf("register_per_hour_ip %d, login_failures_per_hour_account %d", cfg.API.RegisterPerHourIP, cfg.API.LoginFailuresPerHourAccount)
			}
			if _, err := clientaddr.ParseTrusted(cfg.API.TrustedProxies); err != nil {
				t.Error(err)
			}
		})
	}
}
