// Package productsrpc is the products service's contract: catalog entries,
// search and the category tree. Writes act for the caller in RPC metadata
// (rpcmeta.WithCaller); only a product's creator may change or delete it.
package productsrpc

import (
	"context"
	"time"

	"go-micro.dev/v4/client"

	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/plugins/rpcclient"
)

// Service is the registry name of the products service.
const Service = "marketmesh.products"

// TopicProductDeleted is emitted (through the outbox, in the same
// transaction as the delete) when a product is deleted. The publications
// service closes every publication of the product when it receives it.
const TopicProductDeleted = "product.deleted"

// ProductDeleted is the payload of TopicProductDeleted.
type ProductDeleted struct {
	ProductID string    `json:"product_id"`
	DeletedAt time.Time `json:"deleted_at"`
}

// Sort orders of Search.
const (
	SortRelevance = "relevance" // default when Query is set
	SortNewest    = "newest"    // default without Query
	SortPriceAsc  = "price_asc"
	SortPriceDesc = "price_desc"
	SortPopular   = "popular" // most viewed first
)

// Product is a catalog entry.
type Product struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Category    string            `json:"category"` // slash-separated path: "electronics/phones"
	Brand       string            `json:"brand"`
	Attributes  map[string]string `json:"attributes"`
	CreatorID   string            `json:"creator_id"`
	ViewCount   int64             `json:"view_count"`
	// LowestPrices holds the cheapest active publication per currency, kept
	// up to date from publication.changed events.
	LowestPrices []money.Money `json:"lowest_prices"`
	CreatedAt    time.Time     `json:"created_at"`
	UpdatedAt    time.Time     `json:"updated_at"`
}

// CreateRequest adds a product; the caller becomes its creator.
type CreateRequest struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Category    string            `json:"category"`
	Brand       string            `json:"brand"`
	Attributes  map[string]string `json:"attributes"`
}

// UpdateRequest changes a product (creator only); nil fields stay.
type UpdateRequest struct {
	ID          string             `json:"id"`
	Name        *string            `json:"name,omitempty"`
	Description *string            `json:"description,omitempty"`
	Category    *string            `json:"category,omitempty"`
	Brand       *string            `json:"brand,omitempty"`
	Attributes  *map[string]string `json:"attributes,omitempty"`
}

// GetRequest reads one product; CountView records a view for sort=popular.
type GetRequest struct {
	ID        string `json:"id"`
	CountView bool   `json:"count_view"`
}

// IDRequest names a product.
type IDRequest struct {
	ID string `json:"id"`
}

// SearchRequest filters, ranks and pages the catalog.
type SearchRequest struct {
	Query    string `json:"query"`
	Category string `json:"category"` // includes sub-categories
	Brand    string `json:"brand"`
	// MinPrice/MaxPrice (minor units, inclusive) filter on the lowest active
	// publication price in Currency (default USD); products without one are excluded.
	MinPrice  *int64 `json:"min_price,omitempty"`
	MaxPrice  *int64 `json:"max_price,omitempty"`
	Currency  string `json:"currency"`
	Sort      string `json:"sort"`
	PageSize  int    `json:"page_size"`
	PageToken string `json:"page_token"`
}

// SearchResponse is one page of results.
type SearchResponse struct {
	Items         []Product `json:"items"`
	NextPageToken string    `json:"next_page_token"`
}

// Category is a node of the category tree; Count includes sub-categories.
type Category struct {
	Name     string     `json:"name"`
	Path     string     `json:"path"`
	Count    int64      `json:"count"`
	Children []Category `json:"children"`
}

// CategoriesResponse is the whole tree.
type CategoriesResponse struct {
	Categories []Category `json:"categories"`
}

// Empty carries nothing.
type Empty struct{}

// Client calls the products service through the shared client stack.
type Client struct{ c client.Client }

// NewClient returns a typed client over c (from rpcclient.New).
func NewClient(c client.Client) *Client { return &Client{c: c} }

func call[Rsp any](ctx context.Context, c client.Client, endpoint string, req any, opts ...client.CallOption) (*Rsp, error) {
	return rpcclient.Call[Rsp](ctx, c, Service, "Products."+endpoint, req, opts...)
}

// Create adds a product.
func (c *Client) Create(ctx context.Context, r CreateRequest) (*Product, error) {
	return call[Product](ctx, c.c, "Create", &r)
}

// Get reads a product.
func (c *Client) Get(ctx context.Context, r GetRequest) (*Product, error) {
	return call[Product](ctx, c.c, "Get", &r, rpcclient.Read())
}

// Update changes a product (creator only).
func (c *Client) Update(ctx context.Context, r UpdateRequest) (*Product, error) {
	return call[Product](ctx, c.c, "Update", &r)
}

// Delete removes a product (creator only); TopicProductDeleted follows.
func (c *Client) Delete(ctx context.Context, id string) error {
	_, err := call[Empty](ctx, c.c, "Delete", &IDRequest{ID: id})
	return err
}

// Search queries the catalog.
func (c *Client) Search(ctx context.Context, r SearchRequest) (*SearchResponse, error) {
	return call[SearchResponse](ctx, c.c, "Search", &r, rpcclient.Read())
}

// Categories returns the category tree with counts.
func (c *Client) Categories(ctx context.Context) (*CategoriesResponse, error) {
	return call[CategoriesResponse](ctx, c.c, "Categories", &Empty{}, rpcclient.Read())
}
