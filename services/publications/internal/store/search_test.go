package store_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/services/publications/internal/publication"
	"github.com/marketmesh/marketmesh/services/publications/internal/store"
)

func ptr[T any](v T) *T { return &v }

func mustSearch(t *testing.T, r publicationsrpc.SearchRequest) publication.Search {
	t.Helper()
	q, err := publication.CheckSearch(r)
	if err != nil {
		t.Fatalf("CheckSearch(%+v) = %v", r, err)
	}
	return q
}

func idsOf(ps []publication.Publication) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

// catalog is a small fixed data set; names are the test's handles on IDs.
type catalog struct {
	s     *store.Store
	ids   map[string]string // name → ID
	names map[string]string // ID → name
}

func newCatalog(t *testing.T) *catalog {
	s := newStore(t)
	c := &catalog{s: s, ids: map[string]string{}, names: map[string]string{}}
	for _, e := range []struct {
		name string
		sp   spec
	}{
		{"bag", spec{seller: "A", product: "X", title: "Red leather camera bag", amount: 1500, qty: 1}},
		{"film", spec{seller: "A", product: "Y", title: "Vintage film camera", amount: 45000, qty: 1, status: "paused"}},
		{"strap", spec{seller: "B", product: "X", title: "Camera strap", amount: 900, qty: 1}},
		{"lens", spec{seller: "B", product: "Y", title: "Film camera lens", amount: 30000, currency: "EUR", qty: 1}},
		{"wallet", spec{seller: "C", product: "X", title: "Leather wallet", amount: 2500, qty: 1, status: "closed"}},
	} {
		p := mustCreate(t, s, e.sp)
		c.ids[e.name], c.names[p.ID] = p.ID, e.name
	}
	return c
}

func (c *catalog) search(t *testing.T, r publicationsrpc.SearchRequest) []string {
	t.Helper()
	ps, _, err := c.s.Search(mustSearch(t, r))
	if err != nil {
		t.Fatalf("Search(%+v) = %v", r, err)
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = c.names[p.ID]
	}
	return out
}

func TestSearchFiltersAndSorts(t *testing.T) {
	c := newCatalog(t)
	tests := []struct {
		name string
		req  publicationsrpc.SearchRequest
		want []string
	}{
		{"no filter lists everything newest first", publicationsrpc.SearchRequest{}, []string{"wallet", "lens", "strap", "film", "bag"}},
		{"product_id keeps that product's publications", publicationsrpc.SearchRequest{ProductID: "X"}, []string{"wallet", "strap", "bag"}},
		{"seller_id keeps that seller's publications", publicationsrpc.SearchRequest{SellerID: "A"}, []string{"film", "bag"}},
		{"status keeps that status", publicationsrpc.SearchRequest{Status: "active"}, []string{"lens", "strap", "bag"}},
		{"seller and status combine", publicationsrpc.SearchRequest{SellerID: "B", Status: "active"}, []string{"lens", "strap"}},
		{"product and status combine", publicationsrpc.SearchRequest{ProductID: "X", Status: "active"}, []string{"strap", "bag"}},
		{"a price range keeps USD prices within it, bounds included", publicationsrpc.SearchRequest{MinPrice: ptr[int64](1500), MaxPrice: ptr[int64](2500)}, []string{"wallet", "bag"}},
		{"a minimum price alone", publicationsrpc.SearchRequest{MinPrice: ptr[int64](2000)}, []string{"wallet", "film"}},
		{"a maximum price alone", publicationsrpc.SearchRequest{MaxPrice: ptr[int64](1000)}, []string{"strap"}},
		{"a price range in another currency", publicationsrpc.SearchRequest{MinPrice: ptr[int64](0), Currency: "EUR"}, []string{"lens"}},
		{"a price range with a status", publicationsrpc.SearchRequest{MaxPrice: ptr[int64](3000), Status: "active"}, []string{"strap", "bag"}},
		{"a query finds titles with any of its words", publicationsrpc.SearchRequest{Query: "leather"}, []string{"bag", "wallet"}},
		{"a query ignores case and accents", publicationsrpc.SearchRequest{Query: "LÉATHER"}, []string{"bag", "wallet"}},
		{"relevance ranks titles matching more words first", publicationsrpc.SearchRequest{Query: "film camera"}, []string{"film", "lens", "bag", "strap"}},
		{"a query with filters", publicationsrpc.SearchRequest{Query: "camera", SellerID: "B", Status: "active"}, []string{"strap", "lens"}},
		{"a query sorted newest", publicationsrpc.SearchRequest{Query: "camera", Sort: "newest"}, []string{"lens", "strap", "film", "bag"}},
		{"a query sorted by price", publicationsrpc.SearchRequest{Query: "camera", Sort: "price_asc"}, []string{"strap", "bag", "film", "lens"}},
		{"a query that matches nothing", publicationsrpc.SearchRequest{Query: "bicycle"}, []string{}},
		{"price_asc puts USD first, cheapest first, then other currencies", publicationsrpc.SearchRequest{Sort: "price_asc"}, []string{"strap", "bag", "wallet", "film", "lens"}},
		{"price_desc puts USD first, dearest first", publicationsrpc.SearchRequest{Sort: "price_desc"}, []string{"film", "wallet", "bag", "strap", "lens"}},
		{"price_asc in EUR puts EUR first", publicationsrpc.SearchRequest{Sort: "price_asc", Currency: "EUR"}, []string{"lens", "strap", "bag", "wallet", "film"}},
		{"price_asc with a product", publicationsrpc.SearchRequest{Sort: "price_asc", ProductID: "X"}, []string{"strap", "bag", "wallet"}},
		{"price_desc with a seller and status", publicationsrpc.SearchRequest{Sort: "price_desc", SellerID: "B", Status: "active"}, []string{"strap", "lens"}},
		{"price_asc with a price range", publicationsrpc.SearchRequest{Sort: "price_asc", MinPrice: ptr[int64](1000)}, []string{"bag", "wallet", "film"}},
		{"price_desc with a status", publicationsrpc.SearchRequest{Sort: "price_desc", Status: "active"}, []string{"bag", "strap", "lens"}},
		{"a product nobody sells", publicationsrpc.SearchRequest{ProductID: "Z"}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.search(t, tt.req); !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSearchRejectsPageTokensItDidNotIssue(t *testing.T) {
	c := newCatalog(t)
	_, next, err := c.s.Search(mustSearch(t, publicationsrpc.SearchRequest{PageSize: 2}))
	if err != nil || next == "" {
		t.Fatalf("first page: %q, %v", next, err)
	}
	tests := []struct {
		name  string
		req   publicationsrpc.SearchRequest
		token string
	}{
		{"not base64", publicationsrpc.SearchRequest{}, "!!!"},
		{"base64 of something else", publicationsrpc.SearchRequest{}, "aGVsbG8"},
		{"a token of another sort order", publicationsrpc.SearchRequest{Sort: "price_asc"}, next},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.PageToken = tt.token
			if _, _, err := c.s.Search(mustSearch(t, tt.req)); !errors.Is(err, store.ErrBadPageToken) {
				t.Fatalf("err = %v, want ErrBadPageToken", err)
			}
		})
	}
}

// TestPagingWhileInserting pages through every plan with small pages and
// creates publications between pages: every publication that existed at
// the start is seen exactly once, in order, and nothing is seen twice.
func TestPagingWhileInserting(t *testing.T) {
	plans := []struct {
		name string
		req  publicationsrpc.SearchRequest
	}{
		{"newest, whole bucket", publicationsrpc.SearchRequest{}},
		{"newest, by seller", publicationsrpc.SearchRequest{SellerID: "s1"}},
		{"newest, by seller and status", publicationsrpc.SearchRequest{SellerID: "s1", Status: "active"}},
		{"newest, by product", publicationsrpc.SearchRequest{ProductID: "p1"}},
		{"newest, by status", publicationsrpc.SearchRequest{Status: "active"}},
		{"newest, by price range", publicationsrpc.SearchRequest{MinPrice: ptr[int64](100)}},
		{"price_asc, price index", publicationsrpc.SearchRequest{Sort: "price_asc"}},
		{"price_desc, price index", publicationsrpc.SearchRequest{Sort: "price_desc"}},
		{"price_asc, price range", publicationsrpc.SearchRequest{Sort: "price_asc", MaxPrice: ptr[int64](5000)}},
		{"price_desc, by seller", publicationsrpc.SearchRequest{Sort: "price_desc", SellerID: "s1"}},
		{"price_asc, by product", publicationsrpc.SearchRequest{Sort: "price_asc", ProductID: "p1"}},
		{"relevance", publicationsrpc.SearchRequest{Query: "widget gadget"}},
		{"relevance with a status", publicationsrpc.SearchRequest{Query: "widget", Status: "active"}},
		{"price_desc with a query", publicationsrpc.SearchRequest{Query: "widget", Sort: "price_desc"}},
	}
	for _, plan := range plans {
		t.Run(plan.name, func(t *testing.T) {
			s := newStore(t)
			n := 0
			create := func() {
				n++
				title := "widget"
				if n%3 == 0 {
					title = "gadget widget"
				}
				cur := "USD"
				if n%7 == 0 {
					cur = "EUR"
				}
				mustCreate(t, s, spec{seller: "s1", product: "p1", title: fmt.Sprintf("%s %d", title, n),
					amount: int64(100 + (n*37)%50*100), currency: cur, qty: 1})
			}
			for range 40 {
				create()
			}
			q := mustSearch(t, plan.req)
			want, _, err := s.Search(func() publication.Search { w := q; w.PageSize = 100; return w }())
			if err != nil || len(want) != 40-countEUR(plan.req, 40) {
				t.Fatalf("all at once: %d items, %v", len(want), err)
			}
			seen := map[string]bool{}
			var got []string
			q.PageSize = 6
			for pages := 0; ; pages++ {
				if pages > 40 {
					t.Fatal("paging does not end")
				}
				ps, next, err := s.Search(q)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range ps {
					if seen[p.ID] {
						t.Fatalf("page %d repeats %s", pages, p.ID)
					}
					seen[p.ID] = true
					got = append(got, p.ID)
				}
				if next == "" {
					break
				}
				if len(ps) != q.PageSize {
					t.Fatalf("page %d has %d items and a next token", pages, len(ps))
				}
				create() // a newcomer between pages, at a price anywhere in the order
				create()
				q.PageToken = next
			}
			// Every original item, in the original relative order.
			var originals []string
			for _, id := range got {
				if slices.Contains(idsOf(want), id) {
					originals = append(originals, id)
				}
			}
			if !slices.Equal(originals, idsOf(want)) {
				t.Fatalf("paged %d originals in order %v,\nwant %d: %v", len(originals), originals, len(want), idsOf(want))
			}
		})
	}
}

// countEUR is how many of the first n test publications a USD price range leaves out.
func countEUR(r publicationsrpc.SearchRequest, n int) int {
	if r.MinPrice == nil && r.MaxPrice == nil {
		return 0
	}
	return n / 7
}

// TestSearchReadsOnlyWhatItsIndexGives checks the plans' cost: a selective
// filter reads its own publications, not the catalog.
func TestSearchReadsOnlyWhatItsIndexGives(t *testing.T) {
	s := newStore(t)
	for i := range 300 {
		mustCreate(t, s, spec{seller: "bulk", product: "common", title: "plain item", amount: int64(100 + i), qty: 1})
	}
	for i := range 3 {
		mustCreate(t, s, spec{seller: "few", product: "rare", title: "unusual zither", amount: int64(5000 + i), qty: 1, status: "paused"})
	}
	var reads int
	store.CountSearchReads(s, func(n int) { reads = n })
	tests := []struct {
		name     string
		req      publicationsrpc.SearchRequest
		maxReads int
	}{
		{"a seller's newest", publicationsrpc.SearchRequest{SellerID: "few"}, 3},
		{"a seller's by price", publicationsrpc.SearchRequest{SellerID: "few", Sort: "price_asc"}, 3},
		{"a product's newest", publicationsrpc.SearchRequest{ProductID: "rare"}, 3},
		{"a product's by price", publicationsrpc.SearchRequest{ProductID: "rare", Sort: "price_desc"}, 3},
		{"a status's newest", publicationsrpc.SearchRequest{Status: "paused"}, 3},
		{"a narrow price range", publicationsrpc.SearchRequest{MinPrice: ptr[int64](5000), MaxPrice: ptr[int64](6000)}, 3},
		{"a narrow price range by price", publicationsrpc.SearchRequest{MinPrice: ptr[int64](5000), Sort: "price_asc"}, 3},
		{"a rare word", publicationsrpc.SearchRequest{Query: "zither"}, 3},
		{"the first page of everything newest", publicationsrpc.SearchRequest{PageSize: 5}, 6},
		{"the first page of everything by price", publicationsrpc.SearchRequest{PageSize: 5, Sort: "price_desc"}, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reads = -1
			if _, _, err := s.Search(mustSearch(t, tt.req)); err != nil {
				t.Fatal(err)
			}
			if reads < 0 || reads > tt.maxReads {
				t.Fatalf("read %d publications, want at most %d", reads, tt.maxReads)
			}
		})
	}
	t.Run("a later page of everything newest starts at its token", func(t *testing.T) {
		q := mustSearch(t, publicationsrpc.SearchRequest{PageSize: 5})
		for range 10 {
			_, next, err := s.Search(q)
			if err != nil {
				t.Fatal(err)
			}
			q.PageToken = next
		}
		if reads > 6 {
			t.Fatalf("page 10 read %d publications", reads)
		}
	})
}
