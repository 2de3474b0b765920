// Package image holds the images domain: what a valid owner and upload are
// (type sniffing, dimension limits, the memory decoding takes), what a
// stored image is, who may delete it, and the errors they raise. It imports neither go-micro nor bbolt.
// Scaling and encoding thumbnails is package thumbnail's work.
package image

import (
	"errors"
	"fmt"
	"time"

	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/plugins/paging"
	"github.com/marketmesh/marketmesh/plugins/validate"
)

// Sentinel errors; the handler maps each to one status (RPC and HTTP alike).
var (
	ErrNotFound    = errors.New("not found")
	ErrForbidden   = errors.New("forbidden")
	ErrInvalid     = validate.ErrInvalid            // 422
	ErrTooLarge    = errors.New("too large")        // 413
	ErrUnsupported = errors.New("unsupported type") // 415
)

func newError(kind error, format string, a ...any) error { return validate.Kind(kind, format, a...) }

// invalid returns a validation error whose message names the field; it
// matches ErrInvalid.
func invalid(format string, a ...any) error { return validate.Errorf(format, a...) }

// Limits on uploads.
const (
	// MaxBytes is the largest accepted file.
	MaxBytes = imagesrpc.MaxBytes
	// MaxSide is the largest accepted width or height, in pixels.
	MaxSide = 10000
	// MaxPixels is the largest accepted width*height (40 megapixels). What
	// decoding takes depends on the pixel format too (ReadHeader,
	// Header.CheckMemory): 60 MB for a JPEG of that size, 320 MB for a
	// 16-bit PNG.
	MaxPixels = 40_000_000
	// MaxID is the longest owner or uploader ID.
	MaxID = 64
	// MaxOwners is how many owners one First call may ask about.
	MaxOwners = 100
)

// CheckSize refuses a file of more than MaxBytes bytes (ErrTooLarge).
func CheckSize(n int64) error {
	if n > MaxBytes {
		return newError(ErrTooLarge, "the file is larger than %d MiB", MaxBytes>>20)
	}
	return nil
}

// Owner is what an image belongs to.
type Owner struct {
	Type string
	ID   string
}

// CheckOwner validates an owner type and ID.
func CheckOwner(ownerType, ownerID string) (Owner, error) {
	switch ownerType {
	case imagesrpc.OwnerProduct, imagesrpc.OwnerPublication, imagesrpc.OwnerUser:
	case "":
		return Owner{}, invalid("owner_type is required (product, publication or user)")
	default:
		return Owner{}, invalid("owner_type %q is not one of product, publication, user", clip(ownerType))
	}
	if err := CheckID("owner_id", ownerID); err != nil {
		return Owner{}, err
	}
	return Owner{Type: ownerType, ID: ownerID}, nil
}

// CheckID validates an ID that becomes part of a storage key and a URL:
// 1 to MaxID characters of ASCII letters, digits, '-', '_', '.' and ':'
// (no '/', no separators, no control characters).
func CheckID(field, v string) error {
	if v == "" {
		return invalid("%s is required", field)
	}
	if len(v) > MaxID {
		return invalid("%s must be at most %d characters", field, MaxID)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return invalid("%s may contain only letters, digits, '-', '_', '.' and ':'", field)
		}
	}
	return nil
}

// CheckOwnerIDs validates the owner list of a First call.
func CheckOwnerIDs(ownerType string, ids []string) error {
	if _, err := CheckOwner(ownerType, "x"); err != nil {
		return err
	}
	if len(ids) > MaxOwners {
		return invalid("owner_ids may name at most %d owners", MaxOwners)
	}
	for _, id := range ids {
		if err := CheckID("owner_ids", id); err != nil {
			return err
		}
	}
	return nil
}

// clip shortens a client value quoted back in an error message.
func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

// ListQuery asks for one page of an owner's images, oldest first.
type ListQuery struct {
	OwnerType string
	OwnerID   string
	PageSize  int    // after Normalize: 1 to paging.MaxSize
	PageToken string // as the store issued it; the store checks it
}

// Normalize validates q's owner and applies the paging limits (page size
// paging.DefaultSize when unset, at most paging.MaxSize).
func (q ListQuery) Normalize() (ListQuery, error) {
	if _, err := CheckOwner(q.OwnerType, q.OwnerID); err != nil {
		return q, err
	}
	q.PageSize = paging.Size(q.PageSize)
	return q, nil
}

// Upload is whom an upload is for and who sends it, checked (CheckUpload)
// before any of its bytes are read.
type Upload struct {
	Owner      Owner
	UploaderID string
}

// CheckUpload validates an upload's owner and uploader.
func CheckUpload(ownerType, ownerID, uploaderID string) (Upload, error) {
	owner, err := CheckOwner(ownerType, ownerID)
	if err != nil {
		return Upload{}, err
	}
	if err := CheckID("uploader_id", uploaderID); err != nil {
		return Upload{}, err
	}
	return Upload{Owner: owner, UploaderID: uploaderID}, nil
}

// Blob describes one stored file.
type Blob struct {
	SHA256      string `json:"sha256"`
	ContentType string `json:"content_type"`
	Bytes       int64  `json:"bytes"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
}

// Image is a stored image: the original and its thumbnail. Images never
// change once stored. The JSON form is the store's on-disk record.
type Image struct {
	ID         string    `json:"id"`
	OwnerType  string    `json:"owner_type"`
	OwnerID    string    `json:"owner_id"`
	UploaderID string    `json:"uploader_id"`
	Original   Blob      `json:"original"`
	Thumbnail  Blob      `json:"thumbnail"`
	CreatedAt  time.Time `json:"created_at"`
}

// New returns the image up stores, with its original and thumbnail, created
// at now (kept in UTC). It refuses an invalid owner or uploader, and blobs
// without a hash or a type (a bug of the caller, not of the client).
func New(id string, up Upload, original, thumbnail Blob, now time.Time) (Image, error) {
	if _, err := CheckUpload(up.Owner.Type, up.Owner.ID, up.UploaderID); err != nil {
		return Image{}, err
	}
	if id == "" {
		return Image{}, errors.New("image: new image without an ID")
	}
	for _, b := range []Blob{original, thumbnail} {
		if b.SHA256 == "" || b.ContentType == "" {
			return Image{}, fmt.Errorf("image: new image %s has a blob without hash or type", id)
		}
	}
	return Image{
		ID: id, OwnerType: up.Owner.Type, OwnerID: up.Owner.ID, UploaderID: up.UploaderID,
		Original: original, Thumbnail: thumbnail, CreatedAt: now.UTC(),
	}, nil
}

// CheckUploader allows only the uploader to delete the image.
func (im Image) CheckUploader(caller string) error {
	if caller == "" || caller != im.UploaderID {
		return newError(ErrForbidden, "only the uploader may delete image %s", im.ID)
	}
	return nil
}
