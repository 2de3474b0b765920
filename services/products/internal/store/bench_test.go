package store

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/services/products/internal/product"
)

// Word lists for realistic catalog entries.
var (
	benchTree = map[string]map[string][]string{ // top → sub → nouns
		"electronics": {"audio": {"headphones", "earbuds", "speaker", "soundbar", "amplifier"},
			"phones":    {"smartphone", "phone case", "charger", "screen protector"},
			"computers": {"laptop", "keyboard", "mouse", "monitor", "webcam", "router"}},
		"home": {"kitchen": {"kettle", "toaster", "blender", "knife set", "frying pan"},
			"furniture": {"chair", "desk", "bookshelf", "sofa", "lamp"},
			"bedding":   {"pillow", "duvet", "sheet set", "blanket"}},
		"sports": {"running": {"running shoes", "shorts", "water bottle", "armband"},
			"cycling": {"helmet", "bike light", "saddle", "pump"},
			"fitness": {"yoga mat", "dumbbell", "kettlebell", "resistance band"}},
		"fashion": {"men": {"jacket", "shirt", "jeans", "sneakers", "watch"},
			"women": {"dress", "handbag", "boots", "scarf", "sunglasses"},
			"kids":  {"hoodie", "backpack", "raincoat", "sandals"}},
		"toys": {"building": {"brick set", "marble run", "construction kit"},
			"outdoor": {"kite", "water gun", "frisbee", "trampoline"},
			"games":   {"board game", "puzzle", "card game", "chess set"}},
		"garden": {"tools": {"shovel", "pruner", "rake", "hose"},
			"plants":         {"planter", "seed kit", "fertilizer"},
			"outdoor-living": {"parasol", "grill", "hammock", "fire pit"}},
		"books":  {"fiction": {"novel", "thriller", "anthology"}, "non-fiction": {"cookbook", "biography", "atlas"}},
		"beauty": {"skincare": {"moisturizer", "serum", "sunscreen"}, "hair": {"hair dryer", "shampoo", "straightener"}},
		"office": {"paper": {"notebook", "planner", "sticky notes"}, "supplies": {"stapler", "pen set", "desk organizer"}},
		"pets":   {"dogs": {"dog bed", "leash", "chew toy"}, "cats": {"scratching post", "litter box", "cat tree"}},
	}
	benchAdjectives = strings.Fields("wireless portable compact premium classic ergonomic smart professional lightweight " +
		"waterproof foldable rechargeable vintage modern deluxe mini ultra slim heavy-duty organic eco quiet " +
		"adjustable cordless digital magnetic insulated durable soft stainless")
	benchColors = strings.Fields("black white silver red blue green grey navy beige pink gold oak walnut bamboo steel")
	benchFiller = strings.Fields("perfect for everyday use with a two year warranty designed tested comfortable fast " +
		"shipping gift idea easy to clean long lasting battery high quality materials fits most sizes includes")
)

type benchCatalog struct {
	paths  []string // leaf categories
	nouns  map[string][]string
	brands []string
}

func newBenchCatalog(rng *rand.Rand) benchCatalog {
	c := benchCatalog{nouns: map[string][]string{}}
	for top, subs := range benchTree {
		for sub, nouns := range subs {
			p := top + "/" + sub
			c.paths = append(c.paths, p)
			c.nouns[p] = nouns
		}
	}
	slices.Sort(c.paths) // map order is random: sort for a deterministic catalog
	syll := strings.Fields("ac me zo ra tek vo lux na pri ma ko on ex is ul ta ber gen")
	for range 300 {
		b := syll[rng.IntN(len(syll))] + syll[rng.IntN(len(syll))]
		if rng.IntN(2) == 0 {
			b += syll[rng.IntN(len(syll))]
		}
		c.brands = append(c.brands, strings.ToUpper(b[:1])+b[1:])
	}
	return c
}

func (c benchCatalog) record(rng *rand.Rand, id string, now time.Time) productRecord {
	path := c.paths[rng.IntN(len(c.paths))]
	if rng.IntN(5) == 0 { // some products sit one level deeper
		path += fmt.Sprintf("/line-%d", rng.IntN(4))
	}
	nouns := c.nouns[strings.Join(strings.SplitN(path, "/", 3)[:2], "/")]
	brand := c.brands[int(rng.ExpFloat64()*40)%len(c.brands)] // a few big brands, a long tail
	name := fmt.Sprintf("%s %s %s %s %c%d", brand, benchAdjectives[rng.IntN(len(benchAdjectives))],
		benchColors[rng.IntN(len(benchColors))], nouns[rng.IntN(len(nouns))], 'A'+rune(rng.IntN(26)), 100+rng.IntN(900))
	desc := make([]string, 12+rng.IntN(20))
	for i := range desc {
		switch rng.IntN(6) {
		case 0:
			desc[i] = benchAdjectives[rng.IntN(len(benchAdjectives))]
		case 1:
			desc[i] = nouns[rng.IntN(len(nouns))]
		default:
			desc[i] = benchFiller[rng.IntN(len(benchFiller))]
		}
	}
	return productRecord{ID: id, Name: name, Description: strings.Join(desc, " "), Category: path, Brand: brand,
		Attributes: map[string]string{"color": benchColors[rng.IntN(len(benchColors))]}, CreatorID: "seller",
		CreatedAt: now, UpdatedAt: now}
}

// seedBench fills a new store with n products, priced (most in USD, some in
// EUR too) and viewed, in large unsynced transactions.
func seedBench(b *testing.B, n int) *Store {
	b.Helper()
	start := time.Now()
	s, err := Open(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	s.db.NoSync = true // the seed only; fsync once at the end
	rng := rand.New(rand.NewPCG(42, uint64(n)))
	entropy := rand.NewChaCha8([32]byte{42}) // ULID entropy, deterministic
	cat := newBenchCatalog(rng)
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	// Moderate transactions: bbolt splits nodes only at commit, so a huge
	// transaction of random inserts keeps memmoving ever larger nodes.
	const chunk = 1000
	for done := 0; done < n; done += chunk {
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i := done; i < min(done+chunk, n); i++ {
				at := base.Add(time.Duration(i) * time.Minute)
				id := ulid.MustNew(ulid.Timestamp(at), entropy).String()
				rec := cat.record(rng, id, at)
				raw, err := json.Marshal(rec)
				if err != nil {
					return err
				}
				if err := insert(tx, rec, raw); err != nil {
					return err
				}
				for pub := range rng.IntN(4) { // 0..3 publications
					cur := "USD"
					if rng.IntN(4) == 0 {
						cur = "EUR"
					}
					if _, err := ApplyPublication(tx, product.PublicationPrice{PublicationID: fmt.Sprint(pub), ProductID: id,
						Price: money.Money{Amount: 500 + rng.Int64N(200000), Currency: cur}, Active: rng.IntN(6) > 0}); err != nil {
						return err
					}
				}
				if v := int(rng.ExpFloat64() * 20); v > 0 {
					s.views.pending[id] += uint64(v)
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.FlushViews(); err != nil {
			b.Fatal(err)
		}
	}
	s.db.NoSync = false
	if err := s.db.Sync(); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d products in %v", n, time.Since(start).Round(time.Millisecond))
	return s
}

// BenchmarkSearch measures first pages (20 items) of typical queries over
// 10k and 100k products. Each catalog is built once and shared by its cases.
func BenchmarkSearch(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("products=%d", n), func(b *testing.B) {
			s := seedBench(b, n)
			usd := func(v int64) *int64 { return &v }
			cases := []struct {
				name string
				q    product.Query
			}{
				{"text_2_words", product.Query{Text: "wireless headphones"}},
				{"text_phone_camera", product.Query{Text: "phone camera"}},
				{"category_price_asc", product.Query{Category: "electronics", Sort: product.SortPriceAsc}},
				{"newest", product.Query{}},
				// More shapes, for context.
				{"text_2_words_page_2", product.Query{Text: "wireless headphones"}},
				{"subcategory_price_asc", product.Query{Category: "electronics/audio", Sort: product.SortPriceAsc}},
				{"category_newest", product.Query{Category: "electronics"}},
				{"popular", product.Query{Sort: product.SortPopular}},
				{"brand_price_range_popular", product.Query{Brand: s.someBrand(b), MinPrice: usd(10000), MaxPrice: usd(50000), Sort: product.SortPopular}},
				{"text_category_price_desc", product.Query{Text: "stainless kettle", Category: "home", Sort: product.SortPriceDesc}},
			}
			for _, c := range cases {
				q, err := c.q.Normalize()
				if err != nil {
					b.Fatal(err)
				}
				if strings.HasSuffix(c.name, "_page_2") {
					_, next, err := s.Search(q)
					if err != nil || next == "" {
						b.Fatalf("first page: %v, next %q", err, next)
					}
					q.PageToken = next
				}
				items, _, err := s.Search(q)
				if err != nil || len(items) == 0 {
					b.Fatalf("%s: %d items, %v", c.name, len(items), err)
				}
				b.Run(c.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if _, _, err := s.Search(q); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}

// BenchmarkGet measures reading one product (the product page) from 10k,
// with and without counting the view.
func BenchmarkGet(b *testing.B) {
	s := seedBench(b, 10_000)
	items, _, err := s.Search(product.Query{Sort: product.SortNewest, PageSize: 1})
	if err != nil || len(items) == 0 {
		b.Fatal(err)
	}
	id := items[0].ID
	for _, count := range []bool{false, true} {
		b.Run(fmt.Sprintf("products=10000/count=%v", count), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Get(id, count); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// someBrand is a brand with a few hundred products at most: the most common
// brand of the newest products, whatever the seed produced.
func (s *Store) someBrand(b *testing.B) string {
	items, _, err := s.Search(product.Query{Sort: product.SortNewest, Currency: "USD", PageSize: 1})
	if err != nil || len(items) == 0 {
		b.Fatal(err)
	}
	return items[0].Brand
}
