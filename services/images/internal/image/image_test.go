package image_test

import (
	"bytes"
	"errors"
	"image/png"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/image/webp"

	"github.com/marketmesh/marketmesh/plugins/paging"
	"github.com/marketmesh/marketmesh/services/images/internal/image"
	"github.com/marketmesh/marketmesh/services/images/internal/imagetest"
)

func TestCheckOwner(t *testing.T) {
	cases := []struct {
		name, ownerType, ownerID string
		wantErr                  string // substring; "" means valid
	}{
		{"a product with a ULID is valid", "product", "01HZX3K5V0QY5C9D8E7F6G5H4J", ""},
		{"a publication is valid", "publication", "pub-1", ""},
		{"a user is valid", "user", "u_1.a:b", ""},
		{"a missing owner type is refused", "", "p1", "owner_type is required"},
		{"an unknown owner type is refused", "order", "p1", "owner_type"},
		{"an owner type in another case is refused", "Product", "p1", "owner_type"},
		{"a missing owner ID is refused", "product", "", "owner_id is required"},
		{"an owner ID of 65 characters is refused", "product", strings.Repeat("a", 65), "owner_id must be at most 64"},
		{"an owner ID of 64 characters is valid", "product", strings.Repeat("a", 64), ""},
		{"an owner ID with a slash is refused", "product", "a/b", "owner_id may contain only"},
		{"an owner ID with a NUL byte is refused", "product", "a\x00b", "owner_id may contain only"},
		{"an owner ID with a space is refused", "product", "a b", "owner_id may contain only"},
		{"an owner ID with dots only is valid (not a path here)", "product", "..", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, err := image.CheckOwner(c.ownerType, c.ownerID)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckOwner = %v, want nil", err)
				}
				if o.Type != c.ownerType || o.ID != c.ownerID {
					t.Fatalf("owner = %+v", o)
				}
				return
			}
			if !errors.Is(err, image.ErrInvalid) || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("CheckOwner = %v, want ErrInvalid containing %q", err, c.wantErr)
			}
		})
	}
}

func TestCheckOwnerIDs(t *testing.T) {
	many := make([]string, 101)
	for i := range many {
		many[i] = "p"
	}
	cases := []struct {
		name      string
		ownerType string
		ids       []string
		wantErr   string
	}{
		{"no owners are fine", "product", nil, ""},
		{"a hundred owners are fine", "product", many[:100], ""},
		{"a hundred and one owners are refused", "product", many, "at most 100"},
		{"a bad owner type is refused", "thing", []string{"p"}, "owner_type"},
		{"a bad owner ID is refused", "product", []string{"ok", "no/pe"}, "owner_ids"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := image.CheckOwnerIDs(c.ownerType, c.ids)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckOwnerIDs = %v", err)
				}
				return
			}
			if !errors.Is(err, image.ErrInvalid) || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("CheckOwnerIDs = %v, want ErrInvalid containing %q", err, c.wantErr)
			}
		})
	}
}

func TestSniff(t *testing.T) {
	cases := []struct {
		name string
		data []byte
		want string // content type, or "" for 415
	}{
		{"a JPEG is image/jpeg", imagetest.JPEG(t, 8, 8), "image/jpeg"},
		{"a PNG is image/png", imagetest.PNG(t, 8, 8), "image/png"},
		{"a GIF is image/gif", imagetest.GIF(t, 8, 8), "image/gif"},
		{"a WebP is image/webp", imagetest.WebP, "image/webp"},
		{"text is refused", []byte("hello, I am a .png file"), ""},
		{"an empty file is refused", nil, ""},
		{"a BMP is refused", append([]byte("BM"), make([]byte, 60)...), ""},
		{"a PNG signature cut short is refused", []byte("\x89PN"), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := image.Sniff(c.data)
			if c.want == "" {
				if !errors.Is(err, image.ErrUnsupported) {
					t.Fatalf("Sniff = %q, %v; want ErrUnsupported", got, err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("Sniff = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestSniffNamesWhatItDetected(t *testing.T) {
	_, err := image.Sniff([]byte("just some text"))
	if err == nil || !strings.Contains(err.Error(), "looks like text/plain;") {
		t.Fatalf("Sniff = %v, want a message naming text/plain (without parameters)", err)
	}
}

func TestTheWebPFixtureIsAValidImage(t *testing.T) {
	img, err := webp.Decode(bytes.NewReader(imagetest.WebP))
	if err != nil {
		t.Fatalf("webp.Decode = %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1 || b.Dy() != 1 {
		t.Fatalf("bounds = %v, want 1x1", b)
	}
	hdr, err := image.ReadHeader(bytes.NewReader(imagetest.WebP), "image/webp")
	if err != nil || hdr.Width != 1 || hdr.Height != 1 {
		t.Fatalf("ReadHeader = %+v, %v", hdr, err)
	}
}

func TestCheckDimensions(t *testing.T) {
	cases := []struct {
		name string
		w, h int
		ok   bool
	}{
		{"one pixel is fine", 1, 1, true},
		{"10000 wide and 4000 high (40 MP) is fine", 10000, 4000, true},
		{"10001 wide is refused", 10001, 10, false},
		{"10001 high is refused", 10, 10001, false},
		{"10000 by 4001 (over 40 MP) is refused", 10000, 4001, false},
		{"7000 by 7000 (49 MP) is refused", 7000, 7000, false},
		{"zero width is refused", 0, 10, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := image.CheckDimensions(c.w, c.h)
			if c.ok != (err == nil) {
				t.Fatalf("CheckDimensions(%d, %d) = %v, want ok=%v", c.w, c.h, err, c.ok)
			}
			if err != nil && !errors.Is(err, image.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestReadHeaderRefusesAHugePNGHeaderBeforeDecoding(t *testing.T) {
	bomb := imagetest.HugePNG(t, 50000, 50000)
	if len(bomb) > 1024 {
		t.Fatalf("fixture is %d bytes, want a few hundred", len(bomb))
	}
	// The header is valid: the standard decoder believes it.
	cfg, err := png.DecodeConfig(bytes.NewReader(bomb))
	if err != nil || cfg.Width != 50000 || cfg.Height != 50000 {
		t.Fatalf("png.DecodeConfig = %+v, %v; the fixture's IHDR is broken", cfg, err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = image.ReadHeader(bytes.NewReader(bomb), "image/png")
	runtime.ReadMemStats(&after)
	if !errors.Is(err, image.ErrInvalid) || !strings.Contains(err.Error(), "50000x50000") {
		t.Fatalf("ReadHeader = %v, want ErrInvalid naming 50000x50000", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("ReadHeader allocated %d bytes; it must read only the header", n)
	}
}

func TestReadHeaderRefusesAFileWhoseHeaderDisagreesWithTheSniffedType(t *testing.T) {
	_, err := image.ReadHeader(bytes.NewReader(imagetest.PNG(t, 4, 4)), "image/jpeg")
	if !errors.Is(err, image.ErrInvalid) {
		t.Fatalf("ReadHeader = %v, want ErrInvalid", err)
	}
}

func TestReadHeaderRefusesATruncatedImage(t *testing.T) {
	data := imagetest.PNG(t, 4, 4)[:20]
	_, err := image.ReadHeader(bytes.NewReader(data), "image/png")
	if !errors.Is(err, image.ErrInvalid) {
		t.Fatalf("ReadHeader = %v, want ErrInvalid", err)
	}
}

func TestCheckUpload(t *testing.T) {
	cases := []struct {
		name, ownerType, ownerID, uploader string
		wantErr                            string // substring; "" means valid
	}{
		{"a valid owner and uploader are accepted", "product", "p1", "u1", ""},
		{"a bad owner is refused before the uploader is looked at", "shop", "p1", "", "owner_type"},
		{"a missing uploader is refused", "product", "p1", "", "uploader_id is required"},
		{"an uploader with a slash is refused", "product", "p1", "u/1", "uploader_id may contain only"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up, err := image.CheckUpload(c.ownerType, c.ownerID, c.uploader)
			if c.wantErr == "" {
				if err != nil || up.Owner != (image.Owner{Type: c.ownerType, ID: c.ownerID}) || up.UploaderID != c.uploader {
					t.Fatalf("CheckUpload = %+v, %v", up, err)
				}
				return
			}
			if !errors.Is(err, image.ErrInvalid) || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("CheckUpload = %v, want ErrInvalid containing %q", err, c.wantErr)
			}
		})
	}
}

func TestCheckSize(t *testing.T) {
	if err := image.CheckSize(image.MaxBytes); err != nil {
		t.Fatalf("CheckSize(MaxBytes) = %v, want nil", err)
	}
	err := image.CheckSize(image.MaxBytes + 1)
	if !errors.Is(err, image.ErrTooLarge) || err.Error() != "the file is larger than 10 MiB" {
		t.Fatalf("CheckSize(MaxBytes+1) = %v, want ErrTooLarge naming 10 MiB", err)
	}
}

// The limits themselves are paging.Size's (tested there); this checks
// that a list query goes through them and keeps its token.
func TestListQueryNormalizeAppliesThePagingLimits(t *testing.T) {
	q, err := image.ListQuery{OwnerType: "product", OwnerID: "p1", PageSize: 1000, PageToken: "tok"}.Normalize()
	if err != nil || q.PageSize != paging.MaxSize || q.PageToken != "tok" {
		t.Fatalf("Normalize = %+v, %v; want page size %d and the token kept", q, err, paging.MaxSize)
	}
	if q, _ := (image.ListQuery{OwnerType: "user", OwnerID: "u1"}).Normalize(); q.PageSize != paging.DefaultSize {
		t.Fatalf("unset page size = %d, want %d", q.PageSize, paging.DefaultSize)
	}
	if _, err := (image.ListQuery{OwnerType: "shop", OwnerID: "p1"}).Normalize(); !errors.Is(err, image.ErrInvalid) {
		t.Fatalf("Normalize(bad owner) = %v, want ErrInvalid", err)
	}
}

func TestNew(t *testing.T) {
	up, err := image.CheckUpload("product", "p1", "u1")
	if err != nil {
		t.Fatal(err)
	}
	original := image.Blob{SHA256: "aa", ContentType: "image/png", Bytes: 10, Width: 4, Height: 4}
	thumb := image.Blob{SHA256: "bb", ContentType: "image/jpeg", Bytes: 5, Width: 4, Height: 4}
	now := time.Date(2024, 5, 1, 14, 0, 0, 0, time.FixedZone("CEST", 2*3600))

	im, err := image.New("01J", up, original, thumb, now)
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	want := image.Image{ID: "01J", OwnerType: "product", OwnerID: "p1", UploaderID: "u1",
		Original: original, Thumbnail: thumb, CreatedAt: now.UTC()}
	if im != want || im.CreatedAt.Location() != time.UTC {
		t.Fatalf("New = %+v, want %+v (in UTC)", im, want)
	}

	refusals := []struct {
		name                string
		id                  string
		up                  image.Upload
		original, thumbnail image.Blob
	}{
		{"an image without an ID is refused", "", up, original, thumb},
		{"an image without an uploader is refused", "01J", image.Upload{Owner: up.Owner}, original, thumb},
		{"an image without an owner is refused", "01J", image.Upload{UploaderID: "u1"}, original, thumb},
		{"an original without a hash is refused", "01J", up, image.Blob{ContentType: "image/png"}, thumb},
		{"a thumbnail without a type is refused", "01J", up, original, image.Blob{SHA256: "bb"}},
	}
	for _, c := range refusals {
		t.Run(c.name, func(t *testing.T) {
			if im, err := image.New(c.id, c.up, c.original, c.thumbnail, now); err == nil {
				t.Fatalf("New = %+v, want an error", im)
			}
		})
	}
}

func TestOnlyTheUploaderMayDelete(t *testing.T) {
	im := image.Image{ID: "01J", UploaderID: "u1"}
	if err := im.CheckUploader("u1"); err != nil {
		t.Fatalf("CheckUploader(uploader) = %v", err)
	}
	for _, caller := range []string{"u2", ""} {
		err := im.CheckUploader(caller)
		if !errors.Is(err, image.ErrForbidden) || err.Error() != "only the uploader may delete image 01J" {
			t.Errorf("CheckUploader(%q) = %v, want ErrForbidden", caller, err)
		}
	}
}
