package service_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marketmesh/marketmesh/plugins/config"
	"github.com/marketmesh/marketmesh/plugins/keyfile"
	"github.com/marketmesh/marketmesh/plugins/service"
)

// bootWith writes a config file and boots a process's configuration from it.
func bootWith(t *testing.T, yaml string) (*config.Mesh, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "env.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(config.FileEnv, path)
	for _, v := range []string{"CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE", "MARKETMESH_ENV"} {
		t.Setenv(v, "") // restored after the test
		os.Unsetenv(v)  // a set but empty variable would override the file
	}
	t.Cleanup(func() { keyfile.Generate(true) })
	cfg := struct {
		config.Mesh `yaml:",inline"`
	}{Mesh: config.Defaults()}
	err := service.Boot(&cfg, func() (string, string) { return "", "" })
	return &cfg.Mesh, err
}

// Outside env local a missing key stops the start, naming its variable; a
// Consul token file that cannot be read stops it too.
func TestBootSetsTheKeyAndTokenPolicies(t *testing.T) {
	t.Setenv("MARKETMESH_TEST_KEY", "")
	missingKey := filepath.Join(t.TempDir(), "keys", "bank.key")
	token := filepath.Join(t.TempDir(), "users.token")
	if err := os.WriteFile(token, []byte("4f6c0b0e-1d1a-4c55-9a43-6f0f4c1f6b11\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gen := func() ([]byte, error) { return make([]byte, 32), nil }

	if _, err := bootWith(t, "env: docker\nconsul:\n  token_file: "+token+"\n"); err != nil {
		t.Fatalf("Boot (docker, token file present): %v", err)
	}
	_, err := keyfile.Load("MARKETMESH_TEST_KEY", missingKey, gen)
	if err == nil || !strings.Contains(err.Error(), "MARKETMESH_TEST_KEY is not set") {
		t.Fatalf("a missing key under env docker: %v, want an error naming the variable", err)
	}
	if _, err := os.Stat(missingKey); err == nil {
		t.Fatal("a key was generated under env docker")
	}

	if _, err := bootWith(t, "env: local\n"); err != nil {
		t.Fatalf("Boot (local): %v", err)
	}
	if _, err := keyfile.Load("MARKETMESH_TEST_KEY", missingKey, gen); err != nil {
		t.Fatalf("a missing key under env local is generated: %v", err)
	}

	_, err = bootWith(t, "env: docker\nconsul:\n  token_file: "+filepath.Join(t.TempDir(), "nope.token")+"\n")
	if err == nil || !strings.Contains(err.Error(), "CONSUL_HTTP_TOKEN_FILE") {
		t.Fatalf("Boot with a missing token file: %v, want an error naming CONSUL_HTTP_TOKEN_FILE", err)
	}
}
