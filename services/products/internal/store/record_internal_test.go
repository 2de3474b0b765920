package store

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// recordInputs are stored records as json.Marshal writes them (which
// readRecord must read itself) and other JSON (which it may leave to
// json.Unmarshal).
func recordInputs(t testing.TB) (written, other [][]byte) {
	at := time.Date(2024, 5, 1, 12, 30, 0, 123456789, time.UTC)
	recs := []productRecord{
		{},
		{ID: "01HXAMPLE", Name: "Thing", Category: "misc", CreatorID: "u1", CreatedAt: at, UpdatedAt: at},
		{ID: "01HX", Name: "Crème brûlée torch 🔥", Description: "Line one\nline \"two\"\ttab \\ back <b>&amp;</b> \u2028 \u2029 \x01",
			Category: "home/kitchen", Brand: "Ünïcode", Attributes: map[string]string{"color": "red", "size \"L\"": "<XL>", "": "", "ü": "\x7f"},
			CreatorID: "u\u00e9", CreatedAt: at.In(time.FixedZone("", -7*3600)), UpdatedAt: at.Add(time.Hour).Truncate(time.Second)},
		{ID: "bad utf8 \xff\xfe", Name: "surrogate \xed\xa0\x80", Description: strings.Repeat("long description ", 300),
			Attributes: map[string]string{"k\xff": "v\xc3"}, CreatedAt: at.In(time.FixedZone("X", 5*3600+1800))},
	}
	for _, r := range recs {
		raw, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		written = append(written, raw)
	}
	for _, s := range []string{
		``, `null`, `{}`, `[]`, `"x"`, `{`, `}`, `{"id":"a"`, `{"id":"a",}`, `{"id":"a"}x`, `{"id":"a"} `, ` {"id":"a"}`,
		`{ "id" : "a" }`, `{"id":null}`, `{"id":1}`, `{"ID":"a"}`, `{"Id":"a","id":"b"}`, `{"id":"a","id":"b"}`,
		`{"id":"a","other":"b"}`, `{"attributes":null}`, `{"attributes":{}}`, `{"attributes":{"a":"1","a":"2"}}`,
		`{"attributes":{"a":1}}`, `{"attributes":{"a":null}}`, `{"attributes":{"a":"1"},"attributes":{"b":"2"}}`,
		`{"attributes":{"a":"1",}}`, `{"attributes":{"a" :"1"}}`, `{"created_at":"2024-05-01T12:00:00Z"}`,
		`{"created_at":"2024-05-01T12:00:00+02:00"}`, `{"created_at":"2024-05-01"}`, `{"created_at":null}`,
		`{"created_at":"2024-05-01T12:00:00\u005a"}`, `{"created_at":1}`, `{"name":"a\u0000b"}`, `{"name":"a` + "\x01" + `b"}`,
		`{"name":"\ud83d\ude00 \ud800 \u00e9"}`, `{"name":"\x"}`, `{"name":"\"}`, `{"name":"ok\\"}`, `{"n\u0061me":"x"}`,
		`{"name":"x"` + "\n}", `{"description":"` + strings.Repeat("é", 100) + `"}`,
	} {
		other = append(other, []byte(s))
	}
	return written, other
}

// agree fails unless decodeRecord gives what json.Unmarshal gives for raw.
func agree(t *testing.T, raw []byte) {
	t.Helper()
	var got, want productRecord
	gotErr, wantErr := decodeRecord(raw, &got), json.Unmarshal(raw, &want)
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("%q: decodeRecord error %v, json.Unmarshal error %v", raw, gotErr, wantErr)
	}
	if wantErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\ndecodeRecord   %#v\njson.Unmarshal %#v", raw, got, want)
	}
}

func TestDecodeRecordAgreesWithJSON(t *testing.T) {
	written, other := recordInputs(t)
	for _, raw := range written {
		agree(t, raw)
		if !readRecord(raw, &productRecord{}) {
			t.Errorf("%q, as json.Marshal writes it, was left to json.Unmarshal", raw)
		}
	}
	for _, raw := range other {
		agree(t, raw)
	}
}

// TestDecodeRecordReadsEveryField: a record with every field set is read
// without json.Unmarshal, so a field added to productRecord but not to
// readRecord fails here rather than silently slowing every read.
func TestDecodeRecordReadsEveryField(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	rec := productRecord{ID: "id", Name: "n", Description: "d", Category: "c", Brand: "b",
		Attributes: map[string]string{"k": "v"}, CreatorID: "u", CreatedAt: at, UpdatedAt: at.Add(time.Second)}
	v := reflect.ValueOf(rec)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("set %s in this test", v.Type().Field(i).Name)
		}
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var got productRecord
	if !readRecord(raw, &got) {
		t.Fatalf("readRecord left %s to json.Unmarshal", raw)
	}
	if !reflect.DeepEqual(got, rec) {
		t.Fatalf("readRecord = %#v, want %#v", got, rec)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	written, other := recordInputs(f)
	for _, raw := range append(written, other...) {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) { agree(t, raw) })
}
