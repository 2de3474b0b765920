package store_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/marketmesh/marketmesh/services/images/internal/image"
	"github.com/marketmesh/marketmesh/services/images/internal/store"
)

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	s       *store.Store
	blobDir string
}

func newStore(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	blobDir := filepath.Join(dir, "blobs")
	s, err := store.Open(filepath.Join(dir, "db", "images.db"), blobDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &fixture{s: s, blobDir: blobDir}
}

func sum(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// temp writes data to a new temporary file of the store.
func (f *fixture) temp(t *testing.T, data []byte) store.NewBlob {
	t.Helper()
	tf, err := f.s.CreateTemp()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tf.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tf.Close(); err != nil {
		t.Fatal(err)
	}
	return store.NewBlob{SHA256: sum(data), Temp: tf.Name()}
}

// add stores an image of owner whose original and thumbnail hold the given bytes.
func (f *fixture) add(t *testing.T, ownerType, ownerID, uploader string, original, thumb []byte) image.Image {
	t.Helper()
	o, th := f.temp(t, original), f.temp(t, thumb)
	im := image.Image{
		ID: ulid.Make().String(), OwnerType: ownerType, OwnerID: ownerID, UploaderID: uploader,
		Original:  image.Blob{SHA256: o.SHA256, ContentType: "image/png", Bytes: int64(len(original)), Width: 10, Height: 10},
		Thumbnail: image.Blob{SHA256: th.SHA256, ContentType: "image/jpeg", Bytes: int64(len(thumb)), Width: 10, Height: 10},
		CreatedAt: t0,
	}
	if err := f.s.Add(im, o, th); err != nil {
		t.Fatalf("Add = %v", err)
	}
	return im
}

func (f *fixture) exists(sha string) bool {
	_, err := os.Stat(filepath.Join(f.blobDir, sha[:2], sha))
	return err == nil
}

func (f *fixture) refs(t *testing.T, sha string) uint64 {
	t.Helper()
	n, err := f.s.Refs(sha)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func tmpCount(t *testing.T, blobDir string) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(blobDir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func allow(image.Image) error { return nil }

func TestAddPlacesBlobsUnderTheirHash(t *testing.T) {
	f := newStore(t)
	im := f.add(t, "product", "p1", "u1", []byte("original"), []byte("thumb"))
	for _, sha := range []string{im.Original.SHA256, im.Thumbnail.SHA256} {
		if !f.exists(sha) {
			t.Errorf("blob %s missing", sha)
		}
		if n := f.refs(t, sha); n != 1 {
			t.Errorf("refs(%s) = %d, want 1", sha, n)
		}
	}
	if n := tmpCount(t, f.blobDir); n != 0 {
		t.Errorf("%d temporary files left", n)
	}
	r, err := f.s.OpenBlob(im.Original.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 64)
	n, _ := r.Read(buf)
	if string(buf[:n]) != "original" {
		t.Errorf("blob holds %q", buf[:n])
	}
	got, err := f.s.Get(im.ID)
	if err != nil || got.Original != im.Original || got.Thumbnail != im.Thumbnail || !got.CreatedAt.Equal(t0) {
		t.Fatalf("Get = %+v, %v", got, err)
	}
}

func TestSameBytesShareOneBlobUntilTheLastImageGoes(t *testing.T) {
	f := newStore(t)
	a := f.add(t, "product", "p1", "u1", []byte("same"), []byte("thumb"))
	b := f.add(t, "publication", "q1", "u2", []byte("same"), []byte("thumb"))
	sha := a.Original.SHA256
	if b.Original.SHA256 != sha {
		t.Fatal("same bytes, different hashes")
	}
	if n := f.refs(t, sha); n != 2 {
		t.Fatalf("refs = %d, want 2", n)
	}
	if n := tmpCount(t, f.blobDir); n != 0 {
		t.Fatalf("%d temporary files left (the duplicate must be dropped)", n)
	}
	if _, err := f.s.Delete(a.ID, allow); err != nil {
		t.Fatal(err)
	}
	if !f.exists(sha) || !f.exists(b.Thumbnail.SHA256) {
		t.Fatal("blob removed while another image references it")
	}
	if n := f.refs(t, sha); n != 1 {
		t.Fatalf("refs = %d, want 1", n)
	}
	if _, err := f.s.Delete(b.ID, allow); err != nil {
		t.Fatal(err)
	}
	if f.exists(sha) || f.exists(b.Thumbnail.SHA256) {
		t.Fatal("blob kept after its last image was deleted")
	}
	if n := f.refs(t, sha); n != 0 {
		t.Fatalf("refs = %d, want 0", n)
	}
}

func TestAnOriginalEqualToAnotherImagesThumbnailIsCountedOnce(t *testing.T) {
	f := newStore(t)
	a := f.add(t, "product", "p1", "u1", []byte("big"), []byte("small"))
	b := f.add(t, "product", "p1", "u1", []byte("small"), []byte("smaller"))
	if n := f.refs(t, a.Thumbnail.SHA256); n != 2 {
		t.Fatalf("refs = %d, want 2 (a thumbnail and an original)", n)
	}
	if _, err := f.s.Delete(a.ID, allow); err != nil {
		t.Fatal(err)
	}
	if !f.exists(b.Original.SHA256) {
		t.Fatal("b's original removed with a's thumbnail")
	}
}

func TestDeleteAsksBeforeRemoving(t *testing.T) {
	f := newStore(t)
	im := f.add(t, "product", "p1", "u1", []byte("o"), []byte("t"))
	notTheUploader := func(im image.Image) error { return im.CheckUploader("someone-else") }
	if _, err := f.s.Delete(im.ID, notTheUploader); !errors.Is(err, image.ErrForbidden) {
		t.Fatalf("Delete = %v, want the refusal", err)
	}
	if _, err := f.s.Get(im.ID); err != nil {
		t.Fatalf("refused delete removed the image: %v", err)
	}
	if !f.exists(im.Original.SHA256) || f.refs(t, im.Original.SHA256) != 1 {
		t.Fatal("refused delete touched the blob")
	}
	if _, err := f.s.Delete("nope", allow); !errors.Is(err, image.ErrNotFound) {
		t.Fatalf("Delete(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := f.s.Delete(im.ID, allow); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Delete(im.ID, allow); !errors.Is(err, image.ErrNotFound) {
		t.Fatalf("second Delete = %v, want ErrNotFound", err)
	}
	if items, _, _ := f.s.List("product", "p1", 10, ""); len(items) != 0 {
		t.Fatalf("deleted image still listed: %v", items)
	}
}

func TestListPagesAnOwnersImagesOldestFirst(t *testing.T) {
	f := newStore(t)
	var want []string
	for i := range 5 {
		want = append(want, f.add(t, "product", "p1", "u1", fmt.Appendf(nil, "img%d", i), []byte("t")).ID)
	}
	f.add(t, "product", "p10", "u1", []byte("other owner"), []byte("t"))   // a prefix of p1's range: must not leak in
	f.add(t, "publication", "p1", "u1", []byte("other type"), []byte("t")) // same ID, other type
	var got []string
	token := ""
	for page := 0; ; page++ {
		items, next, err := f.s.List("product", "p1", 2, token)
		if err != nil {
			t.Fatal(err)
		}
		if page < 2 && len(items) != 2 || page == 2 && len(items) != 1 {
			t.Fatalf("page %d has %d items", page, len(items))
		}
		for _, im := range items {
			got = append(got, im.ID)
		}
		if next == "" {
			break
		}
		if page > 3 {
			t.Fatal("too many pages")
		}
		token = next
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
}

func TestListRefusesTokensItDidNotIssue(t *testing.T) {
	f := newStore(t)
	for _, tok := range []string{"!!!", "bm90LWEtdWxpZA"} { // not base64; base64 of "not-a-ulid"
		t.Run(tok, func(t *testing.T) {
			if _, _, err := f.s.List("product", "p1", 2, tok); !errors.Is(err, store.ErrBadPageToken) {
				t.Fatalf("List = %v, want ErrBadPageToken", err)
			}
		})
	}
}

func TestFirstReturnsTheOldestImageOfEachOwner(t *testing.T) {
	f := newStore(t)
	a1 := f.add(t, "product", "a", "u1", []byte("a1"), []byte("t"))
	f.add(t, "product", "a", "u1", []byte("a2"), []byte("t"))
	b1 := f.add(t, "product", "b", "u1", []byte("b1"), []byte("t"))
	f.add(t, "publication", "c", "u1", []byte("c1"), []byte("t"))
	got, err := f.s.First("product", []string{"a", "b", "c", "a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["a"].ID != a1.ID || got["b"].ID != b1.ID {
		t.Fatalf("First = %v", got)
	}
}

func TestOpenRemovesStaleTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	db, blobs := filepath.Join(dir, "images.db"), filepath.Join(dir, "blobs")
	s, err := store.Open(db, blobs)
	if err != nil {
		t.Fatal(err)
	}
	tf, err := s.CreateTemp()
	if err != nil {
		t.Fatal(err)
	}
	tf.Close()
	s.Close()
	s, err = store.Open(db, blobs)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := tmpCount(t, blobs); n != 0 {
		t.Fatalf("%d stale temporary files after Open", n)
	}
}

func TestOpenBlobRefusesNamesThatAreNotHashes(t *testing.T) {
	f := newStore(t)
	for _, name := range []string{"../images.db", "", "ABCDEF" + sum(nil)[6:]} {
		if r, err := f.s.OpenBlob(name); err == nil {
			r.Close()
			t.Errorf("OpenBlob(%q) succeeded", name)
		}
	}
}

// Uploads and deletes of the same bytes race: whatever the interleaving, a
// blob file exists exactly when its reference count is positive.
func TestConcurrentAddsAndDeletesKeepFilesAndCountsInStep(t *testing.T) {
	f := newStore(t)
	data := []byte("contended")
	sha := sum(data)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 20 {
				o, th := f.temp(t, data), f.temp(t, fmt.Appendf(nil, "t%d-%d", w, i))
				im := image.Image{ID: ulid.Make().String(), OwnerType: "product", OwnerID: "p", UploaderID: "u",
					Original: image.Blob{SHA256: o.SHA256}, Thumbnail: image.Blob{SHA256: th.SHA256}}
				if err := f.s.Add(im, o, th); err != nil {
					t.Error(err)
					return
				}
				if !f.exists(sha) { // this image holds a reference: nobody may remove the file
					t.Errorf("blob missing right after an add (worker %d, round %d)", w, i)
					return
				}
				if i%2 == 0 {
					if _, err := f.s.Delete(im.ID, allow); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if n := f.refs(t, sha); n != 8*10 {
		t.Fatalf("refs = %d, want 80", n)
	}
	items, _, err := f.s.List("product", "p", 100, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range items {
		if _, err := f.s.Delete(im.ID, allow); err != nil {
			t.Fatal(err)
		}
	}
	if f.exists(sha) || f.refs(t, sha) != 0 {
		t.Fatal("blob survives its last image")
	}
	if n := tmpCount(t, f.blobDir); n != 0 {
		t.Fatalf("%d temporary files left", n)
	}
}
