package store_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/textsearch"
	"github.com/marketmesh/marketmesh/services/products/internal/product"
	"github.com/marketmesh/marketmesh/services/products/internal/store"
)

// TestPagingIsStableWhileProductsAreInserted pages through every order while
// new products, which sort all over the order (cheaper, dearer, more viewed,
// better matching, in the same category), are inserted between page fetches:
// no product may appear twice, and every product that existed before the
// first page must appear.
func TestPagingIsStableWhileProductsAreInserted(t *testing.T) {
	queries := []struct {
		name string
		q    product.Query
	}{
		{"newest", product.Query{Sort: "newest"}},
		{"newest in a category", product.Query{Sort: "newest", Category: "shoes"}},
		{"newest of a brand", product.Query{Sort: "newest", Brand: "Acme"}},
		{"price ascending", product.Query{Sort: "price_asc"}},
		{"price descending", product.Query{Sort: "price_desc"}},
		{"price ascending within bounds", product.Query{Sort: "price_asc", MinPrice: i64(1000), MaxPrice: i64(9000)}},
		{"price descending in a category", product.Query{Sort: "price_desc", Category: "shoes/running"}},
		{"popular", product.Query{Sort: "popular"}},
		{"popular in a category", product.Query{Sort: "popular", Category: "shoes"}},
		{"relevance of a two-word query", product.Query{Text: "red shoe"}},
		{"relevance with a category", product.Query{Text: "red shoe", Category: "shoes"}},
		{"text sorted newest", product.Query{Text: "red shoe", Sort: "newest"}},
		{"text sorted by price", product.Query{Text: "red shoe", Sort: "price_asc"}},
	}
	for _, tc := range queries {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each has its own file; most of the time is fsync and batch delay
			s, _ := newStore(t)
			rng := rand.New(rand.NewPCG(1, 2))
			n := 0
			// add inserts k products that sort all over every order.
			add := func(k int) {
				specs := make([]spec, k)
				for i := range specs {
					n++
					// Names vary in which query terms they hold so that inserts
					// shift the terms' idf and hence every score.
					name := []string{"red shoe", "red hat", "blue shoe", "red", "shoe shoe"}[rng.IntN(5)]
					specs[i] = spec{
						name:     fmt.Sprintf("%s model %d", name, n),
						category: []string{"shoes", "shoes/running", "shoes/running/trail", "hats"}[rng.IntN(4)],
						brand:    []string{"Acme", "Globex"}[rng.IntN(2)],
					}
				}
				var ls []listing
				for _, p := range createMany(t, s, specs) {
					ls = append(ls, listing{p.ID, "pub", 500 + rng.Int64N(10000), "USD", true})
					for range rng.IntN(4) {
						s.Get(p.ID, true)
					}
				}
				priceMany(t, s, ls)
				if err := s.FlushViews(); err != nil {
					t.Fatal(err)
				}
			}
			add(40)
			before := all(t, s, tc.q) // everything that exists now
			if len(before) < 10 {
				t.Fatalf("only %d results before paging: the fixture is too small", len(before))
			}

			q := tc.q
			q.PageSize = 4
			seen := map[string]bool{}
			pages := 0
			for {
				items, next := search(t, s, q)
				pages++
				for _, p := range items {
					if seen[p.ID] {
						t.Fatalf("page %d repeats %s (%s)", pages, p.ID, p.Name)
					}
					seen[p.ID] = true
				}
				if next == "" {
					break
				}
				q.PageToken = next
				add(6) // a burst of inserts
			}
			if pages < 3 {
				t.Fatalf("only %d pages", pages)
			}
			for _, id := range before {
				if !seen[id] {
					t.Errorf("%s existed before paging began but was skipped", id)
				}
			}
		})
	}
}

// TestSearchAgreesWithAFullScan runs random queries over random products and
// compares every page with a brute-force answer: filter every product,
// order them, cut pages. Catalog shapes and page sizes vary, so that every
// plan of the planner (ordered streams, filter sets, price sets) is taken.
func TestSearchAgreesWithAFullScan(t *testing.T) {
	words := []string{"red", "blue", "shoe", "hat", "lamp", "desk", "oak", "steel", "mini", "pro", "ultra", "soft"}
	cats := []string{"a", "a/b", "a/b/c", "a/b/d", "a/e", "f", "f/g", "h/i/j/k"}
	brands := []string{"Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark"}
	for _, shape := range []struct {
		name     string
		products int
		seed     uint64
	}{{"a small catalog", 60, 7}, {"a larger catalog", 400, 8}} {
		t.Run(shape.name, func(t *testing.T) {
			t.Parallel()
			s, _ := newStore(t)
			rng := rand.New(rand.NewPCG(shape.seed, 99))
			specs := make([]spec, shape.products)
			for i := range specs {
				w := func() string { return words[rng.IntN(len(words))] }
				specs[i] = spec{name: w() + " " + w() + " " + w(), desc: w(), category: cats[rng.IntN(len(cats))]}
				if rng.IntN(4) > 0 {
					specs[i].brand = brands[rng.IntN(len(brands))]
					if i%7 == 0 {
						specs[i].brand = strings.ToUpper(specs[i].brand)
					}
				}
			}
			var ls []listing
			for _, p := range createMany(t, s, specs) {
				for pub := range rng.IntN(3) {
					cur := []string{"USD", "EUR"}[rng.IntN(2)]
					ls = append(ls, listing{p.ID, fmt.Sprint(pub), 100 + rng.Int64N(5000), cur, rng.IntN(5) > 0})
				}
				for range rng.IntN(6) {
					s.Get(p.ID, true)
				}
			}
			priceMany(t, s, ls)
			if err := s.FlushViews(); err != nil {
				t.Fatal(err)
			}
			ref := loadAll(t, s)
			sorts := []string{"", "newest", "price_asc", "price_desc", "popular", "relevance"}
			for i := range 300 {
				var q product.Query
				if rng.IntN(3) == 0 {
					q.Text = words[rng.IntN(len(words))]
					if rng.IntN(2) == 0 {
						q.Text += " " + words[rng.IntN(len(words))]
					}
				}
				if rng.IntN(2) == 0 {
					q.Category = cats[rng.IntN(len(cats))]
				}
				if rng.IntN(3) == 0 {
					q.Brand = brands[rng.IntN(len(brands))]
				}
				if rng.IntN(3) == 0 {
					q.MinPrice = i64(rng.Int64N(3000))
				}
				if rng.IntN(3) == 0 {
					q.MaxPrice = i64(3000 + rng.Int64N(3000))
					if rng.IntN(3) == 0 && q.MinPrice != nil {
						q.MaxPrice = i64(*q.MinPrice + rng.Int64N(200)) // a narrow range
					}
				}
				if rng.IntN(4) == 0 {
					q.Currency = "EUR"
				}
				q.Sort = sorts[rng.IntN(len(sorts))]
				q.PageSize = []int{1, 3, 10, 50}[rng.IntN(4)]
				nq := query(t, q)
				want := ref.answer(t, s, nq)
				got := all(t, s, q)
				if !slices.Equal(got, want) {
					t.Fatalf("query %d %+v:\n got %v\nwant %v", i, nq, got, want)
				}
			}
		})
	}
}

type refProduct struct {
	p product.Product
}

type reference []refProduct

func loadAll(t *testing.T, s *store.Store) reference {
	t.Helper()
	var ref reference
	for _, id := range all(t, s, product.Query{PageSize: 100}) {
		p, err := s.Get(id, false)
		if err != nil {
			t.Fatal(err)
		}
		ref = append(ref, refProduct{p})
	}
	return ref
}

// answer is the brute-force result of q.
func (ref reference) answer(t *testing.T, s *store.Store, q product.Query) []string {
	t.Helper()
	rank := map[string]int{}
	if q.Text != "" {
		err := s.Bolt().View(func(tx *bolt.Tx) error {
			for i, h := range textsearch.New("products").Search(tx, q.Text) {
				rank[h.DocID] = i
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	priceOf := func(p product.Product) (int64, bool) {
		for _, m := range p.LowestPrices {
			if m.Currency == q.Currency {
				return m.Amount, true
			}
		}
		return 0, false
	}
	needPrice := q.HasPriceFilter() || q.Sort == "price_asc" || q.Sort == "price_desc"
	var out []product.Product
	for _, r := range ref {
		p := r.p
		if _, ok := rank[p.ID]; q.Text != "" && !ok {
			continue
		}
		if q.Category != "" && p.Category != q.Category && !strings.HasPrefix(p.Category, q.Category+"/") {
			continue
		}
		if q.Brand != "" && store.FoldBrand(p.Brand) != store.FoldBrand(q.Brand) {
			continue
		}
		if needPrice {
			amt, ok := priceOf(p)
			if !ok || q.MinPrice != nil && amt < *q.MinPrice || q.MaxPrice != nil && amt > *q.MaxPrice {
				continue
			}
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b product.Product) int {
		switch q.Sort {
		case "relevance":
			return rank[a.ID] - rank[b.ID]
		case "price_asc", "price_desc":
			pa, _ := priceOf(a)
			pb, _ := priceOf(b)
			c := cmpInt(pa, pb)
			if c == 0 {
				c = strings.Compare(a.ID, b.ID)
			}
			if q.Sort == "price_desc" {
				c = -c
			}
			return c
		case "popular":
			if c := cmpInt(b.ViewCount, a.ViewCount); c != 0 {
				return c
			}
			return strings.Compare(b.ID, a.ID)
		default:
			return strings.Compare(b.ID, a.ID)
		}
	})
	return ids(out...)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
