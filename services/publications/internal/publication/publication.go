// Package publication holds the publications domain: the Publication and
// Reservation entities and the rules they guard (validation, who may change
// a publication, the status and reservation state machines, stock), and the
// errors the handler maps to RPC statuses. It imports neither go-micro nor
// bbolt.
package publication

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/plugins/paging"
	"github.com/marketmesh/marketmesh/plugins/validate"
)

// Sentinel errors; the handler maps them to RPC status codes.
var (
	ErrInvalid   = validate.ErrInvalid     // 422
	ErrNotFound  = errors.New("not found") // 404
	ErrForbidden = errors.New("forbidden") // 403
	ErrConflict  = errors.New("conflict")  // 409: every error below matches it too

	ErrClosed              = errors.New("publication is closed")
	ErrNotAvailable        = errors.New("publication is not available")
	ErrOutOfStock          = errors.New("out of stock")
	ErrReservationMismatch = errors.New("reservation exists with other terms")
	ErrReservationState    = errors.New("reservation is in another state")
)

// invalid returns a validation error whose message names the field; it
// matches ErrInvalid.
func invalid(format string, a ...any) error { return validate.Errorf(format, a...) }

// kindError carries a message for the client and matches its kind (and,
// for conflicts, ErrConflict) with errors.Is.
type kindError struct {
	kind error
	msg  string
}

func (e kindError) Error() string { return e.msg }
func (e kindError) Is(target error) bool {
	if target == e.kind {
		return true
	}
	return target == ErrConflict && e.kind != ErrNotFound && e.kind != ErrForbidden
}

// NotFound says what was not found: "publication 01H... not found".
func NotFound(what, id string) error {
	return kindError{kind: ErrNotFound, msg: fmt.Sprintf("%s %s not found", what, id)}
}

// NotOwner is the error for changing someone else's publication.
func NotOwner(id string) error {
	return kindError{kind: ErrForbidden, msg: fmt.Sprintf("publication %s belongs to another seller", id)}
}

// Closed is the error for changing a closed publication: closed is final.
func Closed(id string) error {
	return kindError{kind: ErrClosed, msg: fmt.Sprintf("publication %s is closed; a closed publication cannot change", id)}
}

// NotAvailable is the error for reserving a publication that is not active.
func NotAvailable(id, status string) error {
	return kindError{kind: ErrNotAvailable, msg: fmt.Sprintf("publication %s is not available (status %s)", id, status)}
}

// OutOfStock is the error for reserving more than is available.
func OutOfStock(id string, available int64) error {
	return kindError{kind: ErrOutOfStock, msg: fmt.Sprintf("publication %s is out of stock: %d available", id, available)}
}

// ReservationMismatch is the error for reusing a reservation ID with other terms.
func ReservationMismatch(id string) error {
	return kindError{kind: ErrReservationMismatch,
		msg: fmt.Sprintf("reservation %s already exists for another publication or quantity", id)}
}

// Limits on input.
const (
	MaxTitle    = 200
	MaxQuantity = 1_000_000
	MaxIDs      = 100 // per GetMany
	MaxIDLength = 128
	MaxQuery    = 200 // runes of a search query
)

// DefaultCurrency is the currency of price filters when none is given.
const DefaultCurrency = "USD"

// CleanTitle trims a title and checks it: 1..MaxTitle characters, valid
// UTF-8, no control characters.
func CleanTitle(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", invalid("title is required")
	}
	if !utf8.ValidString(s) {
		return "", invalid("title must be valid UTF-8")
	}
	if utf8.RuneCountInString(s) > MaxTitle {
		return "", invalid("title must be at most %d characters", MaxTitle)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "", invalid("title must not contain control characters")
		}
	}
	return s, nil
}

// CheckID validates a reference (an ID of this or another service) as the
// named field: required, at most MaxIDLength bytes, no NUL, '/' or spaces
// (IDs are parts of index keys, separated by NUL).
func CheckID(field, id string) error {
	if id == "" {
		return invalid("%s is required", field)
	}
	if len(id) > MaxIDLength || strings.ContainsAny(id, "\x00/ \t\r\n") || !utf8.ValidString(id) {
		return invalid("%s %q is not a valid ID", field, id)
	}
	return nil
}

// CheckPrice validates a price as the named field.
func CheckPrice(field string, m money.Money) error {
	if err := m.Validate(field); err != nil {
		return invalid("%s", strings.TrimPrefix(err.Error(), money.ErrInvalid.Error()+": "))
	}
	return nil
}

// CheckQuantity validates a stock quantity: an integer in 0..MaxQuantity.
func CheckQuantity(q int64) error {
	if q < 0 || q > MaxQuantity {
		return invalid("quantity must be between 0 and %d", MaxQuantity)
	}
	return nil
}

// CheckCondition validates the item condition: new or used.
func CheckCondition(c string) error {
	if c != publicationsrpc.ConditionNew && c != publicationsrpc.ConditionUsed {
		return invalid("condition must be one of new, used")
	}
	return nil
}

// CheckStatus validates a status: active, paused or closed.
func CheckStatus(field, s string) error {
	switch s {
	case publicationsrpc.StatusActive, publicationsrpc.StatusPaused, publicationsrpc.StatusClosed:
		return nil
	}
	return invalid("%s must be one of active, paused, closed", field)
}

// Publication is a seller's listing of a product. ID, SellerID, ProductID
// and Title never change once created; Quantity is the units available to
// buy and Reserved the units held by reservations.
type Publication struct {
	ID        string
	SellerID  string
	ProductID string
	Title     string
	Price     money.Money
	Quantity  int64
	Reserved  int64
	Condition string
	Status    string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Draft is what a seller provides to list a product.
type Draft struct {
	ProductID string
	Title     string
	Price     money.Money
	Quantity  int64
	Condition string
}

// New validates d and returns the active publication it describes, listed
// by seller. The title is trimmed.
func New(id, seller string, d Draft, now time.Time) (Publication, error) {
	if seller == "" {
		return Publication{}, invalid("seller is required")
	}
	if err := CheckID("product_id", d.ProductID); err != nil {
		return Publication{}, err
	}
	title, err := CleanTitle(d.Title)
	if err != nil {
		return Publication{}, err
	}
	if err := CheckPrice("price", d.Price); err != nil {
		return Publication{}, err
	}
	if err := CheckQuantity(d.Quantity); err != nil {
		return Publication{}, err
	}
	if err := CheckCondition(d.Condition); err != nil {
		return Publication{}, err
	}
	return Publication{
		ID: id, SellerID: seller, ProductID: d.ProductID, Title: title, Price: d.Price, Quantity: d.Quantity,
		Condition: d.Condition, Status: publicationsrpc.StatusActive, CreatedAt: now, UpdatedAt: now,
	}, nil
}

// Patch changes some of a publication's price, quantity (the available
// units; held reservations are not affected) and status; nil fields stay as
// they are.
type Patch struct {
	Price    *money.Money
	Quantity *int64
	Status   *string
}

// Check validates the fields ch sets, whatever publication it is applied to.
func (ch Patch) Check() error {
	if ch.Price != nil {
		if err := CheckPrice("price", *ch.Price); err != nil {
			return err
		}
	}
	if ch.Quantity != nil {
		if err := CheckQuantity(*ch.Quantity); err != nil {
			return err
		}
	}
	if ch.Status != nil {
		if err := CheckStatus("status", *ch.Status); err != nil {
			return err
		}
	}
	return nil
}

// CheckOwner allows only the seller to change the publication.
func (p Publication) CheckOwner(caller string) error {
	if caller == "" || caller != p.SellerID {
		return NotOwner(p.ID)
	}
	return nil
}

// Apply applies ch, all of it or none. Closed is final: a closed
// publication takes no change at all (409), even "closed" again. Active and
// paused move freely between each other and to closed.
func (p *Publication) Apply(ch Patch, now time.Time) error {
	if p.Status == publicationsrpc.StatusClosed {
		return Closed(p.ID)
	}
	if err := ch.Check(); err != nil {
		return err
	}
	if ch.Price != nil {
		p.Price = *ch.Price
	}
	if ch.Quantity != nil {
		p.Quantity = *ch.Quantity
	}
	if ch.Status != nil {
		p.Status = *ch.Status
	}
	p.UpdatedAt = now
	return nil
}

// CloseForDeletedProduct closes the publication because the product it
// lists was deleted: whatever its status, it ends closed (final: nothing
// more can be reserved; held reservations may still be committed or
// released, and restocked units come back to a listing that stays closed).
// changed is false when it was closed already.
func (p *Publication) CloseForDeletedProduct(now time.Time) (changed bool) {
	if p.Status == publicationsrpc.StatusClosed {
		return false
	}
	p.Status, p.UpdatedAt = publicationsrpc.StatusClosed, now
	return true
}

// Search is a validated SearchRequest.
type Search struct {
	Text      string
	ProductID string
	SellerID  string
	Status    string
	MinPrice  *int64
	MaxPrice  *int64
	Currency  string
	Sort      string
	PageSize  int
	PageToken string
}

// HasPriceRange reports whether a price bound is set; it restricts results to Currency.
func (s Search) HasPriceRange() bool { return s.MinPrice != nil || s.MaxPrice != nil }

// CheckSearch validates and fills in defaults: Currency USD, Sort relevance
// with a query and newest without, PageSize by paging.Size (20 when unset,
// at most 100).
func CheckSearch(r publicationsrpc.SearchRequest) (Search, error) {
	s := Search{
		Text: strings.TrimSpace(r.Query), ProductID: r.ProductID, SellerID: r.SellerID, Status: r.Status,
		MinPrice: r.MinPrice, MaxPrice: r.MaxPrice, Currency: r.Currency, Sort: r.Sort,
		PageSize: r.PageSize, PageToken: r.PageToken,
	}
	if utf8.RuneCountInString(s.Text) > MaxQuery || !utf8.ValidString(s.Text) {
		return Search{}, invalid("query must be valid UTF-8 of at most %d characters", MaxQuery)
	}
	if s.ProductID != "" {
		if err := CheckID("product_id", s.ProductID); err != nil {
			return Search{}, err
		}
	}
	if s.SellerID != "" {
		if err := CheckID("seller_id", s.SellerID); err != nil {
			return Search{}, err
		}
	}
	if s.Status != "" {
		if err := CheckStatus("status", s.Status); err != nil {
			return Search{}, err
		}
	}
	if s.Currency == "" {
		s.Currency = DefaultCurrency
	}
	if !money.IsCurrency(s.Currency) {
		return Search{}, invalid("currency %q is not an ISO 4217 code (upper case, like USD)", s.Currency)
	}
	if s.MinPrice != nil && *s.MinPrice < 0 {
		return Search{}, invalid("min_price must not be negative")
	}
	if s.MaxPrice != nil && *s.MaxPrice < 0 {
		return Search{}, invalid("max_price must not be negative")
	}
	if s.MinPrice != nil && s.MaxPrice != nil && *s.MinPrice > *s.MaxPrice {
		return Search{}, invalid("min_price must not be greater than max_price")
	}
	switch s.Sort {
	case "":
		s.Sort = publicationsrpc.SortNewest
		if s.Text != "" {
			s.Sort = publicationsrpc.SortRelevance
		}
	case publicationsrpc.SortRelevance:
		if s.Text == "" {
			return Search{}, invalid("sort relevance needs a query")
		}
	case publicationsrpc.SortNewest, publicationsrpc.SortPriceAsc, publicationsrpc.SortPriceDesc:
	default:
		return Search{}, invalid("sort must be one of relevance, newest, price_asc, price_desc")
	}
	if s.PageSize < 0 {
		return Search{}, invalid("page_size must not be negative")
	}
	s.PageSize = paging.Size(s.PageSize)
	return s, nil
}

// CheckIDs validates a GetMany request: at most MaxIDs IDs.
func CheckIDs(ids []string) error {
	if len(ids) > MaxIDs {
		return invalid("ids must hold at most %d IDs, not %d", MaxIDs, len(ids))
	}
	for _, id := range ids {
		if err := CheckID("ids", id); err != nil {
			return err
		}
	}
	return nil
}

// CheckCount validates a CountRequest.
func CheckCount(r publicationsrpc.CountRequest) error {
	if err := CheckID("seller_id", r.SellerID); err != nil {
		return err
	}
	if r.Status != "" {
		return CheckStatus("status", r.Status)
	}
	return nil
}

// CheckReserve validates a ReserveRequest against the longest hold allowed.
func CheckReserve(r publicationsrpc.ReserveRequest, maxTTLSeconds int64) error {
	if err := CheckID("reservation_id", r.ReservationID); err != nil {
		return err
	}
	if err := CheckID("publication_id", r.PublicationID); err != nil {
		return err
	}
	if r.Quantity < 1 || r.Quantity > MaxQuantity {
		return invalid("quantity must be between 1 and %d", MaxQuantity)
	}
	if r.TTLSeconds < 1 || r.TTLSeconds > maxTTLSeconds {
		return invalid("ttl_seconds must be between 1 and %d", maxTTLSeconds)
	}
	return nil
}

// UnknownProduct is the validation error for a product_id the products
// service does not know.
func UnknownProduct(id string) error {
	return invalid("product_id %s does not exist", id)
}
