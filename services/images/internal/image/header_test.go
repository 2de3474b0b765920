package image_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	stdimage "image"
	"image/jpeg"
	"runtime"
	"testing"

	"github.com/marketmesh/marketmesh/services/images/internal/image"
	"github.com/marketmesh/marketmesh/services/images/internal/imagetest"
)

// withTRNS inserts a tRNS chunk after a PNG's IHDR: a transparent color,
// which makes image/png decode gray or RGB as NRGBA.
func withTRNS(png []byte, data []byte) []byte {
	const afterIHDR = 8 + 4 + 4 + 13 + 4
	c := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	c = append(append(c, "tRNS"...), data...)
	c = binary.BigEndian.AppendUint32(c, crc32.ChecksumIEEE(c[4:]))
	return append(append(append([]byte(nil), png[:afterIHDR]...), c...), png[afterIHDR:]...)
}

// withAdobeAtTheEnd puts an Adobe marker saying "RGB" after a JPEG's pixel
// data: image/jpeg still honours it, and converts to RGBA at the end.
func withAdobeAtTheEnd(jpg []byte) []byte {
	app14 := []byte{0xff, 0xee, 0, 14, 'A', 'd', 'o', 'b', 'e', 0, 100, 0, 0, 0, 0, 0}
	out := append([]byte(nil), jpg[:len(jpg)-2]...)
	return append(append(out, app14...), 0xff, 0xd9)
}

func grayJPEG(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, stdimage.NewGray(stdimage.Rect(0, 0, w, h)), nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The estimate is what the budget reserves: it must cover what the
// standard decoders really allocate, for every layout they treat apart.
func TestReadHeaderCoversWhatDecodingAllocates(t *testing.T) {
	ycc := func(progressive bool, hv ...byte) imagetest.JPEGLayout {
		return imagetest.JPEGLayout{Progressive: progressive, IDs: "\x01\x02\x03", HV: hv}
	}
	rgb := imagetest.JPEGLayout{Progressive: true, IDs: "RGB", HV: []byte{0x11, 0x11, 0x11}}
	cmyk := imagetest.JPEGLayout{IDs: "\x01\x02\x03\x04", HV: []byte{0x22, 0x11, 0x11, 0x22}, Adobe: true}
	progressiveCMYK := cmyk
	progressiveCMYK.Progressive = true
	gray := imagetest.JPEGLayout{Progressive: true, IDs: "\x01", HV: []byte{0x22}}
	cases := []struct {
		name, contentType string
		data              []byte
		pixels            string
	}{
		{"a baseline JPEG", "image/jpeg", imagetest.JPEG(t, 1000, 750), "YCbCr 4:2:0"},
		{"a grayscale JPEG", "image/jpeg", grayJPEG(t, 1000, 750), "8-bit grayscale"},
		{"a JPEG with an Adobe RGB marker after its pixels", "image/jpeg", withAdobeAtTheEnd(imagetest.JPEG(t, 1000, 750)), "RGB"},
		{"a progressive JPEG", "image/jpeg", imagetest.FlatJPEG(t, 1000, 750, ycc(true, 0x22, 0x11, 0x11)), "YCbCr 4:2:0, progressive"},
		{"a baseline 4:4:4 JPEG", "image/jpeg", imagetest.FlatJPEG(t, 1000, 750, ycc(false, 0x11, 0x11, 0x11)), "YCbCr 4:4:4"},
		{"a progressive 4:4:4 JPEG", "image/jpeg", imagetest.FlatJPEG(t, 1000, 750, ycc(true, 0x11, 0x11, 0x11)), "YCbCr 4:4:4, progressive"},
		{"a progressive 4:2:2 JPEG", "image/jpeg", imagetest.FlatJPEG(t, 1000, 750, ycc(true, 0x21, 0x11, 0x11)), "YCbCr 4:2:2, progressive"},
		{"a progressive RGB JPEG", "image/jpeg", imagetest.FlatJPEG(t, 1000, 750, rgb), "RGB, progressive"},
		{"a CMYK JPEG", "image/jpeg", imagetest.FlatJPEG(t, 1000, 750, cmyk), "CMYK"},
		{"a progressive CMYK JPEG", "image/jpeg", imagetest.FlatJPEG(t, 1000, 750, progressiveCMYK), "CMYK, progressive"},
		{"a progressive grayscale JPEG", "image/jpeg", imagetest.FlatJPEG(t, 1001, 749, gray), "8-bit grayscale, progressive"},
		{"an 8-bit RGB PNG", "image/png", imagetest.PNG(t, 900, 600), "8-bit RGB"},
		{"an 8-bit RGBA PNG", "image/png", imagetest.PNGAlpha(t, 900, 600), "8-bit RGBA"},
		{"a 16-bit RGBA PNG", "image/png", imagetest.ZeroPNG(t, 900, 600, 16, 6, false), "16-bit RGBA"},
		{"a 16-bit RGB PNG", "image/png", imagetest.ZeroPNG(t, 900, 600, 16, 2, false), "16-bit RGB"},
		{"a 16-bit grayscale PNG", "image/png", imagetest.ZeroPNG(t, 900, 600, 16, 0, false), "16-bit grayscale"},
		{"an 8-bit grayscale PNG with a transparent color", "image/png", withTRNS(imagetest.ZeroPNG(t, 900, 600, 8, 0, false), []byte{0, 7}), "8-bit grayscale with a transparent color"},
		{"a 16-bit grayscale PNG with a transparent color", "image/png", withTRNS(imagetest.ZeroPNG(t, 900, 600, 16, 0, false), []byte{0, 7}), "16-bit grayscale with a transparent color"},
		{"a 16-bit grayscale PNG with alpha", "image/png", imagetest.ZeroPNG(t, 900, 600, 16, 4, false), "16-bit grayscale with alpha"},
		{"a 2-bit paletted PNG", "image/png", imagetest.ZeroPNG(t, 900, 600, 2, 3, false), "2-bit paletted"},
		{"an interlaced 8-bit RGB PNG", "image/png", imagetest.ZeroPNG(t, 901, 599, 8, 2, true), "8-bit RGB, interlaced"},
		{"an interlaced 16-bit RGBA PNG", "image/png", imagetest.ZeroPNG(t, 901, 599, 16, 6, true), "16-bit RGBA, interlaced"},
		{"a GIF", "image/gif", imagetest.GIF(t, 900, 600), "paletted"},
		{"a lossless WebP", "image/webp", imagetest.WebP, "lossless or transparent WebP"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr, err := image.ReadHeader(bytes.NewReader(c.data), c.contentType)
			if err != nil {
				t.Fatalf("ReadHeader = %v", err)
			}
			if hdr.Pixels != c.pixels {
				t.Errorf("Pixels = %q, want %q", hdr.Pixels, c.pixels)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			img, err := image.Decode(bytes.NewReader(c.data), c.contentType)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatalf("Decode = %v", err)
			}
			got := int64(after.TotalAlloc - before.TotalAlloc)
			t.Logf("%T %dx%d: decoding allocated %.1f MiB, the header says %.1f MiB",
				img, hdr.Width, hdr.Height, float64(got)/(1<<20), float64(hdr.DecodeBytes)/(1<<20))
			if got > hdr.DecodeBytes {
				t.Fatalf("decoding allocated %d bytes, more than the header's %d", got, hdr.DecodeBytes)
			}
			// Conservative, not wild: at most twice what it takes, plus the
			// fixed allowance for a decoder's state.
			if hdr.DecodeBytes > 2*got+2<<20 {
				t.Errorf("the header says %d bytes for a decode of %d", hdr.DecodeBytes, got)
			}
		})
	}
}

func TestCheckMemoryNamesTheImageAndTheLimit(t *testing.T) {
	// The bomb: 311 KB that passes the size and pixel limits.
	bomb := imagetest.ZeroPNG(t, 6324, 6324, 16, 6, false)
	hdr, err := image.ReadHeader(bytes.NewReader(bomb), "image/png")
	if err != nil {
		t.Fatalf("ReadHeader = %v; the bomb is within the dimension limits", err)
	}
	if want := int64(6324 * 6324 * 8); hdr.DecodeBytes < want {
		t.Fatalf("DecodeBytes = %d, want at least the %d bytes of its pixels", hdr.DecodeBytes, want)
	}
	err = hdr.CheckMemory(hdr.DecodeBytes, 128<<20)
	want := "the image is 6324x6324 pixels of 16-bit RGBA: decoding it needs 307 MiB, more than the 128 MiB one image may use"
	if !errors.Is(err, image.ErrInvalid) || err.Error() != want {
		t.Fatalf("CheckMemory = %v\nwant ErrInvalid: %s", err, want)
	}
	if err := hdr.CheckMemory(128<<20, 128<<20); err != nil {
		t.Fatalf("CheckMemory(exactly the limit) = %v", err)
	}
}
