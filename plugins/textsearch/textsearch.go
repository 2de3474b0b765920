// Package textsearch is a small full-text index kept in bbolt next to the
// data it indexes, so that an index update commits in the same transaction
// as the document. Text is folded (Unicode compatibility decomposition,
// accents removed, lower case) and split into terms; a query matches
// documents containing any of its terms and ranks first those matching more
// distinct terms, then by field-weighted idf.
package textsearch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strings"
	"unicode"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/text/unicode/norm"
)

// Term length limits: shorter terms are noise, longer ones are not words.
const (
	minTermRunes = 2
	maxTermRunes = 40
)

var stopwords = map[string]bool{
	"the": true, "and": true, "for": true, "with": true, "of": true, "an": true,
	"de": true, "la": true, "el": true, "los": true, "las": true, "y": true, "en": true,
}

// Fold returns s in the form terms are compared in: NFKD, combining marks
// removed, lower case ("Crème Brûlée" → "creme brulee").
func Fold(s string) string {
	var b strings.Builder
	for _, r := range norm.NFKD.String(s) {
		if unicode.Is(unicode.Mn, r) {
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// Terms splits text into distinct index terms, in first-seen order.
func Terms(text string) []string {
	seen := map[string]bool{}
	var out []string
	for _, w := range strings.FieldsFunc(Fold(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	}) {
		n := len([]rune(w))
		if n < minTermRunes || n > maxTermRunes || stopwords[w] || seen[w] {
			continue
		}
		seen[w] = true
		out = append(out, w)
	}
	return out
}

// Field is one piece of a document's text and how much a match in it counts.
type Field struct {
	Text   string
	Weight uint32 // e.g. name 3, brand 2, description 1
}

// Index is an inverted index in two buckets: <name>.postings holds
// "term\x00docID" → weight, <name>.docs holds docID → its terms (for updates)
// and the document count under countKey.
type Index struct {
	postings, docs []byte
}

// New names an index.
func New(name string) Index {
	return Index{postings: []byte(name + ".postings"), docs: []byte(name + ".docs")}
}

// CreateBuckets creates the index's buckets; call it in the store's schema transaction.
func (ix Index) CreateBuckets(tx *bolt.Tx) error {
	for _, b := range [][]byte{ix.postings, ix.docs} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return fmt.Errorf("textsearch: %w", err)
		}
	}
	return nil
}

// countKey holds the number of indexed documents; IDs never contain NUL.
var countKey = []byte("\x00count")

// Put indexes (or re-indexes) docID with fields, inside tx.
func (ix Index) Put(tx *bolt.Tx, docID string, fields ...Field) error {
	if err := ix.Delete(tx, docID); err != nil {
		return err
	}
	weights := map[string]uint32{}
	var order []string
	for _, f := range fields {
		for _, t := range Terms(f.Text) {
			if _, ok := weights[t]; !ok {
				order = append(order, t)
			}
			weights[t] += f.Weight
		}
	}
	p, d := tx.Bucket(ix.postings), tx.Bucket(ix.docs)
	var w [4]byte
	for _, t := range order {
		binary.BigEndian.PutUint32(w[:], weights[t])
		if err := p.Put(postingKey(t, docID), w[:]); err != nil {
			return err
		}
	}
	if err := d.Put([]byte(docID), []byte(strings.Join(order, "\x00"))); err != nil {
		return err
	}
	return ix.addCount(d, 1)
}

// Delete removes docID from the index; a missing document is not an error.
func (ix Index) Delete(tx *bolt.Tx, docID string) error {
	p, d := tx.Bucket(ix.postings), tx.Bucket(ix.docs)
	terms := d.Get([]byte(docID))
	if terms == nil {
		return nil
	}
	if len(terms) > 0 {
		for _, t := range strings.Split(string(terms), "\x00") {
			if err := p.Delete(postingKey(t, docID)); err != nil {
				return err
			}
		}
	}
	if err := d.Delete([]byte(docID)); err != nil {
		return err
	}
	return ix.addCount(d, -1)
}

func (ix Index) addCount(d *bolt.Bucket, delta int64) error {
	var n int64
	if v := d.Get(countKey); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(max(n+delta, 0)))
	return d.Put(countKey, b[:])
}

// Hit is one matching document.
type Hit struct {
	DocID   string
	Matched int     // distinct query terms found in the document
	Score   float64 // sum over matched terms of weight × idf
}

// Search returns every document matching at least one term of query,
// best first (Matched, then Score, then DocID for a stable order). Its cost
// is proportional to the postings of the query's terms, not to the corpus.
func (ix Index) Search(tx *bolt.Tx, query string) []Hit {
	terms := Terms(query)
	if len(terms) == 0 {
		return nil
	}
	p, d := tx.Bucket(ix.postings), tx.Bucket(ix.docs)
	var n float64 = 1
	if v := d.Get(countKey); len(v) == 8 {
		n = float64(binary.BigEndian.Uint64(v))
	}
	hits := map[string]*Hit{}
	c := p.Cursor()
	for _, t := range terms {
		prefix := append([]byte(t), 0)
		var postings [][2][]byte
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			postings = append(postings, [2][]byte{k[len(prefix):], v})
		}
		idf := math.Log(1 + n/float64(max(len(postings), 1)))
		for _, pv := range postings {
			id := string(pv[0])
			h := hits[id]
			if h == nil {
				h = &Hit{DocID: id}
				hits[id] = h
			}
			h.Matched++
			h.Score += float64(binary.BigEndian.Uint32(pv[1])) * idf
		}
	}
	out := make([]Hit, 0, len(hits))
	for _, h := range hits {
		out = append(out, *h)
	}
	sort.Slice(out, func(i, j int) bool { return Less(out[i], out[j]) })
	return out
}

// Less orders hits best first; exported so callers can page by (Matched, Score, DocID).
func Less(a, b Hit) bool {
	if a.Matched != b.Matched {
		return a.Matched > b.Matched
	}
	if a.Score != b.Score {
		return a.Score > b.Score
	}
	return a.DocID < b.DocID
}

func postingKey(term, docID string) []byte {
	k := make([]byte, 0, len(term)+1+len(docID))
	k = append(k, term...)
	k = append(k, 0)
	return append(k, docID...)
}
