// Package imagesrpc is the images service's contract. Metadata travels over
// RPC; image bytes travel over the service's own HTTP endpoint (its address
// is in the registry node metadata under HTTPAddressKey), because a 10 MiB
// upload does not belong in one JSON RPC message.
//
// Internal HTTP endpoints (not public; the api proxies them):
//
//	POST /internal/images?owner_type=&owner_id=&uploader_id=   body: the file bytes
//	     → 201 Image | 413 too large | 415 not JPEG/PNG/GIF/WebP | 422 bad owner or dimensions
//	GET  /internal/images/{id}            → the bytes, Content-Type, ETag, Cache-Control; 304 on If-None-Match
//	GET  /internal/images/{id}/thumbnail  → the same for the 256 px thumbnail
//
// Errors on that endpoint use the public error shape {"error":{"code","message","request_id"}}.
package imagesrpc

import (
	"context"
	"time"

	"go-micro.dev/v4/client"

	"github.com/marketmesh/marketmesh/plugins/rpcclient"
)

// Service is the registry name of the images service.
const Service = "marketmesh.images"

// HTTPAddressKey is the node metadata key holding the blob endpoint's host:port.
const HTTPAddressKey = "http"

// MaxBytes is the largest accepted upload (10 MiB).
const MaxBytes = 10 << 20

// Owner types.
const (
	OwnerProduct     = "product"
	OwnerPublication = "publication"
	OwnerUser        = "user"
)

// Image is an uploaded image's metadata.
type Image struct {
	ID          string    `json:"id"`
	OwnerType   string    `json:"owner_type"`
	OwnerID     string    `json:"owner_id"`
	UploaderID  string    `json:"uploader_id"`
	ContentType string    `json:"content_type"`
	Bytes       int64     `json:"bytes"`
	Width       int       `json:"width"`
	Height      int       `json:"height"`
	SHA256      string    `json:"sha256"` // of the bytes; the ETag
	CreatedAt   time.Time `json:"created_at"`
}

// IDRequest names an image.
type IDRequest struct {
	ID string `json:"id"`
}

// ListRequest lists an owner's images, oldest first.
type ListRequest struct {
	OwnerType string `json:"owner_type"`
	OwnerID   string `json:"owner_id"`
	PageSize  int    `json:"page_size"`
	PageToken string `json:"page_token"`
}

// ListResponse is one page.
type ListResponse struct {
	Items         []Image `json:"items"`
	NextPageToken string  `json:"next_page_token"`
}

// FirstRequest asks for the first (oldest) image of each owner.
type FirstRequest struct {
	OwnerType string   `json:"owner_type"`
	OwnerIDs  []string `json:"owner_ids"`
}

// FirstResponse maps owner ID → its first image; owners without images are absent.
type FirstResponse struct {
	Images map[string]Image `json:"images"`
}

// Empty carries nothing.
type Empty struct{}

// Client calls the images service's RPC endpoints.
type Client struct{ c client.Client }

// NewClient returns a typed client over c (from rpcclient.New).
func NewClient(c client.Client) *Client { return &Client{c: c} }

func call[Rsp any](ctx context.Context, c client.Client, endpoint string, req any, opts ...client.CallOption) (*Rsp, error) {
	return rpcclient.Call[Rsp](ctx, c, Service, "Images."+endpoint, req, opts...)
}

var read = rpcclient.Read()

// Get reads one image's metadata.
func (c *Client) Get(ctx context.Context, id string) (*Image, error) {
	return call[Image](ctx, c.c, "Get", &IDRequest{ID: id}, read)
}

// List lists an owner's images.
func (c *Client) List(ctx context.Context, r ListRequest) (*ListResponse, error) {
	return call[ListResponse](ctx, c.c, "List", &r, read)
}

// First returns the first image of each owner.
func (c *Client) First(ctx context.Context, r FirstRequest) (*FirstResponse, error) {
	return call[FirstResponse](ctx, c.c, "First", &r, read)
}

// Delete removes an image (uploader only) and, when no other image shares
// its bytes, its blob.
func (c *Client) Delete(ctx context.Context, id string) error {
	_, err := call[Empty](ctx, c.c, "Delete", &IDRequest{ID: id})
	return err
}
