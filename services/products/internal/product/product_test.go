package product

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func validDraft() Draft {
	return Draft{
		Name: "Galaxy S24", Description: "A phone.\nWith a camera.", Category: "Electronics/Phones",
		Brand: "Samsung", Attributes: map[string]string{"color": "black"},
	}
}

func attrs(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m[fmt.Sprintf("k%d", i)] = "v"
	}
	return m
}

func TestNewValidatesEveryField(t *testing.T) {
	cases := []struct {
		name    string
		edit    func(*Draft)
		wantErr string // a substring naming the field; "" for valid
	}{
		{"a complete draft is valid", func(*Draft) {}, ""},
		{"a missing name is rejected", func(d *Draft) { d.Name = "  " }, "name is required"},
		{"a 200-character name is accepted", func(d *Draft) { d.Name = strings.Repeat("é", 200) }, ""},
		{"a 201-character name is rejected", func(d *Draft) { d.Name = strings.Repeat("a", 201) }, "name must be at most 200"},
		{"a name with a control character is rejected", func(d *Draft) { d.Name = "bad\x07name" }, "name must not contain control"},
		{"a name that is not UTF-8 is rejected", func(d *Draft) { d.Name = "bad\xffname" }, "name must be valid UTF-8"},
		{"an empty description is accepted", func(d *Draft) { d.Description = "" }, ""},
		{"a 5000-character description is accepted", func(d *Draft) { d.Description = strings.Repeat("a", 5000) }, ""},
		{"a 5001-character description is rejected", func(d *Draft) { d.Description = strings.Repeat("a", 5001) }, "description must be at most 5000"},
		{"an empty brand is accepted", func(d *Draft) { d.Brand = "" }, ""},
		{"a 101-character brand is rejected", func(d *Draft) { d.Brand = strings.Repeat("b", 101) }, "brand must be at most 100"},
		{"a brand with a newline is rejected", func(d *Draft) { d.Brand = "a\nb" }, "brand must not contain control"},
		{"a missing category is rejected", func(d *Draft) { d.Category = "" }, "category is required"},
		{"a category of five levels is rejected", func(d *Draft) { d.Category = "a/b/c/d/e" }, "category must have at most 4 levels"},
		{"a category with an empty segment is rejected", func(d *Draft) { d.Category = "a//b" }, "category segment"},
		{"a category with a space inside a segment is rejected", func(d *Draft) { d.Category = "home garden" }, "category segment"},
		{"a category segment of 41 characters is rejected", func(d *Draft) { d.Category = strings.Repeat("x", 41) }, "category segment"},
		{"a category with an accent is rejected", func(d *Draft) { d.Category = "café" }, "category segment"},
		{"50 attributes are accepted", func(d *Draft) { d.Attributes = attrs(50) }, ""},
		{"51 attributes are rejected", func(d *Draft) { d.Attributes = attrs(51) }, "attributes must have at most 50"},
		{"an empty attribute key is rejected", func(d *Draft) { d.Attributes = map[string]string{" ": "v"} }, "attributes key is required"},
		{"a 51-character attribute key is rejected", func(d *Draft) { d.Attributes = map[string]string{strings.Repeat("k", 51): "v"} }, "attributes key must be at most 50"},
		{"a 201-character attribute value is rejected", func(d *Draft) { d.Attributes = map[string]string{"k": strings.Repeat("v", 201)} }, `attributes["k"] must be at most 200`},
		{"two keys equal once trimmed are rejected", func(d *Draft) { d.Attributes = map[string]string{"k": "1", " k": "2"} }, "appears twice"},
		{"no attributes are accepted", func(d *Draft) { d.Attributes = nil }, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := validDraft()
			c.edit(&d)
			_, err := New("01ID", "user-1", d, t0)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("New = %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New succeeded, want an error containing %q", c.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("error %q does not contain %q", err, c.wantErr)
			}
		})
	}
}

func TestNewNormalizesFields(t *testing.T) {
	d := validDraft()
	d.Name, d.Category, d.Brand = "  Galaxy S24 ", " Electronics / Phones ", " Samsung "
	d.Attributes = map[string]string{" color ": " black "}
	p, err := New("01ID", "user-1", d, t0)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "Galaxy S24" || p.Category != "electronics/phones" || p.Brand != "Samsung" {
		t.Errorf("normalized to %q %q %q", p.Name, p.Category, p.Brand)
	}
	if !reflect.DeepEqual(p.Attributes, map[string]string{"color": "black"}) {
		t.Errorf("attributes = %v", p.Attributes)
	}
	if p.CreatorID != "user-1" || !p.CreatedAt.Equal(t0) || !p.UpdatedAt.Equal(t0) {
		t.Errorf("product = %+v", p)
	}
	if _, err := New("01ID", "", d, t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("New without a creator = %v, want ErrInvalid", err)
	}
}

func TestNormalizeCategory(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"case is folded", "Electronics/Phones", "electronics/phones"},
		{"space around the path and segments is trimmed", "  Home / Kitchen-Tools ", "home/kitchen-tools"},
		{"digits and dashes are allowed", "toys/lego-2024", "toys/lego-2024"},
		{"four levels are allowed", "a/b/c/d", "a/b/c/d"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := NormalizeCategory(c.in)
			if err != nil || got != c.want {
				t.Fatalf("NormalizeCategory(%q) = %q, %v; want %q", c.in, got, err, c.want)
			}
		})
	}
	if got := Ancestors("a/b/c"); !reflect.DeepEqual(got, []string{"a", "a/b", "a/b/c"}) {
		t.Errorf("Ancestors = %v", got)
	}
}

func TestApplyChangesAllFieldsOrNone(t *testing.T) {
	p, err := New("01ID", "user-1", validDraft(), t0)
	if err != nil {
		t.Fatal(err)
	}
	t1 := t0.Add(time.Hour)
	name, bad := "Galaxy S25", ""
	if err := p.Apply(Patch{Name: &name, Category: &bad}, t1); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "category") {
		t.Fatalf("Apply with a bad category = %v", err)
	}
	if p.Name != "Galaxy S24" || !p.UpdatedAt.Equal(t0) {
		t.Fatalf("a rejected patch changed the product: %+v", p)
	}
	cat := "Electronics/Tablets"
	if err := p.Apply(Patch{Name: &name, Category: &cat}, t1); err != nil {
		t.Fatal(err)
	}
	if p.Name != name || p.Category != "electronics/tablets" || p.Brand != "Samsung" || !p.UpdatedAt.Equal(t1) {
		t.Fatalf("after Apply: %+v", p)
	}
}

func TestOnlyTheCreatorMayEdit(t *testing.T) {
	p := Product{CreatorID: "user-1"}
	cases := []struct {
		name   string
		caller string
		want   error
	}{
		{"the creator may", "user-1", nil},
		{"another user may not", "user-2", ErrForbidden},
		{"an anonymous caller may not", "", ErrForbidden},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := p.CheckEditor(c.caller); !errors.Is(err, c.want) {
				t.Fatalf("CheckEditor(%q) = %v, want %v", c.caller, err, c.want)
			}
		})
	}
}

func ptr(v int64) *int64 { return &v }

func TestQueryNormalize(t *testing.T) {
	cases := []struct {
		name    string
		in      Query
		want    Query
		wantErr string
	}{
		{"no query sorts newest, in USD, 20 a page", Query{}, Query{Sort: SortNewest, Currency: "USD", PageSize: 20}, ""},
		{"text sorts by relevance", Query{Text: " phone "}, Query{Text: "phone", Sort: SortRelevance, Currency: "USD", PageSize: 20}, ""},
		{"relevance without text is newest", Query{Sort: "relevance"}, Query{Sort: SortNewest, Currency: "USD", PageSize: 20}, ""},
		{"page size is capped at 100", Query{PageSize: 1000}, Query{Sort: SortNewest, Currency: "USD", PageSize: 100}, ""},
		{"category and sort are normalized", Query{Category: "Electronics", Currency: "EUR", Sort: "price_asc"},
			Query{Category: "electronics", Sort: SortPriceAsc, Currency: "EUR", PageSize: 20}, ""},
		{"an unknown sort is rejected", Query{Sort: "cheapest"}, Query{}, "sort must be one of"},
		{"an unknown currency is rejected", Query{Currency: "XXX"}, Query{}, "currency"},
		{"sorts are exact names", Query{Sort: "PRICE_ASC"}, Query{}, "sort must be one of"},
		{"a lower-case currency is rejected", Query{Currency: "usd"}, Query{}, `currency "usd"`},
		{"a negative min_price is rejected", Query{MinPrice: ptr(-1)}, Query{}, "min_price"},
		{"a negative max_price is rejected", Query{MaxPrice: ptr(-1)}, Query{}, "max_price"},
		{"min_price above max_price is rejected", Query{MinPrice: ptr(10), MaxPrice: ptr(5)}, Query{}, "min_price must not be greater"},
		{"a bad category is rejected", Query{Category: "a b"}, Query{}, "category segment"},
		{"an overlong query is rejected", Query{Text: strings.Repeat("a", 201)}, Query{}, "query must be at most"},
		{"a negative page size is rejected", Query{PageSize: -1}, Query{}, "page_size"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.in.Normalize()
			if c.wantErr != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("Normalize = %v, want an invalid error containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("Normalize = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestTreeNestsCategoriesSortedByName(t *testing.T) {
	got := Tree(map[string]int64{
		"electronics": 3, "electronics/phones": 2, "electronics/audio": 1, "books": 1, "empty": 0,
	})
	want := []Category{
		{Name: "books", Path: "books", Count: 1, Children: []Category{}},
		{Name: "electronics", Path: "electronics", Count: 3, Children: []Category{
			{Name: "audio", Path: "electronics/audio", Count: 1, Children: []Category{}},
			{Name: "phones", Path: "electronics/phones", Count: 2, Children: []Category{}},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Tree = %+v\nwant %+v", got, want)
	}
}
