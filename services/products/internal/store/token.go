package store

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"math"
	"strconv"

	"github.com/marketmesh/marketmesh/services/products/internal/product"
)

// ErrBadPageToken is returned for a page token this store did not issue, or
// one issued for a different query.
var ErrBadPageToken = errors.New("page_token is not valid for this query")

// sortKey is where an item sits in a result order; a page token carries the
// last item's key, and the next page starts strictly after it.
type sortKey struct {
	id    []byte  // inside a search, points into the read transaction's memory
	n     int64   // price_*: amount; popular: views; relevance: matched terms
	score float64 // relevance only
}

// cursor is a decoded page token.
type cursor struct {
	key sortKey
	// idf is the relevance weight of each query term as of the first page;
	// later pages rank with it, so that products added meanwhile do not move
	// the items already paged past (see text.go).
	idf []float64
}

// Token layout (then unpadded base64url):
//
//	[0]      version (1)
//	[1]      sort order code
//	[2:6]    fingerprint of the query (FNV-1a 32 of every parameter but paging)
//	[6:14]   n, int64 BE
//	[14:22]  score, float64 bits BE
//	[22]     number of idf values k, then k × float64 bits BE
//	[..]     ID of the last item
const tokenVersion = 1

var sortCodes = map[string]byte{
	product.SortNewest: 1, product.SortPriceAsc: 2, product.SortPriceDesc: 3,
	product.SortPopular: 4, product.SortRelevance: 5,
}

func fingerprint(q product.Query) uint32 {
	h := fnv.New32a()
	bound := func(p *int64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatInt(*p, 10)
	}
	for _, s := range []string{q.Text, q.Category, FoldBrand(q.Brand), q.Currency, bound(q.MinPrice), bound(q.MaxPrice), q.Sort} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return h.Sum32()
}

func encodeToken(q product.Query, c cursor) string {
	b := make([]byte, 0, 23+8*len(c.idf)+len(c.key.id))
	b = append(b, tokenVersion, sortCodes[q.Sort])
	b = binary.BigEndian.AppendUint32(b, fingerprint(q))
	b = binary.BigEndian.AppendUint64(b, uint64(c.key.n))
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(c.key.score))
	b = append(b, byte(len(c.idf)))
	for _, f := range c.idf {
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(f))
	}
	b = append(b, c.key.id...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeToken returns the cursor of q's page token, or nil for the first page.
func decodeToken(q product.Query) (*cursor, error) {
	if q.PageToken == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(q.PageToken)
	if err != nil || len(b) < 23 || b[0] != tokenVersion || b[1] != sortCodes[q.Sort] ||
		binary.BigEndian.Uint32(b[2:6]) != fingerprint(q) {
		return nil, ErrBadPageToken
	}
	c := &cursor{key: sortKey{
		n:     int64(binary.BigEndian.Uint64(b[6:14])),
		score: math.Float64frombits(binary.BigEndian.Uint64(b[14:22])),
	}}
	k := int(b[22])
	b = b[23:]
	if len(b) < 8*k {
		return nil, ErrBadPageToken
	}
	for i := 0; i < k; i++ {
		f := math.Float64frombits(binary.BigEndian.Uint64(b[8*i:]))
		if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return nil, ErrBadPageToken
		}
		c.idf = append(c.idf, f)
	}
	id := b[8*k:]
	if len(id) == 0 || len(id) > 64 {
		return nil, ErrBadPageToken
	}
	for _, ch := range id {
		if ch == 0 || ch == '/' {
			return nil, ErrBadPageToken
		}
	}
	c.key.id = id
	if math.IsNaN(c.key.score) || c.key.n < 0 {
		return nil, ErrBadPageToken
	}
	return c, nil
}
