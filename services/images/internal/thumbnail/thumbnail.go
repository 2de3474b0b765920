// Package thumbnail scales a decoded image down to a thumbnail and encodes
// it. It is pixel work only: which files are accepted, and their limits,
// are the domain's (package image).
package thumbnail

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"

	"golang.org/x/image/draw"
)

// Side is the longer side of a thumbnail, in pixels.
const Side = 256

// Dims returns the thumbnail size for a w×h image: the longer side becomes
// Side, the aspect ratio is kept, and smaller images keep their size (never
// upscaled).
func Dims(w, h int) (int, int) {
	if w <= Side && h <= Side {
		return w, h
	}
	if w >= h {
		return Side, max(1, (h*Side+w/2)/w)
	}
	return max(1, (w*Side+h/2)/h), Side
}

// encoderState covers the encoders' buffers and the encoded thumbnail.
const encoderState = 2 << 20

// Scratch is the most Make allocates for a w×h source, besides the source:
// the halved copies (halve), Catmull-Rom's intermediate (four float64 per
// thumbnail column and source row), the thumbnail and the encoder's
// buffers. An upload's memory budget is the decoded image plus this.
func Scratch(w, h int) int64 {
	tw, th := Dims(w, h)
	n := 4*int64(tw)*int64(th) + encoderState
	if tw == w && th == h {
		return n // copied, not scaled
	}
	for w/2 >= 2*tw && h/2 >= 2*th { // halve's loop
		w, h = w/2, h/2
		n += 4 * int64(w) * int64(h)
	}
	return n + 32*int64(tw)*int64(h)
}

// Make scales src (Dims) and encodes it: JPEG at quality 85, or PNG when
// the source has transparency.
func Make(src image.Image) (data []byte, contentType string, width, height int, err error) {
	sb := src.Bounds()
	width, height = Dims(sb.Dx(), sb.Dy())
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
