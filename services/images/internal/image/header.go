package image

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	stdimage "image"
	"io"
)

// Header is what an upload's header says about its pixels, read before any
// of them is decoded: a 300 KB file can decode to 300 MiB.
type Header struct {
	Width, Height int
	// Pixels says how the decoder stores them, for messages: "16-bit RGBA",
	// "YCbCr 4:2:0, progressive".
	Pixels string
	// DecodeBytes is the most the standard decoder allocates for the image
	// (its pixels, and its working copies: interlace passes, progressive
	// JPEG coefficients, color conversions), with headroom for its state.
	DecodeBytes int64
}

// decoderState covers what a decoder allocates besides pixels: bufio and
// zlib buffers, Huffman tables, PNG row buffers of a narrow image.
const decoderState = 1 << 20

// ReadHeader reads the header of a file sniffed as contentType, checks its
// dimensions (CheckDimensions) and works out what decoding it costs. It reads
// r from its start; nothing is decoded, and what it allocates does not grow
// with the image. A JPEG is scanned to its end: a marker after the pixels
// can still change the decoder's output (to RGBA, at 4 bytes a pixel).
func ReadHeader(r io.ReadSeeker, contentType string) (Header, error) {
	br, err := rewind(r, nil)
	if err != nil {
		return Header{}, err
	}
	cfg, format, err := stdimage.DecodeConfig(br)
	if err != nil {
		return Header{}, invalid("the file is not a valid %s image: %v", contentType, err)
	}
	if format != formats[contentType] {
		return Header{}, invalid("the file is not a valid %s image (its header is %s)", contentType, format)
	}
	if err := CheckDimensions(cfg.Width, cfg.Height); err != nil {
		return Header{}, err
	}
	if br, err = rewind(r, br); err != nil {
		return Header{}, err
	}
	h := Header{Width: cfg.Width, Height: cfg.Height}
	px := int64(cfg.Width) * int64(cfg.Height)
	switch format {
	case "png":
		h.Pixels, h.DecodeBytes = pngCost(br, cfg.Width, cfg.Height)
	case "jpeg":
		h.Pixels, h.DecodeBytes = jpegCost(br, cfg.Width, cfg.Height)
	case "gif":
		// The first frame (never larger than the screen), and a second copy
		// of it if it is interlaced.
		h.Pixels, h.DecodeBytes = "paletted", 2*px
	case "webp":
		h.Pixels, h.DecodeBytes = webpCost(br, cfg.Width, cfg.Height)
	}
	h.DecodeBytes += decoderState
	return h, nil
}

// rewind seeks r to its start and returns a buffered reader over it.
func rewind(r io.ReadSeeker, br *bufio.Reader) (*bufio.Reader, error) {
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("image: rewind: %w", err)
	}
	if br == nil {
		return bufio.NewReaderSize(r, 32<<10), nil
	}
	br.Reset(r)
	return br, nil
}

// CheckMemory refuses an image whose decoding and processing need more than
// limit bytes (ErrInvalid, as for too many pixels): the message names the
// image's size and pixel format, and the limit.
func (h Header) CheckMemory(need, limit int64) error {
	if need > limit {
		return invalid("the image is %dx%d pixels of %s: decoding it needs %s, more than the %s one image may use",
			h.Width, h.Height, h.Pixels, mib(need), mib(limit))
	}
	return nil
}

func mib(n int64) string { return fmt.Sprintf("%d MiB", (n+1<<20-1)>>20) }

// pngCost reads the chunks before the pixel data: the layout is in IHDR,
// and a tRNS chunk turns gray or RGB into NRGBA (gray 8-bit: 4 bytes a
// pixel, not 1). Anything it cannot read costs the most a PNG can.
func pngCost(r *bufio.Reader, w, h int) (string, int64) {
	const worst = 2 * 8 // 16-bit RGBA, interlaced
	px := int64(w) * int64(h)
	if _, err := r.Discard(8); err != nil {
		return "PNG", worst * px
	}
	var (
		depth, colorType, interlace byte
		seenIHDR, trns              bool
		head                        [8]byte
	)
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return "PNG", worst * px
		}
		n, typ := int(binary.BigEndian.Uint32(head[:4])), string(head[4:])
		if typ == "IDAT" {
			break
		}
		switch typ {
		case "IHDR":
			var d [13]byte
			if n != len(d) {
				return "PNG", worst * px
			}
			if _, err := io.ReadFull(r, d[:]); err != nil {
				return "PNG", worst * px
			}
			depth, colorType, interlace, seenIHDR = d[8], d[9], d[12], true
			n = 0
		case "tRNS":
			trns = true
		}
		if n < 0 {
			return "PNG", worst * px
		}
		if _, err := r.Discard(n + 4); err != nil { // the data and its CRC
			return "PNG", worst * px
		}
	}
	if !seenIHDR {
		return "PNG", worst * px
	}
	// What the decoder stores (image/png's readImagePass), and how many
	// channels the file has.
	var stored, channels int64
	var name string
	switch colorType {
	case 0:
		stored, channels, name = 1, 1, "grayscale"
		if depth == 16 {
			stored = 2
		}
		if trns { // NRGBA or NRGBA64
			stored, name = 4*stored, "grayscale with a transparent color"
		}
	case 2:
		stored, channels, name = 4, 3, "RGB"
		if depth == 16 {
			stored = 8
		}
		if trns {
			name = "RGB with a transparent color"
		}
	case 3:
		stored, channels, name = 1, 1, "paletted"
	case 4:
		stored, channels, name = 4, 2, "grayscale with alpha"
		if depth == 16 {
			stored = 8
		}
	case 6:
		stored, channels, name = 4, 4, "RGBA"
		if depth == 16 {
			stored = 8
		}
	default:
		return "PNG", worst * px
	}
	name = fmt.Sprintf("%d-bit %s", depth, name)
	cost := stored * px
	if interlace != 0 {
		// The whole image, and each pass's own image before it is merged
		// in: the passes add up to the whole image once more.
		cost, name = 2*cost, name+", interlaced"
	}
	row := 1 + (int64(w)*channels*int64(depth)+7)/8 // the current and previous rows
	return name, cost + 2*row
}

// jpegCost scans the JPEG's markers to its end, as image/jpeg reads them:
// the frame header gives the components and their sampling, a progressive
// frame keeps 64 int32 coefficients per sample until the end, and the last
// JFIF and Adobe markers decide whether three components are converted to
// RGBA and four to CMYK. Anything it cannot read costs the most a JPEG can.
func jpegCost(r *bufio.Reader, w, h int) (string, int64) {
	const worst = 4 + 4*4 + 4 // four full planes, their coefficients, CMYK
	px := int64(w) * int64(h)
	var soi [2]byte
	if _, err := io.ReadFull(r, soi[:]); err != nil || soi != [2]byte{0xff, 0xd8} {
		return "JPEG", worst * px
	}
	var (
		sof                         []byte // precision, height, width, count, then id, hv, tq each
		progressive, jfif, adobeRGB bool
	)
	for {
		marker, err := nextMarker(r)
		if err != nil || marker == 0xd9 { // EOI: the decoder stops here
			break
		}
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			break
		}
		n := int(l[0])<<8 | int(l[1]) - 2
		if n < 0 {
			break
		}
		var seg []byte // the part of the segment that matters here
		switch {
		case (marker == 0xc0 || marker == 0xc1 || marker == 0xc2) && sof == nil && n <= 6+3*4:
			seg = make([]byte, n)
		case marker == 0xe0 && n >= 5:
			seg = make([]byte, 5)
		case marker == 0xee && n >= 12:
			seg = make([]byte, 12)
		}
		if _, err := io.ReadFull(r, seg); err != nil {
			break
		}
		if _, err := r.Discard(n - len(seg)); err != nil {
			break
		}
		switch {
		case seg == nil:
		case marker == 0xe0:
			jfif = string(seg) == "JFIF\x00"
		case marker == 0xee:
			if string(seg[:5]) == "Adobe" {
				adobeRGB = seg[11] == 0 // transform 0: RGB (three components) or CMYK (four)
			}
		default:
			sof, progressive = seg, marker == 0xc2
		}
	}
	if len(sof) < 6 || int(sof[5]) < 1 || len(sof) < 6+3*int(sof[5]) {
		return "JPEG", worst * px
	}
	nComp := int(sof[5])
	hv := func(i int) (int64, int64) { return int64(sof[7+3*i] >> 4), int64(sof[7+3*i] & 15) }
	h0, v0 := hv(0)
	if nComp == 1 {
		h0, v0 = 1, 1
	}
	if h0 < 1 || v0 < 1 {
		return "JPEG", worst * px
	}
	// The decoder's planes cover whole MCUs.
	mxx, myy := (int64(w)+8*h0-1)/(8*h0), (int64(h)+8*v0-1)/(8*v0)
	var samples int64 // one byte each in the planes, one int32 coefficient each if progressive
	for i := range nComp {
		hi, vi := hv(i)
		if nComp == 1 {
			hi, vi = 1, 1
		}
		samples += 64 * mxx * myy * hi * vi
	}
	cost := samples
	if progressive {
		cost += 4 * samples
	}
	var name string
	switch nComp {
	case 1:
		name = "8-bit grayscale"
	case 3:
		name = "YCbCr " + subsampling(sof)
		if !jfif && (adobeRGB || string([]byte{sof[6], sof[9], sof[12]}) == "RGB") {
			cost, name = cost+4*px, "RGB"
		}
	case 4:
		cost, name = cost+4*px, "CMYK"
	default:
		return "JPEG", worst * px
	}
	if progressive {
		name += ", progressive"
	}
	return name, cost
}

// nextMarker skips to the next marker and returns its code, passing over
// what image/jpeg passes over: entropy-coded data and stray bytes, stuffed
// zeros (FF 00), restart markers and fill bytes.
func nextMarker(r *bufio.Reader) (byte, error) {
	for {
		if _, err := r.ReadSlice(0xff); err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			return 0, err
		}
		m, err := r.ReadByte()
		for err == nil && m == 0xff {
			m, err = r.ReadByte()
		}
		if err != nil {
			return 0, err
		}
		if m != 0 && (m < 0xd0 || m > 0xd7) {
			return m, nil
		}
	}
}

// subsampling names the chroma subsampling of a three-component frame.
func subsampling(sof []byte) string {
	y, c := sof[7], sof[10]
	if c == 0 || y>>4%(c>>4) != 0 || y&15%(c&15) != 0 {
		return "subsampled"
	}
	switch (y>>4/(c>>4))<<4 | (y & 15 / (c & 15)) {
	case 0x11:
		return "4:4:4"
	case 0x12:
		return "4:4:0"
	case 0x21:
		return "4:2:2"
	case 0x22:
		return "4:2:0"
	case 0x41:
		return "4:1:1"
	case 0x42:
		return "4:1:0"
	}
	return "subsampled"
}

// webpCost tells a simple lossy WebP (its first chunk is VP8: YCbCr 4:2:0
// in whole 16×16 macroblocks) from the others: lossless (VP8L) and extended
// ones (VP8X, whose alpha is itself a lossless image), counted as the worst.
//
// A lossy frame is read whole into memory first: as many bytes as its chunk
// claims, which x/image/vp8 caps at 16.5 MiB.
func webpCost(r *bufio.Reader, w, h int) (string, int64) {
	var head [20]byte
	if _, err := io.ReadFull(r, head[:]); err == nil && string(head[12:16]) == "VP8 " {
		mbw, mbh := int64(w+15)/16, int64(h+15)/16
		frame := min(int64(binary.LittleEndian.Uint32(head[16:])), 1<<24+1<<19)
		return "lossy YCbCr 4:2:0", 384*mbw*mbh + frame // 256 luma and 2×64 chroma bytes per macroblock
	}
	// Lossless: 4 bytes a pixel, as many again to undo color indexing, the
	// transforms' own small images; alpha adds a byte a pixel besides.
	return "lossless or transparent WebP", 11 * int64(w) * int64(h)
}
