package store

import (
	"bytes"
	"encoding/json"
	"time"
	"unicode/utf8"
)

// decodeRecord decodes a stored productRecord, copying out of raw (which may
// be bbolt's memory). It gives exactly what json.Unmarshal gives, faster:
// every search page and every Get decodes its products, and
// json.Unmarshal's validation pass and reflection were most of their cost.
//
// Records are written by json.Marshal, whose output for this type has one
// shape: an object with no white space, each key once and spelled as its
// tag, string values, an object of strings for attributes. readRecord reads
// that shape and nothing else: whatever it does not accept in full (another
// spelling, a null, white space, a duplicate key, a record from a future
// version with a field it does not know) goes to json.Unmarshal instead.
// Within the shape it decodes as json.Unmarshal does: strings with escapes
// or invalid UTF-8 are unquoted by json.Unmarshal, and times are parsed by
// time.Time's UnmarshalJSON, the method json.Unmarshal calls.
// TestDecodeRecordAgreesWithJSON and FuzzDecodeRecord hold the two together.
func decodeRecord(raw []byte, rec *productRecord) error {
	if readRecord(raw, rec) {
		return nil
	}
	*rec = productRecord{}
	return json.Unmarshal(raw, rec)
}

// recordFields are productRecord's JSON keys, as json.Marshal writes them.
var recordFields = [...]string{"id", "name", "description", "category", "brand", "attributes", "creator_id", "created_at", "updated_at"}

// readRecord decodes raw if it has the shape json.Marshal writes, and
// reports whether it did; rec is then complete, else partly written.
//
// raw is copied once, and the strings without escapes are parts of that
// copy: one allocation per record rather than one per string. (Holding on
// to any of them holds the whole record, as holding the product does.)
func readRecord(raw []byte, rec *productRecord) bool {
	r := recordReader{b: raw, s: string(raw)}
	if !r.byte('{') {
		return false
	}
	var seen uint16
	for first := true; ; first = false {
		if r.byte('}') {
			return r.i == len(r.b) // json.Unmarshal allows trailing white space: not written, left to it
		}
		if !first && !r.byte(',') {
			return false
		}
		key, ok := r.plainString()
		if !ok || !r.byte(':') {
			return false
		}
		field := -1
		for i, name := range recordFields {
			if string(key) == name {
				field = i
				break
			}
		}
		if field < 0 || seen&(1<<field) != 0 {
			return false // another spelling, a field unknown here, or a duplicate (json.Unmarshal merges)
		}
		seen |= 1 << field
		switch field {
		case 0:
			ok = r.string(&rec.ID)
		case 1:
			ok = r.string(&rec.Name)
		case 2:
			ok = r.string(&rec.Description)
		case 3:
			ok = r.string(&rec.Category)
		case 4:
			ok = r.string(&rec.Brand)
		case 5:
			ok = r.attributes(rec)
		case 6:
			ok = r.string(&rec.CreatorID)
		case 7:
			ok = r.time(&rec.CreatedAt)
		case 8:
			ok = r.time(&rec.UpdatedAt)
		}
		if !ok {
			return false
		}
	}
}

type recordReader struct {
	b []byte
	s string // b's copy, that strings are cut from
	i int
}

// byte consumes c if it is next.
func (r *recordReader) byte(c byte) bool {
	if r.i < len(r.b) && r.b[r.i] == c {
		r.i++
		return true
	}
	return false
}

// token consumes a JSON string and returns it with its quotes, and whether
// it needs unquoting: escapes or bytes beyond ASCII. A control character
// (invalid in JSON) or the end of raw fails.
func (r *recordReader) token() (tok []byte, complex bool, ok bool) {
	start := r.i
	if !r.byte('"') {
		return nil, false, false
	}
	for i := r.i; i < len(r.b); i++ {
		switch c := r.b[i]; {
		case c == '"':
			r.i = i + 1
			return r.b[start:r.i], complex, true
		case c == '\\':
			complex = true
			i++ // the escaped byte cannot end the string
		case c < 0x20:
			return nil, false, false
		case c >= utf8.RuneSelf:
			complex = true
		}
	}
	return nil, false, false
}

// plainString consumes a string of ASCII without escapes and returns its
// contents (pointing into raw).
func (r *recordReader) plainString() ([]byte, bool) {
	tok, complex, ok := r.token()
	if !ok || complex {
		return nil, false
	}
	return tok[1 : len(tok)-1], true
}

// string consumes a string into *s.
func (r *recordReader) string(s *string) bool {
	start := r.i
	tok, complex, ok := r.token()
	if !ok {
		return false
	}
	body := tok[1 : len(tok)-1]
	if complex && (bytes.IndexByte(body, '\\') >= 0 || !utf8.Valid(body)) {
		return json.Unmarshal(tok, s) == nil // json.Unmarshal's unquoting, to the letter
	}
	*s = r.s[start+1 : r.i-1]
	return true
}

// time consumes a time as json.Unmarshal does: by UnmarshalJSON on the token.
func (r *recordReader) time(t *time.Time) bool {
	tok, complex, ok := r.token()
	return ok && !complex && t.UnmarshalJSON(tok) == nil
}

// attributes consumes an object of strings.
func (r *recordReader) attributes(rec *productRecord) bool {
	if !r.byte('{') {
		return false // null included: json.Unmarshal leaves the map nil
	}
	rec.Attributes = map[string]string{}
	for first := true; ; first = false {
		if r.byte('}') {
			return true
		}
		if !first && !r.byte(',') {
			return false
		}
		var k, v string
		if !r.string(&k) || !r.byte(':') || !r.string(&v) {
			return false
		}
		rec.Attributes[k] = v // a repeated key: the last wins, as in json.Unmarshal
	}
}
