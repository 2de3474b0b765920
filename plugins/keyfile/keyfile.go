// Package keyfile loads secret keys from the environment or a file, and in
// development generates one on first use. No secret is ever compiled in.
//
// Outside development (config `env` other than "local"; service.Boot calls
// Generate(false)) a missing key is never generated: the start fails with a
// message naming the variable, so a deploy cannot silently run on a fresh
// random key that its other instances, or its next start, do not share.
package keyfile

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
)

var noGenerate atomic.Bool

// Generate sets whether Load may generate a missing key (it may by default:
// development and tests). service.Boot turns it off outside env local.
func Generate(allowed bool) { noGenerate.Store(!allowed) }

// Load returns the key: base64 from the environment variable envName if set;
// else the file at path (base64 text); else, when generate is not nil, a new
// key from generate written to path with mode 0600. Two processes racing to
// create the file agree on the winner's key.
func Load(envName, path string, generate func() ([]byte, error)) ([]byte, error) {
	if v := strings.TrimSpace(os.Getenv(envName)); v != "" {
		k, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, fmt.Errorf("keyfile: %s is not base64: %w", envName, err)
		}
		return k, nil
	}
	if path == "" {
		return nil, fmt.Errorf("keyfile: neither %s nor a key file is configured", envName)
	}
	k, err := read(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if generate == nil || noGenerate.Load() {
		return nil, fmt.Errorf("keyfile: %s is not set and the key file %s does not exist "+
			"(keys are generated only in development, env: local): set %s (base64) or provide the file",
			envName, path, envName)
	}
	k, err = generate()
	if err != nil {
		return nil, fmt.Errorf("keyfile: generate %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	// Write the key to a private temporary file, then link it into place:
	// the link fails if path exists, and nobody ever reads a half-written key
	// (with O_EXCL on path itself the loser could read the still empty file).
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	defer os.Remove(f.Name())
	_, werr := f.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("keyfile: write %s: %w", path, werr)
	}
	if err := os.Link(f.Name(), path); errors.Is(err, fs.ErrExist) {
		return read(path) // another process won the race
	} else if err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	return k, nil
}

func read(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("keyfile: %s is not base64: %w", path, err)
	}
	return k, nil
}
