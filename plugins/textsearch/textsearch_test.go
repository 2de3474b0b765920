package textsearch

import (
	"path/filepath"
	"reflect"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestTermsAreFoldedAndDeduplicated(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string
	}{
		{"accents and case are folded", "Crème BRÛLÉE crème", []string{"creme", "brulee"}},
		{"punctuation splits words", "USB-C cable, 2m", []string{"usb", "cable", "2m"}},
		{"stopwords and one-letter words are dropped", "the phone of a king", []string{"phone", "king"}},
		{"compatibility forms are unified", "ﬁle Ｆｕｌｌ", []string{"file", "full"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Terms(c.in); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("Terms(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestSearchRanksDocumentsMatchingMoreTermsFirst(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "ix.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ix := New("products")
	err = db.Update(func(tx *bolt.Tx) error {
		if err := ix.CreateBuckets(tx); err != nil {
			return err
		}
		docs := map[string][]Field{
			"a": {{"Red running shoes", 3}},
			"b": {{"Red shirt", 3}},
			"c": {{"Running shoes", 3}, {"red laces included", 1}},
			"d": {{"Blue hat", 3}},
		}
		for id, f := range docs {
			if err := ix.Put(tx, id, f...); err != nil {
				return err
			}
		}
		// Re-indexing replaces the old terms.
		return ix.Put(tx, "d", Field{"Green hat", 3})
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx *bolt.Tx) error {
		hits := ix.Search(tx, "red running shoes")
		var ids []string
		for _, h := range hits {
			ids = append(ids, h.DocID)
		}
		// a and c match all three terms (a has them all in the heavier field), b one.
		if !reflect.DeepEqual(ids, []string{"a", "c", "b"}) {
			t.Fatalf("order = %v (%+v)", ids, hits)
		}
		if got := ix.Search(tx, "blue"); len(got) != 0 {
			t.Fatalf("stale term still indexed: %+v", got)
		}
		if got := ix.Search(tx, "GREEN"); len(got) != 1 || got[0].DocID != "d" {
			t.Fatalf("green = %+v", got)
		}
		return nil
	})
	err = db.Update(func(tx *bolt.Tx) error { return ix.Delete(tx, "a") })
	if err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx *bolt.Tx) error {
		if got := ix.Search(tx, "red running shoes"); len(got) != 2 || got[0].DocID != "c" {
			t.Fatalf("after delete: %+v", got)
		}
		return nil
	})
}
