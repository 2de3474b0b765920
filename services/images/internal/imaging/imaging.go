// Package imaging holds the images domain: the rules for owners and uploads
// (type sniffing, dimension limits, thumbnails) and the errors they raise.
// It imports neither go-micro nor bbolt.
package imaging

import (
	"errors"
	"fmt"
	"time"

	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
)

// Sentinel errors; the handler maps each to one status (RPC and HTTP alike).
var (
	ErrNotFound    = errors.New("not found")
	ErrForbidden   = errors.New("forbidden")
	ErrInvalid     = errors.New("invalid")          // 422
	ErrTooLarge    = errors.New("too large")        // 413
	ErrUnsupported = errors.New("unsupported type") // 415
)

// kindError is a failure whose message is for the client; it matches its
// sentinel with errors.Is.
type kindError struct {
	kind error
	msg  string
}

func (e kindError) Error() string        { return e.msg }
func (e kindError) Is(target error) bool { return target == e.kind }

func newError(kind error, format string, a ...any) error {
	return kindError{kind: kind, msg: fmt.Sprintf(format, a...)}
}

func invalid(format string, a ...any) error { return newError(ErrInvalid, format, a...) }

// Forbidden returns an ErrForbidden with a message.
func Forbidden(format string, a ...any) error { return newError(ErrForbidden, format, a...) }

// TooLarge is the ErrTooLarge of a file over MaxBytes.
func TooLarge() error {
	return newError(ErrTooLarge, "the file is larger than %d MiB", MaxBytes>>20)
}

// Limits on uploads.
const (
	// MaxBytes is the largest accepted file.
	MaxBytes = imagesrpc.MaxBytes
	// MaxSide is the largest accepted width or height, in pixels.
	MaxSide = 10000
	// MaxPixels is the largest accepted width*height (40 megapixels): a
	// decoded RGBA image of that size is 160 MB.
	MaxPixels = 40_000_000
	// ThumbSide is the longer side of a thumbnail, in pixels.
	ThumbSide = 256
	// MaxID is the longest owner or uploader ID.
	MaxID = 64
	// MaxOwners is how many owners one First call may ask about.
	MaxOwners = 100
)

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

// Blob describes one stored file.
type Blob struct {
	SHA256      string `json:"sha256"`
	ContentType string `json:"content_type"`
	Bytes       int64  `json:"bytes"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
}

// Image is a stored image: the original and its thumbnail.
type Image struct {
	ID         string    `json:"id"`
	OwnerType  string    `json:"owner_type"`
	OwnerID    string    `json:"owner_id"`
	UploaderID string    `json:"uploader_id"`
	Original   Blob      `json:"original"`
	Thumbnail  Blob      `json:"thumbnail"`
	CreatedAt  time.Time `json:"created_at"`
}

// RPC returns the contract view.
func (im Image) RPC() imagesrpc.Image {
	return imagesrpc.Image{
		ID: im.ID, OwnerType: im.OwnerType, OwnerID: im.OwnerID, UploaderID: im.UploaderID,
		ContentType: im.Original.ContentType, Bytes: im.Original.Bytes,
		Width: im.Original.Width, Height: im.Original.Height,
		SHA256: im.Original.SHA256, CreatedAt: im.CreatedAt,
	}
}
