// Package imagetest generates image fixtures for the images service's
// tests: every file is made by the standard library's encoders at test time,
// except WebP (no Go encoder exists), which is a known-good byte literal, and
// the decompression bombs (ZeroPNG, FlatJPEG), written byte by byte so
// that making one never holds its pixels.
package imagetest

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"math/rand/v2"
	"testing"
)

// gradient is an opaque w×h RGBA image with some structure (so encoders
// and scalers have something to do).
func gradient(w, h int) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.SetRGBA(x, y, color.RGBA{R: uint8(x * 255 / max(1, w-1)), G: uint8(y * 255 / max(1, h-1)), B: uint8((x + y) % 256), A: 255})
		}
	}
	return m
}

// JPEG returns an opaque w×h JPEG.
func JPEG(t testing.TB, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, gradient(w, h), &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// PNG returns an opaque w×h PNG.
func PNG(t testing.TB, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, gradient(w, h)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// PNGAlpha returns a w×h PNG whose left half is fully transparent.
func PNGAlpha(t testing.TB, w, h int) []byte {
	t.Helper()
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			a := uint8(255)
			if x < w/2 {
				a = 0
			}
			m.SetNRGBA(x, y, color.NRGBA{R: 200, G: 50, B: uint8(y), A: a})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// GIF returns an opaque w×h GIF (Plan 9 palette, no transparent entry).
func GIF(t testing.TB, w, h int) []byte {
	t.Helper()
	m := image.NewPaletted(image.Rect(0, 0, w, h), palette.Plan9)
	for y := range h {
		for x := range w {
			m.SetColorIndex(x, y, uint8((x/4+y/4)%len(palette.Plan9)))
		}
	}
	var buf bytes.Buffer
	if err := gif.Encode(&buf, m, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// WebP is a 1×1 lossless WebP (VP8L) whose one pixel is fully transparent
// (the well-known feature-detection image used by Modernizr). Tests decode
// it with golang.org/x/image/webp to prove it is valid.
var WebP = []byte{
	'R', 'I', 'F', 'F', 0x1a, 0x00, 0x00, 0x00, 'W', 'E', 'B', 'P',
	'V', 'P', '8', 'L', 0x0d, 0x00, 0x00, 0x00,
	0x2f, 0x00, 0x00, 0x00, 0x10, 0x07, 0x10, 0x11, 0x11, 0x88, 0x88, 0xfe, 0x07, 0x00,
}

// HugePNG returns a tiny PNG whose IHDR claims w×h RGB pixels, with a
// valid CRC and a small IDAT: a decompression bomb's header. Decoding it
// would allocate w*h*4 bytes.
func HugePNG(t testing.TB, w, h uint32) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 2, 0, 0, 0) // 8-bit RGB, deflate, no filter, no interlace
	chunk(&buf, "IHDR", ihdr)
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	if _, err := zw.Write(make([]byte, 1024)); err != nil { // the first rows' worth of zeros
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	chunk(&buf, "IDAT", z.Bytes())
	chunk(&buf, "IEND", nil)
	return buf.Bytes()
}

func chunk(w *bytes.Buffer, typ string, data []byte) {
	w.Write(binary.BigEndian.AppendUint32(nil, uint32(len(data))))
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(data)
	w.WriteString(typ)
	w.Write(data)
	w.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32()))
}

// NoisyPNG returns an opaque w×h PNG of random pixels: incompressible, so
// about w*h*3 bytes.
func NoisyPNG(t testing.TB, w, h int) []byte {
	t.Helper()
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(m.Pix); i += 4 {
		v := r.Uint32()
		m.Pix[i], m.Pix[i+1], m.Pix[i+2], m.Pix[i+3] = uint8(v), uint8(v>>8), uint8(v>>16), 255
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// NoisyJPEG returns a w×h JPEG of random pixels at quality 95.
func NoisyJPEG(t testing.TB, w, h int) []byte {
	t.Helper()
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < len(m.Pix); i += 4 {
		v := r.Uint32()
		m.Pix[i], m.Pix[i+1], m.Pix[i+2], m.Pix[i+3] = uint8(v), uint8(v>>8), uint8(v>>16), 255
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, m, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Pattern is an endless reader of a repeating byte pattern: a large body
// that is never held in memory.
type Pattern struct{ Head []byte }

// Read fills p with Head (if any, first) and then 'x' bytes.
func (r *Pattern) Read(p []byte) (int, error) {
	n := copy(p, r.Head)
	r.Head = r.Head[n:]
	for i := n; i < len(p); i++ {
		p[i] = 'x'
	}
	return len(p), nil
}

// Body returns a reader of n bytes: head, then filler.
func Body(head []byte, n int64) io.Reader {
	return io.LimitReader(&Pattern{Head: head}, n)
}

// ZeroPNG returns a valid w×h PNG whose every pixel is zero, at the given
// bit depth and color type (IHDR values: 0 gray, 2 RGB, 3 paletted, 4 gray
// with alpha, 6 RGBA), Adam7-interlaced if asked. It is the decompression
// bomb of the trust-boundaries issue: 6324×6324 at 16-bit RGBA decodes to
// 305 MiB from a 336 KB file (311 KB as image/png writes it). Its zlib
// stream is assembled from repeated compressed blocks (zlibZeros), so
// making one takes milliseconds and never allocates the pixels.
func ZeroPNG(t testing.TB, w, h int, depth, colorType byte, interlaced bool) []byte {
	t.Helper()
	channels := map[byte]int{0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colorType]
	if channels == 0 || w <= 0 || h <= 0 {
		t.Fatalf("ZeroPNG: color type %d, %dx%d", colorType, w, h)
	}
	bits := channels * int(depth)
	rowBytes := func(pw int) int64 { return 1 + int64(pw*bits+7)/8 } // the filter byte, then the pixels
	var raw int64
	if !interlaced {
		raw = int64(h) * rowBytes(w)
	} else {
		for _, p := range adam7 {
			pw, ph := (w-p[0]+p[2]-1)/p[2], (h-p[1]+p[3]-1)/p[3]
			if pw > 0 && ph > 0 {
				raw += int64(ph) * rowBytes(pw)
			}
		}
	}
	var buf bytes.Buffer
	buf.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := binary.BigEndian.AppendUint32(nil, uint32(w))
	ihdr = binary.BigEndian.AppendUint32(ihdr, uint32(h))
	il := byte(0)
	if interlaced {
		il = 1
	}
	chunk(&buf, "IHDR", append(ihdr, depth, colorType, 0, 0, il))
	if colorType == 3 {
		chunk(&buf, "PLTE", make([]byte, 3)) // one entry: black
	}
	chunk(&buf, "IDAT", zlibZeros(t, raw))
	chunk(&buf, "IEND", nil)
	return buf.Bytes()
}

// adam7 is each interlace pass's x offset, y offset, x step and y step.
var adam7 = [7][4]int{{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}}

// zlibZeros returns a zlib stream of n zero bytes. Deflate blocks that end
// in a sync flush are byte-aligned and decode on their own given the 32 KiB
// window behind them; behind zeros, the block flate writes for the second
// 256 KiB of zeros decodes to 256 KiB of zeros wherever it is repeated.
func zlibZeros(t testing.TB, n int64) []byte {
	t.Helper()
	const unit = 256 << 10
	zeros := make([]byte, unit)
	var block bytes.Buffer
	fw, err := flate.NewWriter(&block, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	next := func(k int) []byte { // the compressed bytes of k more zeros
		block.Reset()
		if _, err := fw.Write(zeros[:k]); err != nil {
			t.Fatal(err)
		}
		if err := fw.Flush(); err != nil {
			t.Fatal(err)
		}
		return bytes.Clone(block.Bytes())
	}
	out := bytes.NewBuffer([]byte{0x78, 0xda}) // deflate, 32 KiB window, best compression
	units := n / unit
	if units > 0 {
		out.Write(next(unit))
	}
	if units > 1 {
		repeat := next(unit)
		for range units - 1 {
			out.Write(repeat)
		}
	}
	block.Reset()
	if _, err := fw.Write(zeros[:n%unit]); err != nil {
		t.Fatal(err)
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	out.Write(block.Bytes())
	// Adler-32 of n zeros: the sum a stays 1, the sum of sums b is n.
	return binary.BigEndian.AppendUint32(out.Bytes(), uint32(n%65521)<<16|1)
}

// JPEGLayout is how FlatJPEG lays out its file.
type JPEGLayout struct {
	Progressive bool
	// IDs are the components' identifiers: "\x01\x02\x03" for YCbCr, "RGB"
	// (which image/jpeg converts to RGBA), four for CMYK.
	IDs string
	// HV are the components' sampling factors: 0x22 0x11 0x11 is 4:2:0.
	HV []byte
	// Adobe adds an Adobe marker with transform 0 (RGB, or CMYK for four
	// components).
	Adobe bool
}

// FlatJPEG returns a valid JPEG of w×h flat pixels, written by hand (Go's
// encoder writes neither progressive nor 4:4:4 nor CMYK files): every 8×8
// block has no difference from the last and no AC coefficient, one or two
// bits a block. A progressive one has a single DC scan; decoding it keeps
// 64 coefficients of 4 bytes per sample besides the image, several times
// the memory of a baseline one.
func FlatJPEG(t testing.TB, w, h int, l JPEGLayout) []byte {
	t.Helper()
	if len(l.IDs) != len(l.HV) || w <= 0 || h <= 0 || w > 65535 || h > 65535 {
		t.Fatalf("FlatJPEG: %+v %dx%d", l, w, h)
	}
	var buf bytes.Buffer
	segment := func(marker byte, data []byte) {
		buf.Write([]byte{0xff, marker, byte((len(data) + 2) >> 8), byte(len(data) + 2)})
		buf.Write(data)
	}
	buf.Write([]byte{0xff, 0xd8}) // SOI
	if l.Adobe {
		segment(0xee, []byte("Adobe\x00\x64\x00\x00\x00\x00\x00")) // transform 0
	}
	segment(0xdb, append([]byte{0}, bytes.Repeat([]byte{1}, 64)...)) // DQT: table 0, all ones
	sof := []byte{8, byte(h >> 8), byte(h), byte(w >> 8), byte(w), byte(len(l.IDs))}
	sos := []byte{byte(len(l.IDs))}
	perMCU := 0
	for i := range l.IDs {
		sof = append(sof, l.IDs[i], l.HV[i], 0)
		sos = append(sos, l.IDs[i], 0x00) // DC and AC table 0
		perMCU += int(l.HV[i]>>4) * int(l.HV[i]&15)
	}
	// One 1-bit code each: DC "no difference", AC "end of block".
	table := append([]byte{1}, make([]byte, 15+1)...)
	bitsPerBlock := 1
	if l.Progressive {
		segment(0xc2, sof)
		segment(0xc4, append([]byte{0x00}, table...))
		segment(0xda, append(sos, 0, 0, 0)) // DC only, first pass
	} else {
		segment(0xc0, sof)
		segment(0xc4, append(append([]byte{0x00}, table...), append([]byte{0x10}, table...)...))
		segment(0xda, append(sos, 0, 63, 0))
		bitsPerBlock = 2
	}
	h0, v0 := int(l.HV[0]>>4), int(l.HV[0]&15)
	if len(l.IDs) == 1 {
		h0, v0, perMCU = 1, 1, 1
	}
	mcus := ((w + 8*h0 - 1) / (8 * h0)) * ((h + 8*v0 - 1) / (8 * v0))
	buf.Write(make([]byte, mcus*perMCU*bitsPerBlock/8+1)) // every code is the bit 0
	buf.Write([]byte{0xff, 0xd9})                         // EOI
	return buf.Bytes()
}
