package imaging_test

import (
	"bytes"
	"errors"
	"image"
	"image/jpeg"
	"image/png"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/image/webp"

	"github.com/marketmesh/marketmesh/services/images/internal/imagetest"
	"github.com/marketmesh/marketmesh/services/images/internal/imaging"
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
			o, err := imaging.CheckOwner(c.ownerType, c.ownerID)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckOwner = %v, want nil", err)
				}
				if o.Type != c.ownerType || o.ID != c.ownerID {
					t.Fatalf("owner = %+v", o)
				}
				return
			}
			if !errors.Is(err, imaging.ErrInvalid) || !strings.Contains(err.Error(), c.wantErr) {
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
			err := imaging.CheckOwnerIDs(c.ownerType, c.ids)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckOwnerIDs = %v", err)
				}
				return
			}
			if !errors.Is(err, imaging.ErrInvalid) || !strings.Contains(err.Error(), c.wantErr) {
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
			got, err := imaging.Sniff(c.data)
			if c.want == "" {
				if !errors.Is(err, imaging.ErrUnsupported) {
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
	_, err := imaging.Sniff([]byte("just some text"))
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
	w, h, err := imaging.Config(bytes.NewReader(imagetest.WebP), "image/webp")
	if err != nil || w != 1 || h != 1 {
		t.Fatalf("Config = %d, %d, %v", w, h, err)
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
			err := imaging.CheckDimensions(c.w, c.h)
			if c.ok != (err == nil) {
				t.Fatalf("CheckDimensions(%d, %d) = %v, want ok=%v", c.w, c.h, err, c.ok)
			}
			if err != nil && !errors.Is(err, imaging.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestConfigRefusesAHugePNGHeaderBeforeDecoding(t *testing.T) {
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
	_, _, err = imaging.Config(bytes.NewReader(bomb), "image/png")
	runtime.ReadMemStats(&after)
	if !errors.Is(err, imaging.ErrInvalid) || !strings.Contains(err.Error(), "50000x50000") {
		t.Fatalf("Config = %v, want ErrInvalid naming 50000x50000", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("Config allocated %d bytes; it must read only the header", n)
	}
}

func TestConfigRefusesAFileWhoseHeaderDisagreesWithTheSniffedType(t *testing.T) {
	_, _, err := imaging.Config(bytes.NewReader(imagetest.PNG(t, 4, 4)), "image/jpeg")
	if !errors.Is(err, imaging.ErrInvalid) {
		t.Fatalf("Config = %v, want ErrInvalid", err)
	}
}

func TestConfigRefusesATruncatedImage(t *testing.T) {
	data := imagetest.PNG(t, 4, 4)[:20]
	_, _, err := imaging.Config(bytes.NewReader(data), "image/png")
	if !errors.Is(err, imaging.ErrInvalid) {
		t.Fatalf("Config = %v, want ErrInvalid", err)
	}
}

func TestThumbDims(t *testing.T) {
	cases := []struct {
		name         string
		w, h         int
		wantW, wantH int
	}{
		{"a landscape image gets a 256 px width", 1000, 500, 256, 128},
		{"a portrait image gets a 256 px height", 300, 900, 85, 256},
		{"a square image becomes 256 by 256", 4000, 4000, 256, 256},
		{"a small image is not upscaled", 100, 50, 100, 50},
		{"an image of exactly 256 px keeps its size", 256, 10, 256, 10},
		{"a 257 px image is scaled down", 257, 257, 256, 256},
		{"a very thin image keeps at least one pixel", 10000, 3, 256, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, h := imaging.ThumbDims(c.w, c.h)
			if w != c.wantW || h != c.wantH {
				t.Fatalf("ThumbDims(%d, %d) = %d, %d; want %d, %d", c.w, c.h, w, h, c.wantW, c.wantH)
			}
		})
	}
}

func decodeBytes(t *testing.T, data []byte) image.Image {
	t.Helper()
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return img
}

func TestThumbnail(t *testing.T) {
	cases := []struct {
		name         string
		src          []byte
		wantW, wantH int
		wantType     string
	}{
		{"a landscape JPEG becomes a 256 px wide JPEG", imagetest.JPEG(t, 800, 400), 256, 128, "image/jpeg"},
		{"a portrait PNG becomes a 256 px high JPEG", imagetest.PNG(t, 300, 600), 128, 256, "image/jpeg"},
		{"a small GIF keeps its size", imagetest.GIF(t, 40, 30), 40, 30, "image/jpeg"},
		{"a PNG with transparency becomes a PNG", imagetest.PNGAlpha(t, 600, 300), 256, 128, "image/png"},
		{"a transparent WebP becomes a PNG", imagetest.WebP, 1, 1, "image/png"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data, ct, w, h, err := imaging.Thumbnail(decodeBytes(t, c.src))
			if err != nil {
				t.Fatal(err)
			}
			if ct != c.wantType || w != c.wantW || h != c.wantH {
				t.Fatalf("Thumbnail = %s %dx%d, want %s %dx%d", ct, w, h, c.wantType, c.wantW, c.wantH)
			}
			got := decodeBytes(t, data)
			if b := got.Bounds(); b.Dx() != c.wantW || b.Dy() != c.wantH {
				t.Fatalf("encoded thumbnail is %v", b)
			}
			var err2 error
			switch ct {
			case "image/jpeg":
				_, err2 = jpeg.DecodeConfig(bytes.NewReader(data))
			case "image/png":
				_, err2 = png.DecodeConfig(bytes.NewReader(data))
			}
			if err2 != nil {
				t.Fatalf("thumbnail is not a %s: %v", ct, err2)
			}
		})
	}
}

func TestThumbnailKeepsTransparentPixelsTransparent(t *testing.T) {
	data, _, _, _, err := imaging.Thumbnail(decodeBytes(t, imagetest.PNGAlpha(t, 600, 300)))
	if err != nil {
		t.Fatal(err)
	}
	img := decodeBytes(t, data)
	if _, _, _, a := img.At(10, 64).RGBA(); a != 0 {
		t.Errorf("left half alpha = %d, want 0", a)
	}
	if _, _, _, a := img.At(250, 64).RGBA(); a != 0xffff {
		t.Errorf("right half alpha = %d, want opaque", a)
	}
}
