package store

import (
	"bytes"
	"encoding/binary"
	"math"

	bolt "go.etcd.io/bbolt"
)

// Ranked text search with stable pages.
//
// textsearch.Search ranks by (matched terms, Σ weight × idf, ID), where
// idf = ln(1 + N/df) depends on the whole corpus: adding products that
// contain a query term changes every score, and an item on page 3 could
// jump ahead of the page token and never be seen. So the first page
// records each term's idf in its page token, and later pages score with
// those same values; an existing product's score then never changes while
// paging (unless the product itself is edited), and keyset paging on
// (matched, score, id) neither repeats nor skips. Scores are computed
// exactly as textsearch does (the same formula, summed in term order), so
// the first page is ordered as textsearch.Search orders it — a test holds
// the two together.
//
// The cost is the postings of the query's terms: one cursor per term, merged
// in ID order (postings keys are "term\x00id"), plus one count pass per term
// on a first page.

// termIDF returns each term's idf in the current corpus, and the number
// of postings read (a bound on the number of hits).
func termIDF(tx *bolt.Tx, terms []string) ([]float64, int) {
	n := float64(max(getCount(tx.Bucket(metaBucket), productCountKey), 1))
	c := tx.Bucket(postingsBucket).Cursor()
	idf, total := make([]float64, len(terms)), 0
	for i, t := range terms {
		prefix := append([]byte(t), 0)
		df := 0
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			df++
		}
		idf[i] = math.Log(1 + n/float64(max(df, 1)))
		total += df
	}
	return idf, total
}

// textHits returns every product matching at least one of terms, in ID
// order, scored with idf (one value per term): see textMerge. sizeHint, if
// known, is an upper bound on the number of hits.
func textHits(tx *bolt.Tx, terms []string, idf []float64, sizeHint int) []sortKey {
	m := newTextMerge(tx, terms, idf)
	hits := make([]sortKey, 0, sizeHint)
	for hit, ok := m.next(); ok; hit, ok = m.next() {
		hits = append(hits, hit)
	}
	return hits
}

// textMerge merges the postings of the query's terms into the products
// matching at least one, in ID order, scored with idf (one value per term):
// n is the number of terms matched, score Σ weight × idf summed in term
// order, as textsearch does. IDs point into the transaction's memory.
type textMerge struct {
	heads []termHead
	idf   []float64
}

// termHead is one term's postings cursor and its current posting.
type termHead struct {
	c      *bolt.Cursor
	prefix []byte
	doc, w []byte // doc nil when exhausted
}

func (h *termHead) advance(k, v []byte) {
	if k != nil && bytes.HasPrefix(k, h.prefix) {
		h.doc, h.w = k[len(h.prefix):], v
	} else {
		h.doc = nil
	}
}

func newTextMerge(tx *bolt.Tx, terms []string, idf []float64) *textMerge {
	b := tx.Bucket(postingsBucket)
	m := &textMerge{heads: make([]termHead, len(terms)), idf: idf}
	for i, t := range terms {
		h := &m.heads[i]
		h.c, h.prefix = b.Cursor(), append([]byte(t), 0)
		h.advance(h.c.Seek(h.prefix))
	}
	return m
}

// next returns the next hit, or false after the last.
func (m *textMerge) next() (sortKey, bool) {
	var low []byte
	for i := range m.heads {
		if d := m.heads[i].doc; d != nil && (low == nil || bytes.Compare(d, low) < 0) {
			low = d
		}
	}
	if low == nil {
		return sortKey{}, false
	}
	hit := sortKey{id: low}
	for i := range m.heads { // in term order, as textsearch sums
		h := &m.heads[i]
		if h.doc == nil || !bytes.Equal(h.doc, hit.id) {
			continue
		}
		hit.n++
		if len(h.w) == 4 {
			hit.score += float64(binary.BigEndian.Uint32(h.w)) * m.idf[i]
		}
		h.advance(h.c.Next())
	}
	return hit, true
}
