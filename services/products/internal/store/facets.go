package store

import (
	"encoding/binary"
	"errors"
	"strings"

	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/plugins/textsearch"
)

// facets is the part of a product that search filters and sorts on, kept
// apart from the full record so a search decodes a few bytes per candidate
// instead of a JSON document with a 5000-character description.
//
// Binary layout:
//
//	views    u64 BE
//	catLen   u8,  category (normalized path, at most 163 bytes)
//	brandLen u16 BE, folded brand
//	nPrices  u8,  then nPrices × (currency [3] + amount u64 BE), sorted by currency
type facets struct {
	views    uint64
	category string
	brand    string // folded
	prices   []money.Money
}

var errCorruptFacets = errors.New("store: corrupt facets record")

func (f facets) encode() []byte {
	b := make([]byte, 0, 8+1+len(f.category)+2+len(f.brand)+1+11*len(f.prices))
	b = binary.BigEndian.AppendUint64(b, f.views)
	b = append(b, byte(len(f.category)))
	b = append(b, f.category...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(f.brand)))
	b = append(b, f.brand...)
	b = append(b, byte(len(f.prices)))
	for _, p := range f.prices {
		b = append(b, p.Currency...)
		b = binary.BigEndian.AppendUint64(b, uint64(p.Amount))
	}
	return b
}

func decodeFacets(raw []byte) (facets, error) {
	v, err := viewFacets(raw)
	if err != nil {
		return facets{}, err
	}
	f := facets{views: v.views, category: string(v.category), brand: string(v.brand)}
	for i := 0; i < len(v.prices); i += 11 {
		f.prices = append(f.prices, money.Money{
			Currency: string(v.prices[i : i+3]),
			Amount:   int64(binary.BigEndian.Uint64(v.prices[i+3 : i+11])),
		})
	}
	return f, nil
}

// facetView reads a facets record in place, without allocating; its slices
// point into bbolt's memory and are valid only inside the transaction.
type facetView struct {
	views    uint64
	category []byte
	brand    []byte
	prices   []byte // nPrices × 11 bytes
}

func viewFacets(raw []byte) (facetView, error) {
	var v facetView
	if len(raw) < 9 {
		return v, errCorruptFacets
	}
	v.views = binary.BigEndian.Uint64(raw)
	raw = raw[8:]
	n := int(raw[0])
	if len(raw) < 1+n+2 {
		return v, errCorruptFacets
	}
	v.category, raw = raw[1:1+n], raw[1+n:]
	n = int(binary.BigEndian.Uint16(raw))
	if len(raw) < 2+n+1 {
		return v, errCorruptFacets
	}
	v.brand, raw = raw[2:2+n], raw[2+n:]
	n = int(raw[0])
	if len(raw) != 1+11*n {
		return v, errCorruptFacets
	}
	v.prices = raw[1:]
	return v, nil
}

// price returns the lowest active price in currency, if there is one.
func (v facetView) price(currency string) (int64, bool) {
	for i := 0; i < len(v.prices); i += 11 {
		if string(v.prices[i:i+3]) == currency {
			return int64(binary.BigEndian.Uint64(v.prices[i+3 : i+11])), true
		}
	}
	return 0, false
}

// inCategory reports whether the product is in path or below it.
func (v facetView) inCategory(path string) bool {
	c := v.category
	return len(c) >= len(path) && string(c[:len(path)]) == path && (len(c) == len(path) || c[len(path)] == '/')
}

// FoldBrand is the form brands are indexed and filtered in: folded like
// search terms (case and accents) with runs of white space made one space.
func FoldBrand(brand string) string {
	return strings.Join(strings.Fields(textsearch.Fold(brand)), " ")
}
