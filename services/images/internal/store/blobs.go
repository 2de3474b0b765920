package store

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
)

// blobDir is the content-addressed file tree: <root>/<sha[0:2]>/<sha>, with
// temporary files in <root>/tmp.
type blobDir struct {
	root, tmp string
	// stripes serialise work on one blob: a blob's lock is stripes[sha[0:2]].
	stripes [256]sync.Mutex
}

func openBlobDir(root string) (*blobDir, error) {
	d := &blobDir{root: root, tmp: filepath.Join(root, "tmp")}
	if err := os.MkdirAll(d.tmp, 0o700); err != nil {
		return nil, err
	}
	// Left by a process that stopped mid-upload; nothing references them.
	entries, err := os.ReadDir(d.tmp)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(d.tmp, e.Name())); err != nil {
			slog.Warn("images: stale temporary file not removed", "name", e.Name(), "err", err)
		}
	}
	return d, nil
}

func (d *blobDir) createTemp() (*os.File, error) {
	return os.CreateTemp(d.tmp, "upload-*")
}

// blobPath is where the blob with hex SHA-256 sha lives; anything that is not
// 64 lower-case hex digits is refused, so no value can leave the directory.
func blobPath(root, sha string) (string, error) {
	if len(sha) != 64 {
		return "", fmt.Errorf("store: bad blob name %q", sha)
	}
	for i := 0; i < len(sha); i++ {
		if c := sha[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", fmt.Errorf("store: bad blob name %q", sha)
		}
	}
	return filepath.Join(root, sha[:2], sha), nil
}

// lock takes the locks of the given blobs (in a fixed order, so two
// callers never wait on each other) and returns the unlock.
func (d *blobDir) lock(shas []string) (unlock func()) {
	idx := make([]int, 0, len(shas))
	for _, sha := range shas {
		n, err := strconv.ParseUint(sha[:min(2, len(sha))], 16, 8)
		if err != nil {
			n = 0 // a bad name fails later, in blobPath
		}
		idx = append(idx, int(n))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		d.stripes[i].Lock()
	}
	return func() {
		for _, i := range slices.Backward(idx) {
			d.stripes[i].Unlock()
		}
	}
}

// place makes temp the blob sha: renamed into place, or removed when the
// blob exists already (same name, same bytes). The caller holds the lock.
func (d *blobDir) place(sha, temp string) error {
	path, err := blobPath(d.root, sha)
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); err == nil {
		return os.Remove(temp)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Rename(temp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// remove deletes the blob's file; the caller holds the lock.
func (d *blobDir) remove(sha string) error {
	path, err := blobPath(d.root, sha)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
