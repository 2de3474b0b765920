package imaging

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"strings"

	"golang.org/x/image/draw"

	// Decoders for image.DecodeConfig and image.Decode.
	_ "image/gif"

	_ "golang.org/x/image/webp"
)

// SniffLen is how many leading bytes Sniff looks at.
const SniffLen = 512

// formats maps the sniffed MIME type to the name image.DecodeConfig reports.
var formats = map[string]string{
	"image/jpeg": "jpeg",
	"image/png":  "png",
	"image/gif":  "gif",
	"image/webp": "webp",
}

// Sniff returns the content type of a file from its first bytes (at most
// SniffLen are looked at). Names and headers are never consulted.
func Sniff(head []byte) (string, error) {
	if len(head) == 0 {
		return "", newError(ErrUnsupported, "the file is empty; want JPEG, PNG, GIF or WebP")
	}
	ct := http.DetectContentType(head)
	if _, ok := formats[ct]; !ok {
		ct, _, _ = strings.Cut(ct, ";") // "text/plain; charset=utf-8"
		return "", newError(ErrUnsupported, "the file looks like %s; want JPEG, PNG, GIF or WebP", ct)
	}
	return ct, nil
}

// Config reads only the header of a file sniffed as contentType and checks
// its dimensions against the limits, before anything is decoded: a few
// hundred bytes can claim gigapixels.
func Config(r io.Reader, contentType string) (width, height int, err error) {
	cfg, format, err := image.DecodeConfig(r)
	if err != nil {
		return 0, 0, invalid("the file is not a valid %s image: %v", contentType, err)
	}
	if format != formats[contentType] {
		return 0, 0, invalid("the file is not a valid %s image (its header is %s)", contentType, format)
	}
	if err := CheckDimensions(cfg.Width, cfg.Height); err != nil {
		return 0, 0, err
	}
	return cfg.Width, cfg.Height, nil
}

// CheckDimensions enforces MaxSide and MaxPixels.
func CheckDimensions(w, h int) error {
	switch {
	case w <= 0 || h <= 0:
		return invalid("the image has no pixels (%dx%d)", w, h)
	case w > MaxSide || h > MaxSide:
		return invalid("the image is %dx%d pixels; each side may be at most %d", w, h, MaxSide)
	case int64(w)*int64(h) > MaxPixels:
		return invalid("the image is %dx%d pixels (%.1f megapixels); at most %d megapixels are accepted",
			w, h, float64(w)*float64(h)/1e6, MaxPixels/1_000_000)
	}
	return nil
}

// Decode decodes a whole image whose header Config accepted.
func Decode(r io.Reader, contentType string) (image.Image, error) {
	img, format, err := image.Decode(r)
	if err != nil {
		return nil, invalid("the file is not a valid %s image: %v", contentType, err)
	}
	if format != formats[contentType] {
		return nil, invalid("the file is not a valid %s image (its header is %s)", contentType, format)
	}
	return img, nil
}

// ThumbDims returns the thumbnail size for a w×h image: the longer side
// becomes ThumbSide, the aspect ratio is kept, and smaller images keep
// their size (never upscaled).
func ThumbDims(w, h int) (int, int) {
	if w <= ThumbSide && h <= ThumbSide {
		return w, h
	}
	if w >= h {
		return ThumbSide, max(1, (h*ThumbSide+w/2)/w)
	}
	return max(1, (w*ThumbSide+h/2)/h), ThumbSide
}

// Thumbnail scales src (ThumbDims) and encodes it: JPEG at quality 85, or
// PNG when the source has transparency.
func Thumbnail(src image.Image) (data []byte, contentType string, width, height int, err error) {
	sb := src.Bounds()
	width, height = ThumbDims(sb.Dx(), sb.Dy())
	dst := image.NewRGBA(image.Rect(0, 0, width, height))
	if width == sb.Dx() && height == sb.Dy() {
		draw.Copy(dst, image.Point{}, src, sb, draw.Src, nil)
	} else {
		half, hb := halve(src, sb, width, height)
		draw.CatmullRom.Scale(dst, dst.Bounds(), half, hb, draw.Src, nil)
	}
	var buf bytes.Buffer
	if transparent(src) {
		contentType = "image/png"
		err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, dst)
	} else {
		contentType = "image/jpeg"
		err = jpeg.Encode(&buf, dst, &jpeg.Options{Quality: 85})
	}
	if err != nil {
		return nil, "", 0, 0, fmt.Errorf("thumbnail: %w", err)
	}
	return buf.Bytes(), contentType, width, height, nil
}

// halve shrinks src by halves while the result stays at least twice the
// target size. At a ratio of exactly 2, bilinear sampling averages each 2×2
// block (a box filter: no aliasing) and costs four reads per output pixel;
// Catmull-Rom then only has a factor below 4 left to cover, instead of
// reading every source pixel through a kernel 2×factor wide.
func halve(src image.Image, sb image.Rectangle, w, h int) (image.Image, image.Rectangle) {
	for sb.Dx()/2 >= 2*w && sb.Dy()/2 >= 2*h {
		half := image.NewRGBA(image.Rect(0, 0, sb.Dx()/2, sb.Dy()/2))
		draw.ApproxBiLinear.Scale(half, half.Bounds(), src, sb, draw.Src, nil)
		src, sb = half, half.Bounds()
	}
	return src, sb
}

// transparent reports whether any pixel of img is not fully opaque. Every
// decoder this service uses returns a type with an Opaque method (which
// answers from the color model when it can and scans the pixels otherwise).
func transparent(img image.Image) bool {
	if o, ok := img.(interface{ Opaque() bool }); ok {
		return !o.Opaque()
	}
	return true
}
