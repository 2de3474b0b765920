// Package keyfile loads secret keys from the environment or a file, and in
// development generates one on first use. No secret is ever compiled in.
package keyfile

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

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
	if k, err := read(path); err == nil || !errors.Is(err, fs.ErrNotExist) || generate == nil {
		return k, err
	}
	k, err := generate()
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
