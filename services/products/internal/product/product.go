// Package product holds the catalog domain: what a valid product is, how it
// changes, who may change it, and what a valid search is. It imports neither
// go-micro nor bbolt.
package product

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/marketmesh/marketmesh/plugins/money"

	"github.com/marketmesh/marketmesh/plugins/validate"
)

// Sentinel errors; the handler maps them to RPC status codes.
var (
	ErrNotFound  = errors.New("not found")
	ErrInvalid   = validate.ErrInvalid
	ErrForbidden = errors.New("only the product's creator may change it")
)

// invalid returns a validation error whose message names the field; it
// matches ErrInvalid.
func invalid(format string, a ...any) error { return validate.Errorf(format, a...) }

// Limits on product fields, in characters (runes).
const (
	MaxName           = 200
	MaxDescription    = 5000
	MaxBrand          = 100
	MaxCategoryDepth  = 4
	MaxCategorySeg    = 40
	MaxAttributes     = 50
	MaxAttributeKey   = 50
	MaxAttributeValue = 200
)

// Product is a catalog entry. ViewCount and LowestPrices are maintained by
// the store (views, publication events), never by the creator.
type Product struct {
	ID          string
	Name        string
	Description string
	Category    string // normalized path: "electronics/phones"
	Brand       string // as written; compared folded
	Attributes  map[string]string
	CreatorID   string
	ViewCount   int64
	// LowestPrices is the cheapest active publication per currency, sorted by currency.
	LowestPrices []money.Money
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// PublicationPrice is the state of one publication that the catalog cares
// about: its price and whether it is on sale (active with stock). The store
// keeps each product's lowest prices from them.
type PublicationPrice struct {
	PublicationID string
	ProductID     string
	Price         money.Money
	Active        bool
	// Seq orders updates: the event's outbox sequence at publications (its
	// commit order). A state from an event older than the one already
	// applied is ignored. Zero to skip the check.
	Seq uint64
	// EventID is the event's ID, kept with the state for tracing.
	EventID string
}

// Draft is what a creator provides.
type Draft struct {
	Name        string
	Description string
	Category    string
	Brand       string
	Attributes  map[string]string
}

// New validates d and returns the product it describes, created by creator.
func New(id, creator string, d Draft, now time.Time) (Product, error) {
	if creator == "" {
		return Product{}, invalid("creator is required")
	}
	p := Product{ID: id, CreatorID: creator, CreatedAt: now, UpdatedAt: now}
	ch := Patch{Name: &d.Name, Description: &d.Description, Category: &d.Category, Brand: &d.Brand, Attributes: &d.Attributes}
	if err := p.Apply(ch, now); err != nil {
		return Product{}, err
	}
	return p, nil
}

// Patch changes some fields of a product; nil fields stay as they are.
type Patch struct {
	Name        *string
	Description *string
	Category    *string
	Brand       *string
	Attributes  *map[string]string
}

// Apply validates every field of ch and then applies them all, or none.
func (p *Product) Apply(ch Patch, now time.Time) error {
	next := *p
	var err error
	if ch.Name != nil {
		if next.Name, err = cleanText("name", *ch.Name, MaxName, true, false); err != nil {
			return err
		}
	}
	if ch.Description != nil {
		if next.Description, err = cleanText("description", *ch.Description, MaxDescription, false, true); err != nil {
			return err
		}
	}
	if ch.Brand != nil {
		if next.Brand, err = cleanText("brand", *ch.Brand, MaxBrand, false, false); err != nil {
			return err
		}
	}
	if ch.Category != nil {
		if next.Category, err = NormalizeCategory(*ch.Category); err != nil {
			return err
		}
	}
	if ch.Attributes != nil {
		if next.Attributes, err = cleanAttributes(*ch.Attributes); err != nil {
			return err
		}
	}
	next.UpdatedAt = now
	*p = next
	return nil
}

// CheckID rejects a missing product ID (any other unknown ID is not found).
func CheckID(id string) error {
	if strings.TrimSpace(id) == "" {
		return invalid("id is required")
	}
	return nil
}

// CheckEditor allows only the creator to change or delete the product.
func (p Product) CheckEditor(caller string) error {
	if caller == "" || caller != p.CreatorID {
		return ErrForbidden
	}
	return nil
}

// cleanText trims s and checks it as the named field. Multi-line fields
// (descriptions) may contain newlines and tabs; no field may contain other
// control characters.
func cleanText(field, s string, max int, required, multiline bool) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		if required {
			return "", invalid("%s is required", field)
		}
		return "", nil
	}
	if !utf8.ValidString(s) {
		return "", invalid("%s must be valid UTF-8", field)
	}
	if n := utf8.RuneCountInString(s); n > max {
		return "", invalid("%s must be at most %d characters (got %d)", field, max, n)
	}
	for _, r := range s {
		if unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\t' || r == '\r')) {
			return "", invalid("%s must not contain control characters", field)
		}
	}
	return s, nil
}

// NormalizeCategory returns the canonical form of a category path: trimmed,
// lower case, 1..4 slash-separated segments of [a-z0-9-]{1,40}
// ("Electronics/Phones" → "electronics/phones").
func NormalizeCategory(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return "", invalid("category is required")
	}
	segs := strings.Split(s, "/")
	if len(segs) > MaxCategoryDepth {
		return "", invalid("category must have at most %d levels (got %d)", MaxCategoryDepth, len(segs))
	}
	for i, seg := range segs {
		seg = strings.TrimSpace(seg)
		if !validSegment(seg) {
			return "", invalid("category segment %q must be 1 to %d characters of a-z, 0-9 and '-'", seg, MaxCategorySeg)
		}
		segs[i] = seg
	}
	return strings.Join(segs, "/"), nil
}

func validSegment(s string) bool {
	if s == "" || len(s) > MaxCategorySeg {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Ancestors lists path and every category above it, root first:
// "a/b/c" → ["a", "a/b", "a/b/c"].
func Ancestors(path string) []string {
	var out []string
	for i := 0; i < len(path); i++ {
		if path[i] == '/' {
			out = append(out, path[:i])
		}
	}
	return append(out, path)
}

func cleanAttributes(in map[string]string) (map[string]string, error) {
	if len(in) > MaxAttributes {
		return nil, invalid("attributes must have at most %d keys (got %d)", MaxAttributes, len(in))
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		key, err := cleanText("attributes key", k, MaxAttributeKey, true, false)
		if err != nil {
			return nil, err
		}
		val, err := cleanText(fmt.Sprintf("attributes[%q]", key), v, MaxAttributeValue, false, false)
		if err != nil {
			return nil, err
		}
		if _, dup := out[key]; dup {
			return nil, invalid("attributes key %q appears twice once trimmed", key)
		}
		out[key] = val
	}
	return out, nil
}
