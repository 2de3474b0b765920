package handler

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/oklog/ulid/v2"

	"github.com/marketmesh/marketmesh/services/images/internal/budget"
	"github.com/marketmesh/marketmesh/services/images/internal/image"
	"github.com/marketmesh/marketmesh/services/images/internal/store"
	"github.com/marketmesh/marketmesh/services/images/internal/thumbnail"
)

// copyBufs are the buffers uploads stream through.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// ingest stores one upload. The body is streamed once, into a temporary
// file while it is hashed; the checks then read that file: the type from
// the first bytes (before the rest is even read), the dimensions and the
// memory decoding takes from the header, and only then, once that memory is
// reserved, the pixels, for the thumbnail.
func (b *Blobs) ingest(ctx context.Context, body io.Reader, length int64, ownerType, ownerID, uploaderID string) (image.Image, error) {
	up, err := image.CheckUpload(ownerType, ownerID, uploaderID)
	if err != nil {
		return image.Image{}, err
	}
	if err := image.CheckSize(length); err != nil {
		return image.Image{}, err
	}

	limited := io.LimitReader(body, image.MaxBytes+1)
	head := make([]byte, image.SniffLen)
	n, err := io.ReadFull(limited, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return image.Image{}, bodyError{err}
	}
	head = head[:n]
	contentType, err := image.Sniff(head)
	if err != nil {
		return image.Image{}, err
	}

	f, err := b.store.CreateTemp()
	if err != nil {
		return image.Image{}, err
	}
	temps := []string{f.Name()}
	defer func() {
		f.Close()
		for _, t := range temps {
			os.Remove(t)
		}
	}()
	sum := sha256.New()
	if _, err := f.Write(head); err != nil {
		return image.Image{}, err
	}
	sum.Write(head)
	rest, err := copyHashed(f, sum, limited)
	if err != nil {
		return image.Image{}, err
	}
	size := int64(n) + rest
	if err := image.CheckSize(size); err != nil {
		return image.Image{}, err
	}

	// Dimensions and decoding cost from the header alone, before any pixel
	// is decoded.
	hdr, err := image.ReadHeader(f, contentType)
	if err != nil {
		return image.Image{}, err
	}
	need := hdr.DecodeBytes + thumbnail.Scratch(hdr.Width, hdr.Height)
	if err := hdr.CheckMemory(need, b.opts.MaxDecodeBytes); err != nil {
		return image.Image{}, err
	}
	original := image.Blob{SHA256: hex.EncodeToString(sum.Sum(nil)), ContentType: contentType, Bytes: size, Width: hdr.Width, Height: hdr.Height}

	thumb, data, err := b.makeThumbnail(ctx, f, contentType, need)
	if err != nil {
		return image.Image{}, err
	}
	if err := f.Sync(); err != nil {
		return image.Image{}, err
	}
	if err := f.Close(); err != nil {
		return image.Image{}, err
	}
	thumbTemp, err := b.writeTemp(data)
	if thumbTemp != "" {
		temps = append(temps, thumbTemp)
	}
	if err != nil {
		return image.Image{}, err
	}
	if err := ctx.Err(); err != nil { // the deadline passed while we worked
		return image.Image{}, err
	}

	im, err := image.New(ulid.Make().String(), up, original, thumb, b.opts.Now())
	if err != nil {
		return image.Image{}, err
	}
	if err := b.store.Add(im,
		store.NewBlob{SHA256: original.SHA256, Temp: temps[0]},
		store.NewBlob{SHA256: thumb.SHA256, Temp: thumbTemp}); err != nil {
		return image.Image{}, err
	}
	temps = nil // placed: the names are free for new temporary files
	return im, nil
}

// copyHashed streams src into f and h, returning the byte count; a read
// failure is the client's (bodyError), a write failure ours.
func copyHashed(f *os.File, h hash.Hash, src io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var total int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return total, err
			}
			h.Write(buf[:n])
			total += int64(n)
		}
		switch {
		case rerr == io.EOF:
			return total, nil
		case rerr != nil:
			return total, bodyError{rerr}
		}
	}
}

// makeThumbnail decodes the file and returns the encoded thumbnail with its
// description. It first reserves need bytes of the decode memory, which it
// holds until the decoded image is no longer referenced.
func (b *Blobs) makeThumbnail(ctx context.Context, f *os.File, contentType string, need int64) (image.Blob, []byte, error) {
	release, err := b.opts.Decoding.Reserve(ctx, need)
	if err != nil {
		if errors.Is(err, budget.ErrBusy) {
			slog.WarnContext(ctx, "images: decode memory taken, upload refused",
				"need", need, "reserved", b.opts.Decoding.Reserved(), "total", b.opts.Decoding.Total())
		}
		return image.Blob{}, nil, err
	}
	defer release()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return image.Blob{}, nil, err
	}
	img, err := image.Decode(bufio.NewReaderSize(f, 64<<10), contentType)
	if err != nil {
		return image.Blob{}, nil, err
	}
	data, ct, w, h, err := thumbnail.Make(img)
	if err != nil {
		return image.Blob{}, nil, err
	}
	sum := sha256.Sum256(data)
	return image.Blob{SHA256: hex.EncodeToString(sum[:]), ContentType: ct, Bytes: int64(len(data)), Width: w, Height: h}, data, nil
}

// writeTemp writes data to a new temporary file and returns its name.
func (b *Blobs) writeTemp(data []byte) (string, error) {
	f, err := b.store.CreateTemp()
	if err != nil {
		return "", err
	}
	name := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return name, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return name, err
	}
	return name, f.Close()
}
