package main

import (
	"slices"
	"testing"

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
