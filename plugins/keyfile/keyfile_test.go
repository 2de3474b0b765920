package keyfile_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/marketmesh/marketmesh/plugins/keyfile"
)

const envName = "MARKETMESH_TEST_KEY"

// counter returns a generator of random 32-byte keys and how often it ran.
func counter() (func() ([]byte, error), *atomic.Int32) {
	var n atomic.Int32
	return func() ([]byte, error) {
		n.Add(1)
		k := make([]byte, 32)
		_, err := rand.Read(k)
		return k, err
	}, &n
}

func TestLoadGeneratesTheKeyOnceAndReusesIt(t *testing.T) {
	t.Setenv(envName, "")
	path := filepath.Join(t.TempDir(), "secrets", "jwt.key") // the folder does not exist yet
	gen, calls := counter()

	first, err := keyfile.Load(envName, path, gen)
	if err != nil {
		t.Fatalf("first Load: %v", err)
	}
	second, err := keyfile.Load(envName, path, gen)
	if err != nil {
		t.Fatalf("second Load: %v", err)
	}
	if len(first) != 32 || !bytes.Equal(first, second) {
		t.Fatalf("keys differ or have the wrong size: %x vs %x", first, second)
	}
	if calls.Load() != 1 {
		t.Fatalf("generate ran %d times, want 1", calls.Load())
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if strings.TrimSpace(string(b)) != base64.StdEncoding.EncodeToString(first) {
		t.Fatalf("key file holds %q, want the base64 key", b)
	}
}

func TestConcurrentLoadsOfAMissingFileAgreeOnOneKey(t *testing.T) {
	t.Setenv(envName, "")
	// Repeat: the window between creating the file and writing the key is small.
	for round := range 50 {
		dir := t.TempDir()
		path := filepath.Join(dir, "jwt.key")
		gen, _ := counter()
		const loaders = 4
		keys := make([][]byte, loaders)
		errs := make([]error, loaders)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range loaders {
			wg.Go(func() {
				<-start
				keys[i], errs[i] = keyfile.Load(envName, path, gen)
			})
		}
		close(start)
		wg.Wait()
		for i := range loaders {
			if errs[i] != nil {
				t.Fatalf("round %d: loader %d: %v", round, i, errs[i])
			}
			if len(keys[i]) != 32 || !bytes.Equal(keys[i], keys[0]) {
				t.Fatalf("round %d: loader %d got key %x, loader 0 got %x", round, i, keys[i], keys[0])
			}
		}
		onDisk, err := keyfile.Load(envName, path, nil)
		if err != nil || !bytes.Equal(onDisk, keys[0]) {
			t.Fatalf("round %d: the file holds %x (%v), the loaders got %x", round, onDisk, err, keys[0])
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Fatalf("round %d: %d files left in the key folder, want only the key", round, len(entries))
		}
	}
}

func TestLoadPrefersTheEnvironment(t *testing.T) {
	want := []byte("0123456789abcdef0123456789abcdef")
	t.Setenv(envName, " "+base64.StdEncoding.EncodeToString(want)+"\n")
	path := filepath.Join(t.TempDir(), "jwt.key")
	gen, calls := counter()
	got, err := keyfile.Load(envName, path, gen)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %q, want the env key", got)
	}
	if calls.Load() != 0 {
		t.Fatal("generate ran although the env var is set")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a key file was written although the env var is set (stat: %v)", err)
	}
}

func TestLoadFails(t *testing.T) {
	tests := []struct {
		name     string
		env      string
		file     string // written to the key path when not empty
		noPath   bool
		generate bool
		want     string // substring of the error
	}{
		{name: "an env value that is not base64 names the variable", env: "not base64!", generate: true, want: envName},
		{name: "a key file that is not base64 names the file", file: "%%%\n", generate: true, want: "jwt.key"},
		{name: "no env and no path is an error", noPath: true, generate: true, want: "neither"},
		{name: "a missing file without a generator names the variable", want: envName + " is not set and the key file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(envName, tt.env)
			path := filepath.Join(t.TempDir(), "jwt.key")
			if tt.file != "" {
				if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tt.noPath {
				path = ""
			}
			var gen func() ([]byte, error)
			if tt.generate {
				gen, _ = counter()
			}
			k, err := keyfile.Load(envName, path, gen)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %x, %v; want an error mentioning %q", k, err, tt.want)
			}
		})
	}
}

func TestLoadReportsGeneratorErrors(t *testing.T) {
	t.Setenv(envName, "")
	boom := errors.New("no entropy")
	path := filepath.Join(t.TempDir(), "jwt.key")
	_, err := keyfile.Load(envName, path, func() ([]byte, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Load error = %v, want it to wrap %v", err, boom)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a key file exists after a failed generate (stat: %v)", err)
	}
}

func TestLoadNeverGeneratesOutsideDevelopment(t *testing.T) {
	t.Setenv(envName, "")
	keyfile.Generate(false)
	t.Cleanup(func() { keyfile.Generate(true) })
	path := filepath.Join(t.TempDir(), "jwt.key")
	gen, calls := counter()
	_, err := keyfile.Load(envName, path, gen)
	if err == nil || !strings.Contains(err.Error(), "set "+envName) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Load error = %v, want one naming %s and %s", err, envName, path)
	}
	if calls.Load() != 0 {
		t.Fatal("generate ran although generation is off")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a key file was written although generation is off (stat: %v)", err)
	}

	// A key that is there (a docker secret, an env value) still loads.
	want := []byte("0123456789abcdef0123456789abcdef")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(want)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := keyfile.Load(envName, path, gen)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Load = %q, %v; want the file's key", got, err)
	}
}
