package store

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/services/publications/internal/publication"

	"github.com/marketmesh/marketmesh/plugins/boltdb"
)

// ErrBadPageToken is returned for a page token this store did not issue
// (or issued for another sort order).
var ErrBadPageToken = errors.New("page_token is not valid")

// Search returns one page of publications matching q (validated by
// publication.CheckSearch) and the token of the next page ("" on the last).
//
// Paging is keyset paging: the token holds the sort key of the last item
// returned and the next page starts strictly after it, so publications
// created between pages neither repeat nor push others out of view.
//
// The query plan picks one index to drive the query, and checks the other
// filters against each publication it reads:
//
//   - with a text query, its hits (the text index returns every hit, ranked)
//     are the candidates, sorted by the order asked;
//   - newest: the product, seller+status, seller or status index range,
//     walked backwards (IDs are ULIDs: newest first) from the token; with
//     only a price range, that range of the price index, sorted; with no
//     filter, the publications bucket backwards;
//   - price: the product or seller(+status) range, sorted (a seller's
//     publications are few next to the price index); otherwise the price
//     index walked in order from the token, within the price range if any.
//
// Price sorts order by amount within a currency: Currency first, then the
// other currencies in code order (a price range keeps only Currency).
func (s *Store) Search(q publication.Search) ([]publication.Publication, string, error) {
	o := order{sort: q.Sort, cur: q.Currency}
	var tok *pageToken
	if q.PageToken != "" {
		t, err := decodeToken(q.PageToken, q.Sort)
		if err != nil {
			return nil, "", err
		}
		tok = &t
	}
	var page []item
	var next string
	err := s.db.View(func(tx *bolt.Tx) error {
		pg := pager{q: q, o: o, size: q.PageSize, tx: tx}
		if tok != nil {
			at := tok.pos()
			pg.after = &at
		}
		if err := pg.run(); err != nil {
			return err
		}
		if s.searchReads != nil {
			s.searchReads(pg.reads)
		}
		page = pg.items
		if len(page) > q.PageSize {
			page = page[:q.PageSize]
			next = encodeToken(o.sort, page[len(page)-1].pos())
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	out := make([]publication.Publication, len(page))
	for i, it := range page {
		out[i] = it.p
	}
	return out, next, nil
}

// item is a matching publication and, in text searches, how it matched.
type item struct {
	p       publication.Publication
	matched int
	score   float64
}

func (it item) pos() pos {
	return pos{id: it.p.ID, cur: it.p.Price.Currency, amount: it.p.Price.Amount, matched: it.matched, score: it.score}
}

// pos is a place in a sort order: the sort key of an item or a token.
type pos struct {
	id      string
	cur     string
	amount  int64
	matched int
	score   float64
}

// order is a total order of positions for one sort.
type order struct {
	sort string
	cur  string // the requested currency: first among price groups
}

func (o order) cmp(a, b pos) int {
	switch o.sort {
	case publicationsrpc.SortRelevance: // the text index's order: more terms, higher score, then ID
		if c := cmp.Compare(b.matched, a.matched); c != 0 {
			return c
		}
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	case publicationsrpc.SortPriceAsc, publicationsrpc.SortPriceDesc:
		if c := o.compareCurrency(a.cur, b.cur); c != 0 {
			return c
		}
		c := cmp.Compare(a.amount, b.amount)
		if c == 0 {
			c = strings.Compare(a.id, b.id)
		}
		if o.sort == publicationsrpc.SortPriceDesc {
			c = -c
		}
		return c
	default: // newest: IDs are ULIDs
		return strings.Compare(b.id, a.id)
	}
}

// compareCurrency orders price groups: the requested currency, then the others by code.
func (o order) compareCurrency(a, b string) int {
	if c := cmp.Compare(boolInt(a != o.cur), boolInt(b != o.cur)); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// pager collects size+1 matches after a position (the extra one says there
// is a next page).
type pager struct {
	q     publication.Search
	o     order
	size  int
	tx    *bolt.Tx
	after *pos
	items []item
	reads int // publications read: the cost of the plan
}

func (pg *pager) full() bool { return len(pg.items) > pg.size }

// match checks the filters that did not drive the query (checking the one
// that did again is harmless).
func (pg *pager) match(p publication.Publication) bool {
	q := pg.q
	switch {
	case q.ProductID != "" && p.ProductID != q.ProductID,
		q.SellerID != "" && p.SellerID != q.SellerID,
		q.Status != "" && p.Status != q.Status:
		return false
	}
	if q.HasPriceRange() {
		if p.Price.Currency != q.Currency ||
			q.MinPrice != nil && p.Price.Amount < *q.MinPrice ||
			q.MaxPrice != nil && p.Price.Amount > *q.MaxPrice {
			return false
		}
	}
	return true
}

func (pg *pager) run() error {
	q := pg.q
	if q.Text != "" {
		return pg.text()
	}
	if q.Sort == publicationsrpc.SortNewest {
		switch {
		case q.ProductID != "":
			return pg.walk(pg.idRange(byProduct, q.ProductID))
		case q.SellerID != "" && q.Status != "":
			return pg.walk(pg.idRange(bySellerStatus, q.SellerID, q.Status))
		case q.SellerID != "":
			return pg.walk(pg.idRange(bySeller, q.SellerID))
		case q.Status != "":
			return pg.walk(pg.idRange(byStatus, q.Status))
		case q.HasPriceRange():
			return pg.gather(pg.priceRangeIDs())
		default:
			sg := segment{bucket: publicationsBucket, desc: true}
			if pg.after != nil {
				sg.after = []byte(pg.after.id)
			}
			return pg.walk(sg)
		}
	}
	// price_asc, price_desc
	switch {
	case q.ProductID != "":
		return pg.gather(pg.rangeIDs(byProduct, q.ProductID))
	case q.SellerID != "" && q.Status != "":
		return pg.gather(pg.rangeIDs(bySellerStatus, q.SellerID, q.Status))
	case q.SellerID != "":
		return pg.gather(pg.rangeIDs(bySeller, q.SellerID))
	default:
		return pg.walk(pg.priceSegments()...)
	}
}

// text gathers the text index's hits and sorts them.
func (pg *pager) text() error {
	hits := titles.Search(pg.tx, pg.q.Text)
	if pg.after != nil && pg.o.sort == publicationsrpc.SortRelevance {
		// Scores move as the corpus grows; resume after the last item's
		// current rank when it still matches, so its neighbours stay put.
		for _, h := range hits {
			if h.DocID == pg.after.id {
				pg.after.matched, pg.after.score = h.Matched, h.Score
				break
			}
		}
	}
	items := make([]item, 0, len(hits))
	for _, h := range hits {
		p, ok, err := pg.load(h.DocID)
		if err != nil {
			return err
		}
		if ok {
			items = append(items, item{p: p, matched: h.Matched, score: h.Score})
		}
	}
	return pg.sorted(items)
}

// gather loads ids, keeps the matches and sorts them.
func (pg *pager) gather(ids []string, err error) error {
	if err != nil {
		return err
	}
	items := make([]item, 0, len(ids))
	for _, id := range ids {
		p, ok, err := pg.load(id)
		if err != nil {
			return err
		}
		if ok {
			items = append(items, item{p: p})
		}
	}
	return pg.sorted(items)
}

func (pg *pager) sorted(items []item) error {
	slices.SortFunc(items, func(a, b item) int { return pg.o.cmp(a.pos(), b.pos()) })
	for _, it := range items {
		if pg.full() {
			break
		}
		if pg.after == nil || pg.o.cmp(it.pos(), *pg.after) > 0 {
			pg.items = append(pg.items, it)
		}
	}
	return nil
}

// load reads a publication and reports whether it matches the filters.
func (pg *pager) load(id string) (publication.Publication, bool, error) {
	pg.reads++
	p, err := getPublication(pg.tx, id)
	if err != nil {
		return p, false, err
	}
	return p, pg.match(p), nil
}

// walk reads segments in order, keeping matches, until the page is full.
func (pg *pager) walk(segments ...segment) error {
	for _, sg := range segments {
		err := sg.each(pg.tx, func(id string) (bool, error) {
			p, ok, err := pg.load(id)
			if err != nil {
				return false, err
			}
			if ok {
				pg.items = append(pg.items, item{p: p})
			}
			return !pg.full(), nil
		})
		if err != nil || pg.full() {
			return err
		}
	}
	return nil
}

// idRange is the backwards walk of one value's range of an index
// ("<value>\x00<id>"), starting before the token's ID.
func (pg *pager) idRange(bucket []byte, value ...string) segment {
	p := boltdb.Prefix(value...)
	sg := segment{bucket: bucket, lo: p, hi: end(p), desc: true, idAt: len(p)}
	if pg.after != nil {
		sg.after = append(append([]byte{}, p...), pg.after.id...)
	}
	return sg
}

// rangeIDs lists the IDs in one value's range of an index.
func (pg *pager) rangeIDs(bucket []byte, value ...string) ([]string, error) {
	p := boltdb.Prefix(value...)
	var ids []string
	c := pg.tx.Bucket(bucket).Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		ids = append(ids, string(k[len(p):]))
	}
	return ids, nil
}

// priceRange is the by_price key range of the query's price range in its currency.
func (pg *pager) priceRange() (lo, hi []byte) {
	q := pg.q
	lo, hi = []byte(q.Currency), end([]byte(q.Currency))
	if q.MinPrice != nil && *q.MinPrice > 0 {
		lo = priceBound(q.Currency, min(*q.MinPrice, money.MaxAmount+1))
	}
	if q.MaxPrice != nil && *q.MaxPrice <= money.MaxAmount {
		hi = priceBound(q.Currency, *q.MaxPrice+1)
	}
	return lo, hi
}

func (pg *pager) priceRangeIDs() ([]string, error) {
	lo, hi := pg.priceRange()
	var ids []string
	c := pg.tx.Bucket(byPrice).Cursor()
	for k, _ := c.Seek(lo); k != nil && bytes.Compare(k, hi) < 0; k, _ = c.Next() {
		ids = append(ids, string(k[priceHead:]))
	}
	return ids, nil
}

// priceSegments are the price index walks of a price sort: one per
// currency, in group order, each starting after the token if it is in
// that currency; groups before the token's are skipped.
func (pg *pager) priceSegments() []segment {
	desc := pg.o.sort == publicationsrpc.SortPriceDesc
	var segs []segment
	if pg.q.HasPriceRange() {
		lo, hi := pg.priceRange()
		segs = append(segs, segment{bucket: byPrice, lo: lo, hi: hi, desc: desc, idAt: priceHead, cur: pg.q.Currency})
	} else {
		var curs []string
		c := pg.tx.Bucket(byPrice).Cursor()
		for k, _ := c.First(); len(k) >= priceHead; k, _ = c.Seek(end(k[:3])) {
			curs = append(curs, string(k[:3]))
		}
		slices.SortFunc(curs, pg.o.compareCurrency)
		for _, cur := range curs {
			segs = append(segs, segment{bucket: byPrice, lo: []byte(cur), hi: end([]byte(cur)), desc: desc, idAt: priceHead, cur: cur})
		}
	}
	if pg.after == nil {
		return segs
	}
	var out []segment
	for _, sg := range segs {
		switch c := pg.o.compareCurrency(sg.cur, pg.after.cur); {
		case c < 0:
			continue // every item of this currency came before the token
		case c == 0:
			sg.after = priceKey(pg.after.cur, pg.after.amount, pg.after.id)
		}
		out = append(out, sg)
	}
	return out
}

// segment is a cursor walk over the keys [lo, hi) of a bucket (nil:
// unbounded), forwards or backwards, starting strictly after the key after
// (in walking order) when it is set. The publication ID is key[idAt:].
type segment struct {
	bucket []byte
	lo, hi []byte
	desc   bool
	after  []byte
	idAt   int
	cur    string // price segments: their currency
}

func (sg segment) each(tx *bolt.Tx, fn func(id string) (more bool, err error)) error {
	c := tx.Bucket(sg.bucket).Cursor()
	var k []byte
	if !sg.desc {
		switch {
		case sg.after != nil && (sg.lo == nil || bytes.Compare(sg.after, sg.lo) >= 0):
			k, _ = c.Seek(sg.after)
			if bytes.Equal(k, sg.after) {
				k, _ = c.Next()
			}
		case sg.lo != nil:
			k, _ = c.Seek(sg.lo)
		default:
			k, _ = c.First()
		}
		for ; k != nil && (sg.hi == nil || bytes.Compare(k, sg.hi) < 0); k, _ = c.Next() {
			if more, err := fn(string(k[sg.idAt:])); err != nil || !more {
				return err
			}
		}
		return nil
	}
	start := sg.hi
	if sg.after != nil && (start == nil || bytes.Compare(sg.after, start) < 0) {
		start = sg.after
	}
	for k = seekBefore(c, start); k != nil && (sg.lo == nil || bytes.Compare(k, sg.lo) >= 0); k, _ = c.Prev() {
		if more, err := fn(string(k[sg.idAt:])); err != nil || !more {
			return err
		}
	}
	return nil
}

// seekBefore moves c to the last key before k (the last key of all if k is nil).
func seekBefore(c *bolt.Cursor, k []byte) []byte {
	if k == nil {
		last, _ := c.Last()
		return last
	}
	if at, _ := c.Seek(k); at == nil {
		last, _ := c.Last()
		return last
	}
	prev, _ := c.Prev()
	return prev
}

// pageToken is the sort key of the last item of a page, opaque to clients.
type pageToken struct {
	Sort    string  `json:"s"`
	ID      string  `json:"i"`
	Cur     string  `json:"c,omitempty"`
	Amount  int64   `json:"a,omitempty"`
	Matched int     `json:"m,omitempty"`
	Score   float64 `json:"r,omitempty"`
}

func (t pageToken) pos() pos {
	return pos{id: t.ID, cur: t.Cur, amount: t.Amount, matched: t.Matched, score: t.Score}
}

func encodeToken(sort string, p pos) string {
	t := pageToken{Sort: sort, ID: p.id}
	switch sort {
	case publicationsrpc.SortPriceAsc, publicationsrpc.SortPriceDesc:
		t.Cur, t.Amount = p.cur, p.amount
	case publicationsrpc.SortRelevance:
		t.Matched, t.Score = p.matched, p.score
	}
	raw, _ := json.Marshal(t) // cannot fail: plain fields
	return base64.RawURLEncoding.EncodeToString(raw)
}

func decodeToken(s, sort string) (pageToken, error) {
	var t pageToken
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(raw, &t) != nil || t.Sort != sort || t.ID == "" {
		return pageToken{}, ErrBadPageToken
	}
	if (sort == publicationsrpc.SortPriceAsc || sort == publicationsrpc.SortPriceDesc) &&
		(len(t.Cur) != 3 || t.Amount < 0) {
		return pageToken{}, ErrBadPageToken
	}
	return t, nil
}
