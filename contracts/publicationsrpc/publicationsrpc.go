// Package publicationsrpc is the publications service's contract: sellers'
// listings of products, their search, and the stock operations the orders
// service uses (reserve with an ID and expiry, commit, release).
package publicationsrpc

import (
	"context"
	"time"

	"go-micro.dev/v4/client"

	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/plugins/rpcclient"
)

// Service is the registry name of the publications service.
const Service = "marketmesh.publications"

// TopicPublicationChanged is emitted (through the outbox) whenever a
// publication is created or its price, quantity or status changes.
const TopicPublicationChanged = "publication.changed"

// Statuses and conditions.
const (
	StatusActive = "active"
	StatusPaused = "paused"
	StatusClosed = "closed"

	ConditionNew  = "new"
	ConditionUsed = "used"
)

// Sort orders of Search.
const (
	SortRelevance = "relevance"
	SortNewest    = "newest"
	SortPriceAsc  = "price_asc"
	SortPriceDesc = "price_desc"
)

// Publication is a seller's listing.
type Publication struct {
	ID        string      `json:"id"`
	SellerID  string      `json:"seller_id"`
	ProductID string      `json:"product_id"`
	Title     string      `json:"title"`
	Price     money.Money `json:"price"`
	Quantity  int64       `json:"quantity"` // available: not sold, not reserved
	Reserved  int64       `json:"reserved"` // held by unexpired reservations
	Condition string      `json:"condition"`
	Status    string      `json:"status"`
	CreatedAt time.Time   `json:"created_at"`
	UpdatedAt time.Time   `json:"updated_at"`
}

// PublicationChanged is the payload of TopicPublicationChanged: the state after the change.
type PublicationChanged struct {
	PublicationID string      `json:"publication_id"`
	ProductID     string      `json:"product_id"`
	SellerID      string      `json:"seller_id"`
	Price         money.Money `json:"price"`
	Quantity      int64       `json:"quantity"`
	Status        string      `json:"status"`
}

// CreateRequest lists a product for sale; the caller is the seller. The
// product must exist (checked with the products service).
type CreateRequest struct {
	ProductID string      `json:"product_id"`
	Title     string      `json:"title"`
	Price     money.Money `json:"price"`
	Quantity  int64       `json:"quantity"`
	Condition string      `json:"condition"`
}

// UpdateRequest changes price, quantity or status (seller only); nil fields stay.
type UpdateRequest struct {
	ID       string       `json:"id"`
	Price    *money.Money `json:"price,omitempty"`
	Quantity *int64       `json:"quantity,omitempty"`
	Status   *string      `json:"status,omitempty"`
}

// IDRequest names a publication.
type IDRequest struct {
	ID string `json:"id"`
}

// GetManyRequest reads several publications; unknown IDs are left out.
type GetManyRequest struct {
	IDs []string `json:"ids"`
}

// GetManyResponse holds the publications found, in request order.
type GetManyResponse struct {
	Items []Publication `json:"items"`
}

// SearchRequest filters, ranks and pages publications.
type SearchRequest struct {
	Query     string `json:"query"` // full text over titles
	ProductID string `json:"product_id"`
	SellerID  string `json:"seller_id"`
	Status    string `json:"status"` // empty: any
	// MinPrice/MaxPrice in minor units, inclusive, in Currency (default USD).
	MinPrice  *int64 `json:"min_price,omitempty"`
	MaxPrice  *int64 `json:"max_price,omitempty"`
	Currency  string `json:"currency"`
	Sort      string `json:"sort"`
	PageSize  int    `json:"page_size"`
	PageToken string `json:"page_token"`
}

// SearchResponse is one page of results.
type SearchResponse struct {
	Items         []Publication `json:"items"`
	NextPageToken string        `json:"next_page_token"`
}

// CountRequest counts a seller's publications.
type CountRequest struct {
	SellerID string `json:"seller_id"`
	Status   string `json:"status"` // empty: any
}

// CountResponse is a count.
type CountResponse struct {
	Count int64 `json:"count"`
}

// Reservation statuses.
const (
	ReservationHeld      = "held"
	ReservationCommitted = "committed"
	ReservationReleased  = "released"
	ReservationExpired   = "expired"
	ReservationRestocked = "restocked"
)

// ReserveRequest holds Quantity units until TTLSeconds pass. ReservationID is
// chosen by the caller and makes the call idempotent: repeating it returns
// the same reservation and holds nothing more.
type ReserveRequest struct {
	ReservationID string `json:"reservation_id"`
	PublicationID string `json:"publication_id"`
	Quantity      int64  `json:"quantity"`
	TTLSeconds    int64  `json:"ttl_seconds"`
}

// Reservation is held stock, with the snapshot of the publication taken when
// it was made (what the buyer pays, whatever the listing says later).
type Reservation struct {
	ID            string      `json:"id"`
	PublicationID string      `json:"publication_id"`
	Quantity      int64       `json:"quantity"`
	Status        string      `json:"status"`
	ExpiresAt     time.Time   `json:"expires_at"`
	ProductID     string      `json:"product_id"`
	SellerID      string      `json:"seller_id"`
	Title         string      `json:"title"`
	UnitPrice     money.Money `json:"unit_price"`
}

// ReservationRequest names a reservation (commit, release or restock; each idempotent).
type ReservationRequest struct {
	ReservationID string `json:"reservation_id"`
}

// Empty carries nothing.
type Empty struct{}

// Client calls the publications service through the shared client stack.
type Client struct{ c client.Client }

// NewClient returns a typed client over c (from rpcclient.New).
func NewClient(c client.Client) *Client { return &Client{c: c} }

func call[Rsp any](ctx context.Context, c client.Client, endpoint string, req any, opts ...client.CallOption) (*Rsp, error) {
	return rpcclient.Call[Rsp](ctx, c, Service, "Publications."+endpoint, req, opts...)
}

var read = rpcclient.Read()

// Create lists a product for sale.
func (c *Client) Create(ctx context.Context, r CreateRequest) (*Publication, error) {
	return call[Publication](ctx, c.c, "Create", &r)
}

// Get reads one publication.
func (c *Client) Get(ctx context.Context, id string) (*Publication, error) {
	return call[Publication](ctx, c.c, "Get", &IDRequest{ID: id}, read)
}

// GetMany reads several publications.
func (c *Client) GetMany(ctx context.Context, ids []string) (*GetManyResponse, error) {
	return call[GetManyResponse](ctx, c.c, "GetMany", &GetManyRequest{IDs: ids}, read)
}

// Update changes price, quantity or status (seller only).
func (c *Client) Update(ctx context.Context, r UpdateRequest) (*Publication, error) {
	return call[Publication](ctx, c.c, "Update", &r)
}

// Search queries publications.
func (c *Client) Search(ctx context.Context, r SearchRequest) (*SearchResponse, error) {
	return call[SearchResponse](ctx, c.c, "Search", &r, read)
}

// Count counts a seller's publications.
func (c *Client) Count(ctx context.Context, r CountRequest) (*CountResponse, error) {
	return call[CountResponse](ctx, c.c, "Count", &r, read)
}

// Reserve holds stock (idempotent by reservation ID).
func (c *Client) Reserve(ctx context.Context, r ReserveRequest) (*Reservation, error) {
	return call[Reservation](ctx, c.c, "Reserve", &r)
}

// Commit turns a held reservation into a sale (idempotent).
func (c *Client) Commit(ctx context.Context, reservationID string) (*Reservation, error) {
	return call[Reservation](ctx, c.c, "Commit", &ReservationRequest{ReservationID: reservationID})
}

// Restock puts the units of a committed reservation back on sale (an order
// cancelled after payment). Idempotent: a restocked reservation stays so.
func (c *Client) Restock(ctx context.Context, reservationID string) (*Reservation, error) {
	return call[Reservation](ctx, c.c, "Restock", &ReservationRequest{ReservationID: reservationID})
}

// Release returns a held reservation's units (idempotent).
func (c *Client) Release(ctx context.Context, reservationID string) (*Reservation, error) {
	return call[Reservation](ctx, c.c, "Release", &ReservationRequest{ReservationID: reservationID})
}
