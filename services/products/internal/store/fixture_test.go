package store_test

import (
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/services/products/internal/product"
	"github.com/marketmesh/marketmesh/services/products/internal/store"
)

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func openStore(t testing.TB, path string) *store.Store {
	t.Helper()
	s, err := store.Open(path)
	if err != nil {
		t.Fatalf("Open(%s) = %v", path, err)
	}
	return s
}

func newStore(t testing.TB) (*store.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "products", "products.db")
	s := openStore(t, path)
	t.Cleanup(func() { s.Close() })
	return s, path
}

// spec describes a product to create; zero fields get defaults.
type spec struct {
	name, desc, category, brand, creator string
}

func newProduct(t testing.TB, sp spec) product.Product {
	t.Helper()
	if sp.category == "" {
		sp.category = "misc"
	}
	if sp.creator == "" {
		sp.creator = "user-1"
	}
	p, err := product.New(ulid.Make().String(), sp.creator, product.Draft{
		Name: sp.name, Description: sp.desc, Category: sp.category, Brand: sp.brand,
	}, t0)
	if err != nil {
		t.Fatalf("product.New(%+v) = %v", sp, err)
	}
	return p
}

func create(t testing.TB, s *store.Store, sp spec) product.Product {
	t.Helper()
	p := newProduct(t, sp)
	if err := s.Create(p); err != nil {
		t.Fatalf("Create(%s) = %v", sp.name, err)
	}
	return p
}

// createMany creates products concurrently, as concurrent requests would:
// db.Batch commits them together. IDs (and so "newest") follow specs' order.
func createMany(t testing.TB, s *store.Store, specs []spec) []product.Product {
	t.Helper()
	ps := make([]product.Product, len(specs))
	for i, sp := range specs {
		ps[i] = newProduct(t, sp)
	}
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i := range ps {
		wg.Go(func() { errs[i] = s.Create(ps[i]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("Create = %v", err)
	}
	return ps
}

// listing is an active or inactive publication of a product.
type listing struct {
	productID, pub string
	amount         int64
	currency       string
	active         bool
}

// priceMany applies publication states in one transaction.
func priceMany(t testing.TB, s *store.Store, ls []listing) {
	t.Helper()
	err := s.Bolt().Update(func(tx *bolt.Tx) error {
		for _, l := range ls {
			_, err := store.ApplyPublication(tx, product.PublicationPrice{
				PublicationID: l.pub, ProductID: l.productID, Price: money.Money{Amount: l.amount, Currency: l.currency}, Active: l.active,
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ApplyPublication = %v", err)
	}
}

// price records an active publication of productID at amount in currency
// (publication ID pub), as the events consumer does.
func price(t testing.TB, s *store.Store, productID, pub string, amount int64, currency string, active bool) bool {
	t.Helper()
	var known bool
	err := s.Bolt().Update(func(tx *bolt.Tx) (err error) {
		known, err = store.ApplyPublication(tx, product.PublicationPrice{
			PublicationID: pub, ProductID: productID, Price: money.Money{Amount: amount, Currency: currency}, Active: active,
		})
		return err
	})
	if err != nil {
		t.Fatalf("ApplyPublication = %v", err)
	}
	return known
}

func query(t testing.TB, q product.Query) product.Query {
	t.Helper()
	n, err := q.Normalize()
	if err != nil {
		t.Fatalf("Normalize(%+v) = %v", q, err)
	}
	return n
}

func search(t testing.TB, s *store.Store, q product.Query) ([]product.Product, string) {
	t.Helper()
	items, next, err := s.Search(query(t, q))
	if err != nil {
		t.Fatalf("Search(%+v) = %v", q, err)
	}
	return items, next
}

// all pages through q and returns every item's ID in order.
func all(t testing.TB, s *store.Store, q product.Query) []string {
	t.Helper()
	var ids []string
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("paging does not end")
		}
		items, next := search(t, s, q)
		for _, p := range items {
			ids = append(ids, p.ID)
		}
		if next == "" {
			return ids
		}
		q.PageToken = next
	}
}

func ids(ps ...product.Product) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

func names(t testing.TB, s *store.Store, got []string) []string {
	t.Helper()
	out := make([]string, len(got))
	for i, id := range got {
		p, err := s.Get(id, false)
		if err != nil {
			t.Fatalf("Get(%s) = %v", id, err)
		}
		out[i] = p.Name
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func i64(v int64) *int64 { return &v }
