package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/api/internal/clientaddr"
	"github.com/marketmesh/marketmesh/plugins/auth"
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
			// Access tokens are short; refresh tokens keep sessions going.
			if cfg.API.TokenTTL.D() != 15*time.Minute || cfg.API.RefreshPerMinuteIP != 60 || len(cfg.API.JWTOldPublicKeys) != 0 {
				t.Errorf("token_ttl %v, refresh_per_minute_ip %d, jwt_old_public_keys %q", cfg.API.TokenTTL.D(), cfg.API.RefreshPerMinuteIP, cfg.API.JWTOldPublicKeys)
			}
			if _, err := clientaddr.ParseTrusted(cfg.API.TrustedProxies); err != nil {
				t.Error(err)
			}
		})
	}
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestTokenSettingsComeFromTheEnvironment(t *testing.T) {
	old1, old2, current := newKey(t), newKey(t), newKey(t)
	t.Setenv("API_JWT_OLD_PUBLIC_KEYS", " "+auth.EncodePublicKey(old1.Public().(ed25519.PublicKey))+", ,"+auth.EncodePublicKey(old2.Public().(ed25519.PublicKey))+",")
	t.Setenv("API_TOKEN_TTL", "5m")
	t.Setenv("API_TOKEN_LEEWAY", "0s")
	t.Setenv("API_REFRESH_PER_MINUTE_IP", "7")
	var cfg Config
	if err := config.ApplyEnv(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.API.RefreshPerMinuteIP != 7 {
		t.Errorf("refresh per minute %d", cfg.API.RefreshPerMinuteIP)
	}
	s, err := tokenSigner(current, cfg.API.JWTOldPublicKeys, cfg.API.TokenTTL.D(), cfg.API.TokenLeeway.D())
	if err != nil {
		t.Fatal(err)
	}
	if s.TTL() != 5*time.Minute || s.KeyID() != auth.KeyID(current.Public().(ed25519.PublicKey)) {
		t.Errorf("TTL %v, kid %s", s.TTL(), s.KeyID())
	}
	// Tokens of both old keys verify; a third key's do not.
	for name, k := range map[string]ed25519.PrivateKey{"the first old key": old1, "the second old key": old2, "the current key": current} {
		tok, _, err := auth.NewSigner(k, auth.TTL(5*time.Minute)).Issue("u1")
		if err != nil {
			t.Fatal(err)
		}
		if sub, err := s.Verify(tok); err != nil || sub != "u1" {
			t.Errorf("a token of %s: %q, %v", name, sub, err)
		}
	}
	tok, _, _ := auth.NewSigner(newKey(t), auth.TTL(5*time.Minute)).Issue("u1")
	if _, err := s.Verify(tok); !errors.Is(err, auth.ErrUnknownKey) {
		t.Errorf("a token of another key: %v, want ErrUnknownKey", err)
	}
}

func TestBadTokenSettingsStopTheStart(t *testing.T) {
	key := newKey(t)
	tests := []struct {
		name          string
		old           []string
		ttl, leeway   time.Duration
		names, reason string
	}{
		{"an old key that is not base64", []string{"not base64!"}, time.Minute, 0, "API_JWT_OLD_PUBLIC_KEYS", "base64"},
		{"an old key given as a private key", []string{auth.EncodePublicKey(ed25519.PublicKey(key))}, time.Minute, 0, "API_JWT_OLD_PUBLIC_KEYS", "32 bytes"},
		{"a zero TTL", nil, 0, 0, "API_TOKEN_TTL", "positive"},
		{"a negative leeway", nil, time.Minute, -time.Second, "API_TOKEN_LEEWAY", "0..5m0s"},
		{"a leeway over 5 minutes", nil, time.Minute, 6 * time.Minute, "API_TOKEN_LEEWAY", "0..5m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tokenSigner(key, tt.old, tt.ttl, tt.leeway)
			if err == nil || !strings.Contains(err.Error(), tt.names) || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("tokenSigner = %v, want an error naming %s and saying %q", err, tt.names, tt.reason)
			}
		})
	}
}
