package thumbnail_test

import (
	"bytes"
	"image"
	"image/jpeg"
	"image/png"
	"runtime"
	"testing"

	// Decoders for the fixtures image.Decode reads.
	_ "image/gif"

	_ "golang.org/x/image/webp"

	"github.com/marketmesh/marketmesh/services/images/internal/imagetest"
	"github.com/marketmesh/marketmesh/services/images/internal/thumbnail"
)

func TestDims(t *testing.T) {
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
			w, h := thumbnail.Dims(c.w, c.h)
			if w != c.wantW || h != c.wantH {
				t.Fatalf("Dims(%d, %d) = %d, %d; want %d, %d", c.w, c.h, w, h, c.wantW, c.wantH)
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

func TestMake(t *testing.T) {
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
			data, ct, w, h, err := thumbnail.Make(decodeBytes(t, c.src))
			if err != nil {
				t.Fatal(err)
			}
			if ct != c.wantType || w != c.wantW || h != c.wantH {
				t.Fatalf("Make = %s %dx%d, want %s %dx%d", ct, w, h, c.wantType, c.wantW, c.wantH)
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

func TestMakeKeepsTransparentPixelsTransparent(t *testing.T) {
	data, _, _, _, err := thumbnail.Make(decodeBytes(t, imagetest.PNGAlpha(t, 600, 300)))
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

func TestScratchCoversWhatMakeAllocates(t *testing.T) {
	cases := []struct {
		name string
		src  []byte
	}{
		{"a small PNG that is not scaled", imagetest.PNG(t, 200, 100)},
		{"a JPEG scaled without halving", imagetest.JPEG(t, 700, 500)},
		{"a YCbCr JPEG halved once", imagetest.FlatJPEG(t, 1200, 900, imagetest.JPEGLayout{IDs: "\x01\x02\x03", HV: []byte{0x22, 0x11, 0x11}})},
		{"an RGB PNG halved twice", imagetest.ZeroPNG(t, 1400, 2100, 8, 2, false)},
		{"a PNG with alpha (a PNG thumbnail)", imagetest.PNGAlpha(t, 600, 600)},
		{"a 16-bit RGBA PNG halved once", imagetest.ZeroPNG(t, 1200, 1100, 16, 6, false)},
		{"a 16-bit grayscale PNG", imagetest.ZeroPNG(t, 1200, 1100, 16, 0, false)},
		{"a paletted PNG", imagetest.ZeroPNG(t, 1200, 1100, 8, 3, false)},
		{"a GIF", imagetest.GIF(t, 600, 600)},
		{"a very thin image", imagetest.ZeroPNG(t, 9000, 20, 8, 2, false)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := decodeBytes(t, c.src)
			b := src.Bounds()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			if _, _, _, _, err := thumbnail.Make(src); err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&after)
			got, want := int64(after.TotalAlloc-before.TotalAlloc), thumbnail.Scratch(b.Dx(), b.Dy())
			t.Logf("%T %v: Make allocated %d bytes, Scratch says %d", src, b, got, want)
			if got > want {
				t.Fatalf("Make allocated %d bytes, more than Scratch's %d", got, want)
			}
		})
	}
}
