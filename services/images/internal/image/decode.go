package image

import (
	stdimage "image"
	"io"
	"net/http"
	"strings"

	// Decoders for stdimage.DecodeConfig and stdimage.Decode: one for each
	// type Sniff accepts.
	_ "image/gif"
	_ "image/jpeg"
	_ "image/png"

	_ "golang.org/x/image/webp"
)

// SniffLen is how many leading bytes Sniff looks at.
const SniffLen = 512

// formats maps the sniffed MIME type to the name stdimage.DecodeConfig
// reports; ReadHeader (header.go) reads dimensions and decoding costs.
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
func Decode(r io.Reader, contentType string) (stdimage.Image, error) {
	img, format, err := stdimage.Decode(r)
	if err != nil {
		return nil, invalid("the file is not a valid %s image: %v", contentType, err)
	}
	if format != formats[contentType] {
		return nil, invalid("the file is not a valid %s image (its header is %s)", contentType, format)
	}
	return img, nil
}
