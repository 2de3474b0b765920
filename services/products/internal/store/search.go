package store

import (
	"bytes"
	"encoding/binary"
	"math"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/textsearch"
	"github.com/marketmesh/marketmesh/services/products/internal/product"

	"github.com/marketmesh/marketmesh/plugins/boltdb"
)

// Search returns one page of q (already normalized) and the next page's
// token, "" on the last page.
//
// Every order is a total order ending in the product ID, and a page token
// holds the last item's position in it, so the next page starts strictly
// after that item whatever was inserted meanwhile: no repeats, and nothing
// that existed when paging began is skipped. (An item whose own sort key
// changes while paging — a new price, new views — may move past the token.)
//
// With text, the candidates are the postings of the query's terms (text.go).
// Without, the planner (browse) picks whichever ordered index range or
// filter set reads the fewest entries; no query reads every product unless
// every product can be in its results.
func (s *Store) Search(q product.Query) ([]product.Product, string, error) {
	cur, err := decodeToken(q)
	if err != nil {
		return nil, "", err
	}
	var (
		items []product.Product
		next  string
	)
	err = s.view(func(tx *bolt.Tx, pending func(string) uint64) error {
		sr := newSearcher(tx, q, cur)
		if err := sr.run(); err != nil {
			return err
		}
		keys := sr.keys
		if len(keys) > q.PageSize {
			keys = keys[:q.PageSize]
			next = encodeToken(q, cursor{key: keys[len(keys)-1], idf: sr.idf})
		}
		items = make([]product.Product, 0, len(keys))
		l := newLoader(tx)
		for _, k := range keys {
			rec, f, err := l.load(k.id)
			if err != nil {
				return err
			}
			f.views += pending(string(k.id))
			items = append(items, rec.product(f))
		}
		return nil
	})
	return items, next, err
}

// filter is what a candidate must satisfy, checked on its facets.
type filter struct {
	category  string // "" for any
	brand     []byte // folded; nil for any
	needPrice bool   // a price sort or bound: a price in currency is required
	currency  string
	min, max  int64
}

func (f filter) match(v facetView) bool {
	if f.category != "" && !v.inCategory(f.category) {
		return false
	}
	if f.brand != nil && !bytes.Equal(v.brand, f.brand) {
		return false
	}
	if f.needPrice {
		p, ok := v.price(f.currency)
		if !ok || p < f.min || p > f.max {
			return false
		}
	}
	return true
}

func (f filter) empty() bool { return f.category == "" && f.brand == nil && !f.needPrice }

// searcher answers one query inside one read transaction. Keys hold IDs
// pointing into the transaction's memory: nothing is copied until the page
// is loaded.
type searcher struct {
	tx     *bolt.Tx
	q      product.Query
	order  order
	after  *sortKey // the page token's position; nil on the first page
	idf    []float64
	limit  int // a page and one more, to know whether there is a next page
	filter filter
	facets *bolt.Bucket
	keys   []sortKey // the result, in order
}

// order is q.Sort, as a number for the comparisons of a search.
type order int

const (
	byNewest order = iota
	byPriceAsc
	byPriceDesc
	byPopular
	byRelevance
)

var orders = map[string]order{
	product.SortNewest: byNewest, product.SortPriceAsc: byPriceAsc, product.SortPriceDesc: byPriceDesc,
	product.SortPopular: byPopular, product.SortRelevance: byRelevance,
}

func newSearcher(tx *bolt.Tx, q product.Query, cur *cursor) *searcher {
	sr := &searcher{tx: tx, q: q, order: orders[q.Sort], limit: q.PageSize + 1, facets: tx.Bucket(facetsBucket)}
	if cur != nil {
		sr.after, sr.idf = &cur.key, cur.idf
	}
	f := filter{category: q.Category, currency: q.Currency, max: math.MaxInt64}
	if b := FoldBrand(q.Brand); b != "" {
		f.brand = []byte(b)
	}
	if q.MinPrice != nil {
		f.min = *q.MinPrice
	}
	if q.MaxPrice != nil {
		f.max = *q.MaxPrice
	}
	f.needPrice = q.HasPriceFilter() || q.Sort == product.SortPriceAsc || q.Sort == product.SortPriceDesc
	sr.filter = f
	return sr
}

// before reports whether a comes before b in the query's order. Relevance
// is textsearch.Less's order: more matched terms, then higher score, then ID.
func (sr *searcher) before(a, b sortKey) bool {
	switch sr.order {
	case byPriceAsc:
		return a.n < b.n || a.n == b.n && bytes.Compare(a.id, b.id) < 0
	case byPriceDesc, byPopular:
		return a.n > b.n || a.n == b.n && bytes.Compare(a.id, b.id) > 0
	case byRelevance:
		if a.n != b.n {
			return a.n > b.n
		}
		if a.score != b.score {
			return a.score > b.score
		}
		return bytes.Compare(a.id, b.id) < 0
	default: // newest
		return bytes.Compare(a.id, b.id) > 0
	}
}

func (sr *searcher) afterCursor(k sortKey) bool { return sr.after == nil || sr.before(*sr.after, k) }

// facetSource finds a product's facets record.
type facetSource interface{ get(id []byte) []byte }

func (sr *searcher) get(id []byte) []byte { return sr.facets.Get(id) }

// facetCursor returns a facetSource for IDs asked for in ascending order:
// it steps forward to a near ID instead of descending the tree again.
func (sr *searcher) facetCursor() *ascendingFacets {
	return &ascendingFacets{c: sr.facets.Cursor()}
}

type ascendingFacets struct {
	c       *bolt.Cursor
	k, v    []byte
	started bool
}

// maxStep is how many keys ascendingFacets steps over before it seeks.
const maxStep = 16

func (a *ascendingFacets) get(id []byte) []byte {
	if a.started && a.k != nil && bytes.Compare(a.k, id) < 0 {
		for i := 0; i < maxStep && a.k != nil && bytes.Compare(a.k, id) < 0; i++ {
			a.k, a.v = a.c.Next()
		}
	}
	if !a.started || a.k != nil && bytes.Compare(a.k, id) < 0 {
		a.k, a.v = a.c.Seek(id)
		a.started = true
	}
	if a.k != nil && bytes.Equal(a.k, id) {
		return a.v
	}
	return nil
}

// lookup returns id's facets and whether they pass f.
func (sr *searcher) lookup(src facetSource, id []byte, f filter) (facetView, bool, error) {
	raw := src.get(id)
	if raw == nil {
		return facetView{}, false, nil
	}
	v, err := viewFacets(raw)
	if err != nil {
		return v, false, err
	}
	return v, f.match(v), nil
}

// keyOf is a candidate's position in the order, from its facets.
func (sr *searcher) keyOf(id []byte, v facetView) sortKey {
	k := sortKey{id: id}
	switch sr.order {
	case byPriceAsc, byPriceDesc:
		k.n, _ = v.price(sr.q.Currency)
	case byPopular:
		k.n = int64(v.views)
	}
	return k
}

// take records a candidate in order; it reports whether the page is full.
func (sr *searcher) take(k sortKey) bool {
	sr.keys = append(sr.keys, k)
	return len(sr.keys) == sr.limit
}

func (sr *searcher) run() error {
	if sr.q.Text != "" {
		return sr.text()
	}
	return sr.browse()
}

// text: the candidates are the products matching a query term.
func (sr *searcher) text() error {
	terms := textsearch.Terms(sr.q.Text)
	if len(terms) == 0 || len(terms) > 255 {
		return nil // nothing indexable in the query: nothing matches
	}
	// Counting the postings first is cheaper than growing the hits slice
	// without knowing its size.
	idf, postings := termIDF(sr.tx, terms)
	switch {
	case sr.order != byRelevance:
		sr.idf = nil // scores play no part in other orders
	case sr.after == nil:
		sr.idf = idf
	case len(sr.idf) != len(terms):
		return ErrBadPageToken
	}
	weights := sr.idf
	if weights == nil {
		weights = make([]float64, len(terms)) // matched terms only
	}
	if sr.order == byRelevance && sr.filter.empty() {
		// Nothing to check: keep the best hits as they stream by, rather
		// than collect every hit and order them.
		sr.keys = sr.best(newTextMerge(sr.tx, terms, weights))
		return nil
	}
	hits := textHits(sr.tx, terms, weights, postings)
	hits, rest := sr.narrow(hits)

	switch sr.order {
	case byNewest: // hits come in ID order: read them backwards
		for i := len(hits) - 1; i >= 0; i-- {
			if k := hits[i]; sr.afterCursor(k) {
				if ok, err := sr.check(k.id, rest); err != nil || ok && sr.take(k) {
					return err
				}
			}
		}
	case byRelevance: // the key is known: order, then check until the page is full
		cands := hits[:0]
		for _, k := range hits {
			if sr.afterCursor(k) {
				cands = append(cands, k)
			}
		}
		h := orderedHeap{s: cands, less: sr.before}
		h.init()
		for len(h.s) > 0 {
			k := h.pop()
			if ok, err := sr.check(k.id, rest); err != nil || ok && sr.take(k) {
				return err
			}
		}
	default: // price, popular: the key is in the facets
		fc := sr.facetCursor()
		for _, k := range hits {
			if err := sr.consider(fc, k.id, rest); err != nil {
				return err
			}
		}
		sr.finishSet()
	}
	return nil
}

// narrow intersects ID-ordered hits with the ID-ordered index range of the
// category or brand filter, when that range is not much longer than the
// hits: stepping through index keys is far cheaper than a facets lookup per
// hit. It returns the hits left and the filter still to check.
func (sr *searcher) narrow(hits []sortKey) ([]sortKey, filter) {
	rest := sr.filter
	size := func(b []byte, key []byte) int { return int(getCount(sr.tx.Bucket(b), key)) }
	var ids *idMerge
	switch {
	case rest.category != "" && size(categoryCounts, []byte(rest.category)) <= 8*len(hits):
		ids = sr.categoryIDs(nil, false)
		rest.category = ""
	case rest.brand != nil && size(brandCounts, rest.brand) <= 8*len(hits):
		ids = newIDMerge(false, idRange(sr.tx.Bucket(brandIndex), rest.brand, nil, false))
		rest.brand = nil
	default:
		return hits, rest
	}
	out := hits[:0]
	id := ids.next()
	for _, h := range hits {
		for id != nil && bytes.Compare(id, h.id) < 0 {
			id = ids.next()
		}
		if id == nil {
			break
		}
		if bytes.Equal(id, h.id) {
			out = append(out, h)
		}
	}
	return out, rest
}

// check reports whether id passes f (true without a lookup when f is empty).
func (sr *searcher) check(id []byte, f filter) (bool, error) {
	if f.empty() {
		return true, nil
	}
	_, ok, err := sr.lookup(sr, id, f)
	return ok, err
}

// consider adds id to the candidate set if it passes f and lies after the cursor.
func (sr *searcher) consider(src facetSource, id []byte, f filter) error {
	v, ok, err := sr.lookup(src, id, f)
	if err != nil || !ok {
		return err
	}
	if k := sr.keyOf(id, v); sr.afterCursor(k) {
		sr.keys = append(sr.keys, k)
	}
	return nil
}

// best returns the first limit hits after the cursor, in order: a heap of
// the best seen so far, worst on top, which most hits do not get into.
func (sr *searcher) best(m *textMerge) []sortKey {
	h := orderedHeap{s: make([]sortKey, 0, sr.limit), less: func(a, b sortKey) bool { return sr.before(b, a) }}
	for k, ok := m.next(); ok; k, ok = m.next() {
		switch {
		case !sr.afterCursor(k):
		case len(h.s) < sr.limit:
			if h.s = append(h.s, k); len(h.s) == sr.limit {
				h.init()
			}
		case sr.before(k, h.s[0]):
			h.s[0] = k
			h.down(0)
		}
	}
	slices.SortFunc(h.s, func(a, b sortKey) int {
		switch {
		case sr.before(a, b):
			return -1
		case sr.before(b, a):
			return 1
		}
		return 0
	})
	return h.s
}

// finishSet keeps the first limit candidates of the set, in order.
func (sr *searcher) finishSet() {
	h := orderedHeap{s: sr.keys, less: sr.before}
	h.init()
	out := make([]sortKey, 0, min(sr.limit, len(h.s)))
	for len(h.s) > 0 && len(out) < sr.limit {
		out = append(out, h.pop())
	}
	sr.keys = out
}

// orderedHeap yields keys in order: heapify is linear, and each pop
// logarithmic, so the first page of n candidates costs O(n + page·log n)
// rather than a full sort.
type orderedHeap struct {
	s    []sortKey
	less func(a, b sortKey) bool
}

func (h *orderedHeap) init() {
	for i := len(h.s)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *orderedHeap) pop() sortKey {
	top, n := h.s[0], len(h.s)-1
	h.s[0] = h.s[n]
	h.s = h.s[:n]
	h.down(0)
	return top
}

func (h *orderedHeap) down(i int) {
	for n := len(h.s); ; {
		j := 2*i + 1
		if j >= n {
			return
		}
		if r := j + 1; r < n && h.less(h.s[r], h.s[j]) {
			j = r
		}
		if !h.less(h.s[j], h.s[i]) {
			return
		}
		h.s[i], h.s[j] = h.s[j], h.s[i]
		i = j
	}
}

// Relative costs of reading one candidate, for the planner.
const (
	costEntry  = 0.1 // the next key of an index range
	costInline = 0.2 // the next facets record of the facets bucket
	costLookup = 1.0 // a facets Get (a B+tree descent) and its check
)

// browse answers a query without text. Two ways to read:
//
//   - an ordered stream: an index range already in the result order
//     (newest: the facets bucket, or a category's or brand's range, all
//     ID-ordered; popular: the views index; price: the currency's price range),
//     checking the other filters as it goes and stopping when the page is
//     full. It reads about page / selectivity entries;
//   - a filter set: every product of a category, brand or price range,
//     checked, ordered in memory. It reads the whole set.
//
// Category and brand sizes are known exactly (their counts), so the choice
// is an estimate; a price range's size is not, so it is collected only up
// to a budget, past which streaming is the better plan.
func (sr *searcher) browse() error {
	tx, q, f := sr.tx, sr.q, sr.filter
	n := float64(getCount(tx.Bucket(metaBucket), productCountKey))
	if n == 0 {
		return nil
	}
	sel := 1.0
	var catN, brandN float64
	if f.category != "" {
		if catN = float64(getCount(tx.Bucket(categoryCounts), []byte(f.category))); catN == 0 {
			return nil
		}
		sel *= catN / n
	}
	if f.brand != nil {
		if brandN = float64(getCount(tx.Bucket(brandCounts), f.brand)); brandN == 0 {
			return nil
		}
		sel *= brandN / n
	}
	priceSort := q.Sort == product.SortPriceAsc || q.Sort == product.SortPriceDesc
	priceSet := q.HasPriceFilter() && !priceSort // a bound the sort's index does not apply
	selOther := sel
	if priceSet {
		sel *= 0.5 // unknown
	}
	results := max(n*sel, 1)
	want := float64(sr.limit)
	scan := func(size float64) float64 { return min(size, want*size/results) }
	perItem := func(f filter) float64 {
		if f.empty() {
			return costEntry
		}
		return costEntry + costLookup
	}

	type plan struct {
		cost float64
		run  func() error
	}
	var best plan
	consider := func(p plan) {
		if best.run == nil || p.cost < best.cost {
			best = p
		}
	}
	noCat, noBrand, noPrice := f, f, f // what a category, brand or price stream leaves to check
	noCat.category, noBrand.brand, noPrice.needPrice = "", nil, false
	switch q.Sort {
	case product.SortNewest:
		consider(plan{scan(n) * costInline, sr.streamNewest})
		if f.category != "" {
			consider(plan{scan(catN) * perItem(noCat), func() error { return sr.streamCategoryNewest(noCat) }})
		}
		if f.brand != nil {
			consider(plan{scan(brandN) * perItem(noBrand), func() error { return sr.streamBrandNewest(noBrand) }})
		}
	case product.SortPopular:
		consider(plan{scan(n) * perItem(f), func() error { return sr.streamPopular(f) }})
	default: // price_asc, price_desc: the stream applies the price bounds
		consider(plan{scan(n) * perItem(noPrice), func() error { return sr.streamPrice(noPrice) }})
	}
	if q.Sort != product.SortNewest { // ID-ordered streams serve newest better than sets
		setCost := func(size float64) float64 { return size * (costEntry + costLookup) }
		if f.category != "" {
			consider(plan{setCost(catN), func() error { return sr.setOf(sr.categoryIDs(nil, false), noCat) }})
		}
		if f.brand != nil {
			consider(plan{setCost(brandN), func() error {
				return sr.setOf(newIDMerge(false, idRange(tx.Bucket(brandIndex), f.brand, nil, false)), noBrand)
			}})
		}
	}
	if priceSet {
		// Collect the price range unless it is large: then the bound is not
		// selective, and streaming with it as a check reads little. The budget
		// balances the two: past sqrt(page × N / selectivity) entries, the
		// stream is expected to be cheaper.
		budget := int(max(best.cost/(costEntry+costLookup), math.Sqrt(want*n/selOther)))
		if ok, err := sr.setPrice(budget, noPrice); err != nil || ok {
			return err
		}
	}
	return best.run()
}

// streamNewest reads the facets bucket backwards: every product, newest first.
func (sr *searcher) streamNewest() error {
	it := &rangeIter{c: sr.facets.Cursor(), desc: true}
	if sr.after != nil {
		it.after = sr.after.id
	}
	for k, v := it.next(); k != nil; k, v = it.next() {
		fv, err := viewFacets(v)
		if err != nil {
			return err
		}
		if sr.filter.match(fv) && sr.take(sortKey{id: k}) {
			return nil
		}
	}
	return nil
}

// streamIDs takes IDs from an ID-ordered stream, checking rest on each.
func (sr *searcher) streamIDs(ids *idMerge, rest filter) error {
	for id := ids.next(); id != nil; id = ids.next() {
		if ok, err := sr.check(id, rest); err != nil || ok && sr.take(sortKey{id: id}) {
			return err
		}
	}
	return nil
}

func (sr *searcher) streamCategoryNewest(rest filter) error {
	return sr.streamIDs(sr.categoryIDs(sr.after, true), rest)
}

func (sr *searcher) streamBrandNewest(rest filter) error {
	return sr.streamIDs(newIDMerge(true, idRange(sr.tx.Bucket(brandIndex), sr.filter.brand, sr.after, true)), rest)
}

// streamKeys takes keys from a stream already in the result order, where
// each index key is decoded into its sort key; rest is checked on each.
func (sr *searcher) streamKeys(it *rangeIter, decode func(k []byte) sortKey, rest filter) error {
	for k, _ := it.next(); k != nil; k, _ = it.next() {
		key := decode(k)
		if ok, err := sr.check(key.id, rest); err != nil || ok && sr.take(key) {
			return err
		}
	}
	return nil
}

// streamPopular reads the views index backwards: most viewed, then newest, first.
func (sr *searcher) streamPopular(rest filter) error {
	it := &rangeIter{c: sr.tx.Bucket(viewsIndex).Cursor(), desc: true}
	if sr.after != nil {
		it.after = viewsKey(uint64(sr.after.n), string(sr.after.id))
	}
	return sr.streamKeys(it, func(k []byte) sortKey {
		return sortKey{id: k[viewsKeyLen:], n: int64(binary.BigEndian.Uint64(k))}
	}, rest)
}

// streamPrice reads the currency's price range, cheapest (or dearest) first.
func (sr *searcher) streamPrice(rest filter) error {
	it := sr.priceRange(sr.order == byPriceDesc)
	if sr.after != nil {
		it.after = priceKey(sr.q.Currency, sr.after.n, string(sr.after.id))
	}
	return sr.streamKeys(it, decodePriceKey, rest)
}

func decodePriceKey(k []byte) sortKey {
	return sortKey{id: k[priceKeyLen:], n: int64(binary.BigEndian.Uint64(k[4:12]))}
}

// priceRange is the range of the price index within the query's bounds.
func (sr *searcher) priceRange(desc bool) *rangeIter {
	cur := []byte(sr.q.Currency)
	it := &rangeIter{c: sr.tx.Bucket(priceIndex).Cursor(), desc: desc,
		lo: boltdb.KeyBytes(cur, u64(uint64(sr.filter.min))), hi: boltdb.KeyBytes(cur, u64(uint64(sr.filter.max)))}
	it.hi = append(it.hi, 1) // past every ID at max: "\x00<id>" < "\x01"
	return it
}

// setOf checks and orders every product of an ascending ID stream.
func (sr *searcher) setOf(ids *idMerge, rest filter) error {
	fc := sr.facetCursor()
	for id := ids.next(); id != nil; id = ids.next() {
		if err := sr.consider(fc, id, rest); err != nil {
			return err
		}
	}
	sr.finishSet()
	return nil
}

// setPrice checks and orders every product in the price range, unless the
// range holds more than budget entries: then it reports false and leaves
// the work to another plan.
func (sr *searcher) setPrice(budget int, rest filter) (bool, error) {
	var ids [][]byte
	it := sr.priceRange(false)
	for k, _ := it.next(); k != nil; k, _ = it.next() {
		if len(ids) == budget {
			return false, nil
		}
		ids = append(ids, k[priceKeyLen:])
	}
	for _, id := range ids { // in price order: look each up
		if err := sr.consider(sr, id, rest); err != nil {
			return false, err
		}
	}
	sr.finishSet()
	return true, nil
}

// categoryIDs merges the ID ranges of the query's category and each of its
// sub-categories (listed by the counts bucket) into one ID-ordered stream.
func (sr *searcher) categoryIDs(after *sortKey, desc bool) *idMerge {
	cat := sr.filter.category
	paths := [][]byte{[]byte(cat)}
	c := sr.tx.Bucket(categoryCounts).Cursor()
	sub := []byte(cat + "/")
	for k, _ := c.Seek(sub); k != nil && bytes.HasPrefix(k, sub); k, _ = c.Next() {
		paths = append(paths, k)
	}
	ix := sr.tx.Bucket(categoryIndex)
	its := make([]*rangeIter, len(paths))
	for i, p := range paths {
		its[i] = idRange(ix, p, after, desc)
	}
	return newIDMerge(desc, its...)
}

// idRange is the range of "<value>\x00<id>" keys of one value, starting
// after the cursor's ID in the direction of travel.
func idRange(b *bolt.Bucket, value []byte, after *sortKey, desc bool) *rangeIter {
	it := &rangeIter{c: b.Cursor(), lo: boltdb.KeyBytes(value, nil), desc: desc, idAt: len(value) + 1}
	it.hi = append(boltdb.KeyBytes(value), 1)
	if after != nil {
		it.after = boltdb.KeyBytes(value, after.id)
	}
	return it
}

// idMerge merges ID ranges (each ID-ordered) into one ID-ordered stream.
type idMerge struct {
	desc  bool
	its   []*rangeIter
	heads [][]byte // each range's current ID; nil when done
}

func newIDMerge(desc bool, its ...*rangeIter) *idMerge {
	m := &idMerge{desc: desc, its: its, heads: make([][]byte, len(its))}
	for i, it := range its {
		m.heads[i] = it.nextID()
	}
	return m
}

// next returns the next ID, or nil at the end.
func (m *idMerge) next() []byte {
	top := -1
	for i, h := range m.heads {
		if h == nil {
			continue
		}
		if top < 0 {
			top = i
		} else if c := bytes.Compare(h, m.heads[top]); m.desc && c > 0 || !m.desc && c < 0 {
			top = i
		}
	}
	if top < 0 {
		return nil
	}
	id := m.heads[top]
	m.heads[top] = m.its[top].nextID()
	return id
}

// rangeIter walks the keys in [lo, hi) (hi nil: to the end) forwards or
// backwards, starting strictly after the key after (nil: at the start).
type rangeIter struct {
	c       *bolt.Cursor
	lo, hi  []byte
	desc    bool
	after   []byte
	idAt    int // where the ID starts in a key, for nextID
	started bool
	done    bool
}

func (r *rangeIter) next() (k, v []byte) {
	if r.done {
		return nil, nil
	}
	switch {
	case !r.started:
		r.started = true
		k, v = r.first()
	case r.desc:
		k, v = r.c.Prev()
	default:
		k, v = r.c.Next()
	}
	if k == nil || bytes.Compare(k, r.lo) < 0 || r.hi != nil && bytes.Compare(k, r.hi) >= 0 {
		r.done = true
		return nil, nil
	}
	return k, v
}

func (r *rangeIter) nextID() []byte {
	if k, _ := r.next(); k != nil {
		return k[r.idAt:]
	}
	return nil
}

func (r *rangeIter) first() ([]byte, []byte) {
	if !r.desc {
		if r.after != nil && bytes.Compare(r.after, r.lo) >= 0 {
			k, v := r.c.Seek(r.after)
			if k != nil && bytes.Equal(k, r.after) {
				return r.c.Next()
			}
			return k, v
		}
		return r.c.Seek(r.lo)
	}
	bound := r.hi // exclusive
	if r.after != nil && (bound == nil || bytes.Compare(r.after, bound) < 0) {
		bound = r.after
	}
	if bound == nil {
		return r.c.Last()
	}
	if k, _ := r.c.Seek(bound); k == nil {
		return r.c.Last()
	}
	return r.c.Prev()
}
