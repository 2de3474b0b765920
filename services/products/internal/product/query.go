package product

import (
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/plugins/paging"
)

// Sort orders of a search (the same strings as productsrpc).
const (
	SortRelevance = "relevance"
	SortNewest    = "newest"
	SortPriceAsc  = "price_asc"
	SortPriceDesc = "price_desc"
	SortPopular   = "popular"
)

// Search limits; page sizes are paging's.
const (
	MaxQuery        = 200
	DefaultCurrency = "USD"
)

// Query is a validated, normalized search.
type Query struct {
	Text     string // free text; empty for none
	Category string // normalized path; matches sub-categories too
	Brand    string // trimmed; compared folded
	// MinPrice and MaxPrice (inclusive, minor units of Currency) filter on the
	// lowest active publication price; nil for no bound.
	MinPrice  *int64
	MaxPrice  *int64
	Currency  string
	Sort      string
	PageSize  int
	PageToken string
}

// HasPriceFilter reports whether a price bound is set.
func (q Query) HasPriceFilter() bool { return q.MinPrice != nil || q.MaxPrice != nil }

// Normalize validates q and fills in the defaults: sort relevance with text,
// newest without; currency USD; page size by paging.Size (20 when unset, at
// most 100).
func (q Query) Normalize() (Query, error) {
	q.Text = strings.TrimSpace(q.Text)
	if !utf8.ValidString(q.Text) {
		return q, invalid("query must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(q.Text); n > MaxQuery {
		return q, invalid("query must be at most %d characters (got %d)", MaxQuery, n)
	}
	if strings.TrimSpace(q.Category) != "" {
		c, err := NormalizeCategory(q.Category)
		if err != nil {
			return q, err
		}
		q.Category = c
	} else {
		q.Category = ""
	}
	var err error
	if q.Brand, err = cleanText("brand", q.Brand, MaxBrand, false, false); err != nil {
		return q, err
	}
	// Currency codes are upper case everywhere (plugins/money); "usd" is
	// rejected rather than guessed at, as the public API does.
	if q.Currency = strings.TrimSpace(q.Currency); q.Currency == "" {
		q.Currency = DefaultCurrency
	}
	if !money.IsCurrency(q.Currency) {
		return q, invalid("currency %q is not an ISO 4217 code (upper case, like USD)", q.Currency)
	}
	if q.MinPrice != nil && *q.MinPrice < 0 {
		return q, invalid("min_price must not be negative")
	}
	if q.MaxPrice != nil && *q.MaxPrice < 0 {
		return q, invalid("max_price must not be negative")
	}
	if q.MinPrice != nil && q.MaxPrice != nil && *q.MinPrice > *q.MaxPrice {
		return q, invalid("min_price must not be greater than max_price")
	}
	switch q.Sort = strings.TrimSpace(q.Sort); q.Sort {
	case "":
		q.Sort = SortNewest
		if q.Text != "" {
			q.Sort = SortRelevance
		}
	case SortRelevance:
		if q.Text == "" {
			// Nothing to rank by: every product is equally relevant.
			q.Sort = SortNewest
		}
	case SortNewest, SortPriceAsc, SortPriceDesc, SortPopular:
	default:
		return q, invalid("sort must be one of relevance, newest, price_asc, price_desc, popular")
	}
	if q.PageSize < 0 {
		return q, invalid("page_size must not be negative")
	}
	q.PageSize = paging.Size(q.PageSize)
	return q, nil
}

// Category is a node of the category tree; Count includes sub-categories.
type Category struct {
	Name     string
	Path     string
	Count    int64
	Children []Category
}

// Tree builds the category tree from per-path counts (each path's count
// already includes its sub-categories). Paths with a zero count are left
// out; siblings are sorted by name.
func Tree(counts map[string]int64) []Category {
	children := map[string][]string{} // parent path ("" for roots) → child paths
	for path, n := range counts {
		if n <= 0 {
			continue
		}
		parent := ""
		if i := strings.LastIndexByte(path, '/'); i >= 0 {
			parent = path[:i]
		}
		children[parent] = append(children[parent], path)
	}
	var build func(parent string) []Category
	build = func(parent string) []Category {
		paths := children[parent]
		sort.Strings(paths) // same parent: sorting paths sorts names
		out := make([]Category, 0, len(paths))
		for _, p := range paths {
			out = append(out, Category{
				Name:     p[strings.LastIndexByte(p, '/')+1:],
				Path:     p,
				Count:    counts[p],
				Children: build(p),
			})
		}
		return out
	}
	return build("")
}
