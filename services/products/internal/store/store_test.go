package store_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/plugins/textsearch"
	"github.com/marketmesh/marketmesh/services/products/internal/product"
	"github.com/marketmesh/marketmesh/services/products/internal/store"
)

func TestCreateThenGet(t *testing.T) {
	s, _ := newStore(t)
	p := create(t, s, spec{name: "Galaxy S24", desc: "A phone", category: "electronics/phones", brand: "Samsung"})
	got, err := s.Get(p.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != p.Name || got.Category != p.Category || got.Brand != p.Brand || got.CreatorID != p.CreatorID ||
		!got.CreatedAt.Equal(t0) || got.ViewCount != 0 || got.LowestPrices != nil || got.Attributes == nil {
		t.Fatalf("Get = %+v, want %+v", got, p)
	}
	if _, err := s.Get(ulid.Make().String(), false); !errors.Is(err, product.ErrNotFound) {
		t.Fatalf("Get(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("Check = %v", err)
	}
}

func TestRelevanceRanksProductsMatchingMoreTermsFirst(t *testing.T) {
	s, _ := newStore(t)
	both := create(t, s, spec{name: "Wireless Noise Cancelling Headphones"})
	nameOnly := create(t, s, spec{name: "Wireless Mouse"})
	descOnly := create(t, s, spec{name: "Ergonomic Keyboard", desc: "pairs with wireless receivers"})
	brandOnly := create(t, s, spec{name: "Studio Monitor", brand: "Headphones Inc"})
	create(t, s, spec{name: "Desk Lamp"})

	got, next := search(t, s, product.Query{Text: "wireless HEADPHONES"})
	if next != "" {
		t.Errorf("one page expected, got a next token")
	}
	want := []string{both.ID, brandOnly.ID, nameOnly.ID, descOnly.ID}
	// Both terms beat one term; a name match (weight 3) beats a brand match
	// (2) beats a description match (1); "headphones" is rarer than
	// "wireless", so its brand match outranks the name match of "wireless"
	// only if idf says so: compare with textsearch itself.
	var ts []string
	err := s.Bolt().View(func(tx *bolt.Tx) error {
		for _, h := range textsearch.New("products").Search(tx, "wireless HEADPHONES") {
			ts = append(ts, h.DocID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(got...), ts) {
		t.Fatalf("Search order %v differs from textsearch's %v", names(t, s, ids(got...)), names(t, s, ts))
	}
	if ids(got...)[0] != both.ID || len(got) != 4 {
		t.Fatalf("relevance order = %v, want the two-term match first among %v", names(t, s, ids(got...)), names(t, s, want))
	}
	if !sameSet(ids(got...), want) {
		t.Fatalf("relevance results = %v, want %v", names(t, s, ids(got...)), names(t, s, want))
	}
	if items, _ := search(t, s, product.Query{Text: "the of"}); len(items) != 0 {
		t.Errorf("a query of stopwords matched %d products", len(items))
	}
}

func TestFilters(t *testing.T) {
	s, _ := newStore(t)
	phone := create(t, s, spec{name: "Galaxy phone", category: "electronics/phones", brand: "Samsung"})
	cheapPhone := create(t, s, spec{name: "Budget phone", category: "electronics/phones/android", brand: "Nokia"})
	tv := create(t, s, spec{name: "Smart TV", category: "electronics/tv", brand: "samsung "})
	cable := create(t, s, spec{name: "HDMI cable", category: "electronics-accessories", brand: "Belkin"})
	book := create(t, s, spec{name: "Phone photography", category: "books", brand: "Crème Éditions"})
	price(t, s, phone.ID, "p1", 80000, "USD", true)
	price(t, s, phone.ID, "p2", 70000, "EUR", true)
	price(t, s, cheapPhone.ID, "p3", 9900, "USD", true)
	price(t, s, tv.ID, "p4", 50000, "USD", true)
	price(t, s, cable.ID, "p5", 999, "EUR", true)
	price(t, s, book.ID, "p6", 2500, "USD", false) // paused: no price

	cases := []struct {
		name string
		q    product.Query
		want []product.Product
	}{
		{"a category includes its sub-categories", product.Query{Category: "Electronics"}, []product.Product{phone, cheapPhone, tv}},
		{"a sub-category includes its own sub-categories", product.Query{Category: "electronics/phones"}, []product.Product{phone, cheapPhone}},
		{"a leaf category has only its products", product.Query{Category: "electronics/phones/android"}, []product.Product{cheapPhone}},
		{"a category prefix that is not a parent does not match", product.Query{Category: "electron"}, nil},
		{"an unknown category matches nothing", product.Query{Category: "garden"}, nil},
		{"a brand matches whatever its case and spacing", product.Query{Brand: "SAMSUNG"}, []product.Product{phone, tv}},
		{"a brand matches without accents", product.Query{Brand: "creme editions"}, []product.Product{book}},
		{"a minimum price keeps dearer products", product.Query{MinPrice: i64(50000)}, []product.Product{phone, tv}},
		{"a maximum price keeps cheaper products", product.Query{MaxPrice: i64(50000)}, []product.Product{cheapPhone, tv}},
		{"bounds are inclusive", product.Query{MinPrice: i64(9900), MaxPrice: i64(9900)}, []product.Product{cheapPhone}},
		{"prices are compared in the query's currency", product.Query{MaxPrice: i64(75000), Currency: "EUR"}, []product.Product{phone, cable}},
		{"products without a price in the currency are left out", product.Query{MinPrice: i64(0), Currency: "GBP"}, nil},
		{"filters combine", product.Query{Category: "electronics", Brand: "samsung", MaxPrice: i64(60000)}, []product.Product{tv}},
		{"text combines with a category", product.Query{Text: "phone", Category: "electronics"}, []product.Product{phone, cheapPhone}},
		{"text combines with a price", product.Query{Text: "phone", MaxPrice: i64(10000)}, []product.Product{cheapPhone}},
		{"text combines with a brand", product.Query{Text: "phone", Brand: "Crème Éditions"}, []product.Product{book}},
	}
	for _, c := range cases {
		for _, sort := range []string{"", product.SortNewest, product.SortPriceAsc, product.SortPopular} {
			t.Run(c.name+" sorted "+sort, func(t *testing.T) {
				q := c.q
				q.Sort = sort
				got := all(t, s, q)
				want := ids(c.want...)
				if sort == product.SortPriceAsc { // no price, no place in a price order
					want = slices.DeleteFunc(want, func(id string) bool {
						p, _ := s.Get(id, false)
						cur := q.Currency
						if cur == "" {
							cur = "USD"
						}
						return !slices.ContainsFunc(p.LowestPrices, func(m money.Money) bool { return m.Currency == cur })
					})
				}
				if !sameSet(got, want) {
					t.Fatalf("got %v, want %v", names(t, s, got), names(t, s, want))
				}
			})
		}
	}
}

func TestSortOrders(t *testing.T) {
	s, _ := newStore(t)
	a := create(t, s, spec{name: "Alpha phone"})
	b := create(t, s, spec{name: "Beta phone phone", desc: "phone"})
	c := create(t, s, spec{name: "Gamma tablet"})
	d := create(t, s, spec{name: "Delta phone"})
	price(t, s, a.ID, "pa", 300, "USD", true)
	price(t, s, b.ID, "pb", 100, "USD", true)
	price(t, s, c.ID, "pc", 200, "USD", true)
	price(t, s, c.ID, "pc2", 50, "EUR", true)
	// d has no price.
	for range 3 {
		s.Get(c.ID, true)
	}
	s.Get(a.ID, true)
	s.Get(d.ID, true)
	if err := s.FlushViews(); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		q    product.Query
		want []product.Product
	}{
		{"newest puts the last created first", product.Query{}, []product.Product{d, c, b, a}},
		{"price_asc is cheapest first and leaves out unpriced products", product.Query{Sort: "price_asc"}, []product.Product{b, c, a}},
		{"price_desc is dearest first", product.Query{Sort: "price_desc"}, []product.Product{a, c, b}},
		{"price sorts use the query's currency", product.Query{Sort: "price_asc", Currency: "EUR"}, []product.Product{c}},
		{"popular is most viewed first, ties newest first", product.Query{Sort: "popular"}, []product.Product{c, d, a, b}},
		{"relevance puts the stronger match first", product.Query{Text: "phone"}, []product.Product{b, a, d}},
		{"text can be sorted newest", product.Query{Text: "phone", Sort: "newest"}, []product.Product{d, b, a}},
		{"text can be sorted by price", product.Query{Text: "phone", Sort: "price_desc"}, []product.Product{a, b}},
		{"text can be sorted by views", product.Query{Text: "phone", Sort: "popular"}, []product.Product{d, a, b}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, size := range []int{1, 2, 100} {
				q := tc.q
				q.PageSize = size
				if got := all(t, s, q); !slices.Equal(got, ids(tc.want...)) {
					t.Fatalf("page size %d: got %v, want %v", size, names(t, s, got), names(t, s, ids(tc.want...)))
				}
			}
		})
	}
}

func TestPageSizeAndBadTokens(t *testing.T) {
	s, _ := newStore(t)
	for range 25 {
		create(t, s, spec{name: "Thing"})
	}
	items, next := search(t, s, product.Query{})
	if len(items) != 20 || next == "" {
		t.Fatalf("default page: %d items, next %q", len(items), next)
	}
	items, next = search(t, s, product.Query{PageToken: next})
	if len(items) != 5 || next != "" {
		t.Fatalf("second page: %d items, next %q", len(items), next)
	}
	first, tok := search(t, s, product.Query{PageSize: 10, Sort: "newest"})
	cases := []struct {
		name string
		q    product.Query
	}{
		{"garbage is rejected", product.Query{PageToken: "not a token!"}},
		{"a truncated token is rejected", product.Query{PageToken: tok[:10]}},
		{"a token of another sort is rejected", product.Query{Sort: "popular", PageToken: tok}},
		{"a token of another filter is rejected", product.Query{Category: "misc", PageToken: tok}},
		{"a token of another text is rejected", product.Query{Text: "thing", Sort: "newest", PageToken: tok}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := s.Search(query(t, c.q)); !errors.Is(err, store.ErrBadPageToken) {
				t.Fatalf("Search = %v, want ErrBadPageToken", err)
			}
		})
	}
	if len(first) != 10 {
		t.Fatalf("first page has %d items", len(first))
	}
}

func TestUpdateReindexes(t *testing.T) {
	s, _ := newStore(t)
	p := create(t, s, spec{name: "Kettle classic", category: "kitchen/appliances", brand: "Acme"})
	price(t, s, p.ID, "pub", 2500, "USD", true)
	name, cat, brand, desc := "Toaster deluxe", "Home/Breakfast", "Globex", "crispy"
	got, err := s.Update(p.ID, func(p *product.Product) error {
		return p.Apply(product.Patch{Name: &name, Category: &cat, Brand: &brand, Description: &desc}, t0)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != name || got.Category != "home/breakfast" || got.Brand != brand || got.CreatorID != "user-1" ||
		!reflect.DeepEqual(got.LowestPrices, []money.Money{{Amount: 2500, Currency: "USD"}}) {
		t.Fatalf("Update = %+v", got)
	}
	checks := []struct {
		name string
		q    product.Query
		want []string
	}{
		{"the old name no longer matches", product.Query{Text: "kettle"}, nil},
		{"the new name matches", product.Query{Text: "toaster"}, []string{p.ID}},
		{"the new description matches", product.Query{Text: "crispy"}, []string{p.ID}},
		{"the old category no longer matches", product.Query{Category: "kitchen"}, nil},
		{"the new category matches", product.Query{Category: "home"}, []string{p.ID}},
		{"the old brand no longer matches", product.Query{Brand: "acme"}, nil},
		{"the new brand matches", product.Query{Brand: "globex"}, []string{p.ID}},
		{"the price index still holds it", product.Query{Sort: "price_asc", MaxPrice: i64(3000)}, []string{p.ID}},
		{"the brand now matches text too", product.Query{Text: "globex"}, []string{p.ID}},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if got := all(t, s, c.q); !slices.Equal(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
	tree, err := s.Categories()
	if err != nil {
		t.Fatal(err)
	}
	want := []product.Category{{Name: "home", Path: "home", Count: 1, Children: []product.Category{
		{Name: "breakfast", Path: "home/breakfast", Count: 1, Children: []product.Category{}}}}}
	if !reflect.DeepEqual(tree, want) {
		t.Fatalf("Categories = %+v, want %+v", tree, want)
	}

	errNo := errors.New("no")
	if _, err := s.Update(p.ID, func(*product.Product) error { return errNo }); !errors.Is(err, errNo) {
		t.Fatalf("a refused update = %v", err)
	}
	if _, err := s.Update(ulid.Make().String(), func(*product.Product) error { return nil }); !errors.Is(err, product.ErrNotFound) {
		t.Fatalf("Update(unknown) = %v", err)
	}
}

func TestDeleteRemovesEveryTrace(t *testing.T) {
	s, _ := newStore(t)
	keep := create(t, s, spec{name: "Blue widget", category: "tools/hand", brand: "Acme", desc: "sturdy"})
	gone := create(t, s, spec{name: "Red widget", category: "tools/power", brand: "Acme", desc: "sturdy"})
	price(t, s, keep.ID, "k", 100, "USD", true)
	price(t, s, gone.ID, "g", 200, "USD", true)
	s.Get(gone.ID, true)
	if err := s.FlushViews(); err != nil {
		t.Fatal(err)
	}
	s.Get(gone.ID, true) // pending at delete time

	errNo := errors.New("not yours")
	if err := s.Delete(gone.ID, t0, ulid.Make().String(), func(product.Product) error { return errNo }); !errors.Is(err, errNo) {
		t.Fatalf("a refused delete = %v", err)
	}
	if err := s.Delete(gone.ID, t0, ulid.Make().String(), func(product.Product) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(gone.ID, t0, ulid.Make().String(), func(product.Product) error { return nil }); !errors.Is(err, product.ErrNotFound) {
		t.Fatalf("deleting twice = %v", err)
	}
	if _, err := s.Get(gone.ID, false); !errors.Is(err, product.ErrNotFound) {
		t.Fatalf("Get after Delete = %v", err)
	}
	for _, q := range []product.Query{
		{}, {Text: "widget"}, {Text: "sturdy acme"}, {Category: "tools"}, {Brand: "acme"},
		{Sort: "price_asc"}, {MinPrice: i64(0)}, {Sort: "popular"}, {Text: "widget", Sort: "price_desc"},
	} {
		if got := all(t, s, q); !slices.Equal(got, []string{keep.ID}) {
			t.Errorf("Search(%+v) after Delete = %v, want only %s", q, got, keep.ID)
		}
	}
	tree, _ := s.Categories()
	want := []product.Category{{Name: "tools", Path: "tools", Count: 1, Children: []product.Category{
		{Name: "hand", Path: "tools/hand", Count: 1, Children: []product.Category{}}}}}
	if !reflect.DeepEqual(tree, want) {
		t.Fatalf("Categories = %+v, want %+v", tree, want)
	}
	if err := s.FlushViews(); err != nil {
		t.Fatalf("flushing views of a deleted product = %v", err)
	}
	if price(t, s, gone.ID, "g", 150, "USD", true) {
		t.Error("a publication event for a deleted product was applied")
	}
	if got := all(t, s, product.Query{Sort: "price_asc"}); !slices.Equal(got, []string{keep.ID}) {
		t.Errorf("price order after a late event = %v", got)
	}
}

func TestPublicationEventsKeepLowestPrices(t *testing.T) {
	s, _ := newStore(t)
	p := create(t, s, spec{name: "Camera"})
	other := create(t, s, spec{name: "Lens"})
	price(t, s, other.ID, "o1", 1500, "USD", true)

	steps := []struct {
		name   string
		pub    string
		amount int64
		cur    string
		active bool
		want   []money.Money
	}{
		{"a first active publication sets the price", "a", 2000, "USD", true, []money.Money{{Amount: 2000, Currency: "USD"}}},
		{"a cheaper one lowers it", "b", 1000, "USD", true, []money.Money{{Amount: 1000, Currency: "USD"}}},
		{"another currency adds a price", "c", 900, "EUR", true, []money.Money{{Amount: 900, Currency: "EUR"}, {Amount: 1000, Currency: "USD"}}},
		{"pausing the cheapest falls back to the next", "b", 1000, "USD", false, []money.Money{{Amount: 900, Currency: "EUR"}, {Amount: 2000, Currency: "USD"}}},
		{"a price rise of the only one raises it", "a", 2500, "USD", true, []money.Money{{Amount: 900, Currency: "EUR"}, {Amount: 2500, Currency: "USD"}}},
		{"closing the last one in a currency drops it", "c", 900, "EUR", false, []money.Money{{Amount: 2500, Currency: "USD"}}},
		{"an invalid currency never becomes a price", "d", 1, "usd", true, []money.Money{{Amount: 2500, Currency: "USD"}}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if !price(t, s, p.ID, st.pub, st.amount, st.cur, st.active) {
				t.Fatal("product reported unknown")
			}
			got, _ := s.Get(p.ID, false)
			if !reflect.DeepEqual(got.LowestPrices, st.want) {
				t.Fatalf("LowestPrices = %v, want %v", got.LowestPrices, st.want)
			}
			// The index agrees: a range around the USD price finds it.
			for _, m := range st.want {
				found := all(t, s, product.Query{MinPrice: i64(m.Amount), MaxPrice: i64(m.Amount), Currency: m.Currency})
				if !slices.Contains(found, p.ID) {
					t.Fatalf("price filter at %v does not find the product: %v", m, found)
				}
			}
			eur := all(t, s, product.Query{Sort: "price_asc", Currency: "EUR"})
			if want := slices.ContainsFunc(st.want, func(m money.Money) bool { return m.Currency == "EUR" }); slices.Contains(eur, p.ID) != want {
				t.Fatalf("EUR price order %v; want the product in it: %v", eur, want)
			}
		})
	}
	if price(t, s, ulid.Make().String(), "x", 100, "USD", true) {
		t.Error("an event for an unknown product reported known")
	}
}

// Publications picks an event's ID before its write commits, so IDs need
// not follow the commit order; the outbox sequence does, and decides.
func TestAStaleEventDoesNotOverrideANewerOne(t *testing.T) {
	s, _ := newStore(t)
	p := create(t, s, spec{name: "Drone"})
	apply := func(seq uint64, eventID string, amount int64) {
		err := s.Bolt().Update(func(tx *bolt.Tx) error {
			_, err := store.ApplyPublication(tx, product.PublicationPrice{PublicationID: "pub", ProductID: p.ID,
				Price: money.Money{Amount: amount, Currency: "USD"}, Active: true, Seq: seq, EventID: eventID})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The later commit carries the smaller ID (chosen first, committed last).
	smallerID, largerID := ulid.Make().String(), ulid.Make().String()
	apply(8, smallerID, 700)
	apply(7, largerID, 900) // an older state, redelivered after a replay
	apply(6, ulid.Make().String(), 500)
	if got, _ := s.Get(p.ID, false); !reflect.DeepEqual(got.LowestPrices, []money.Money{{Amount: 700, Currency: "USD"}}) {
		t.Fatalf("LowestPrices = %v after a stale event", got.LowestPrices)
	}
}

func TestCategoryCountsIncludeSubCategories(t *testing.T) {
	s, _ := newStore(t)
	for _, c := range []string{"electronics/phones", "electronics/phones", "electronics/audio/headphones", "electronics", "books"} {
		create(t, s, spec{name: "x", category: c})
	}
	tree, err := s.Categories()
	if err != nil {
		t.Fatal(err)
	}
	leaf := []product.Category{}
	want := []product.Category{
		{Name: "books", Path: "books", Count: 1, Children: leaf},
		{Name: "electronics", Path: "electronics", Count: 4, Children: []product.Category{
			{Name: "audio", Path: "electronics/audio", Count: 1, Children: []product.Category{
				{Name: "headphones", Path: "electronics/audio/headphones", Count: 1, Children: leaf}}},
			{Name: "phones", Path: "electronics/phones", Count: 2, Children: leaf},
		}},
	}
	if !reflect.DeepEqual(tree, want) {
		t.Fatalf("Categories = %+v\nwant %+v", tree, want)
	}
}

func TestDataSurvivesCloseAndReopen(t *testing.T) {
	s, path := newStore(t)
	p := create(t, s, spec{name: "Espresso machine", category: "kitchen/coffee", brand: "Gaggia"})
	price(t, s, p.ID, "pub", 39900, "USD", true)
	s.Get(p.ID, true)
	s.Get(p.ID, true) // pending, written by Close
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path)
	defer s.Close()
	got, err := s.Get(p.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != p.Name || got.ViewCount != 2 || !reflect.DeepEqual(got.LowestPrices, []money.Money{{Amount: 39900, Currency: "USD"}}) {
		t.Fatalf("after reopen: %+v", got)
	}
	for _, q := range []product.Query{{Text: "espresso"}, {Category: "kitchen"}, {Brand: "gaggia"}, {Sort: "price_asc"}, {Sort: "popular"}} {
		if got := all(t, s, q); !slices.Equal(got, []string{p.ID}) {
			t.Errorf("Search(%+v) after reopen = %v", q, got)
		}
	}
	s.Get(p.ID, true)
	if err := s.FlushViews(); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(p.ID, false); got.ViewCount != 3 {
		t.Fatalf("views after a flush following reopen = %d, want 3", got.ViewCount)
	}
}
