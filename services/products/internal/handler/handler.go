// Package handler serves the products RPC endpoints: decode, apply the
// domain rules, store, encode. Writes act for the caller in RPC metadata;
// reads are open to anyone.
package handler

import (
	"context"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/services/products/internal/product"
	"github.com/marketmesh/marketmesh/services/products/internal/store"
)

// Notifier is told when new events are in the outbox (the events relay).
type Notifier interface{ Notify() }

// Products is the RPC handler; its type name makes endpoints "Products.<Method>".
type Products struct {
	store *store.Store
	relay Notifier
	now   func() time.Time
}

// New returns the handler; relay is woken after a write appended an event.
func New(s *store.Store, relay Notifier) *Products {
	return &Products{store: s, relay: relay, now: func() time.Time { return time.Now().UTC() }}
}

func caller(ctx context.Context) (string, error) {
	if id := rpcmeta.Caller(ctx); id != "" {
		return id, nil
	}
	return "", errNoCaller
}

func notFound(id string) string { return "product " + id + " not found" }

func toProduct(p product.Product) productsrpc.Product {
	if p.LowestPrices == nil {
		p.LowestPrices = []money.Money{} // JSON [] rather than null
	}
	return productsrpc.Product{
		ID: p.ID, Name: p.Name, Description: p.Description, Category: p.Category, Brand: p.Brand,
		Attributes: p.Attributes, CreatorID: p.CreatorID, ViewCount: p.ViewCount, LowestPrices: p.LowestPrices,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
	}
}

// Create adds a product; the caller becomes its creator.
func (h *Products) Create(ctx context.Context, req *productsrpc.CreateRequest, rsp *productsrpc.Product) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	p, err := product.New(ulid.Make().String(), uid, product.Draft{
		Name: req.Name, Description: req.Description, Category: req.Category, Brand: req.Brand, Attributes: req.Attributes,
	}, h.now())
	if err != nil {
		return rpcError(err, "")
	}
	if err := h.store.Create(p); err != nil {
		return rpcError(err, "")
	}
	*rsp = toProduct(p)
	return nil
}

// Get reads one product; CountView records a view (batched in memory).
func (h *Products) Get(ctx context.Context, req *productsrpc.GetRequest, rsp *productsrpc.Product) error {
	if err := product.CheckID(req.ID); err != nil {
		return rpcError(err, "")
	}
	p, err := h.store.Get(req.ID, req.CountView)
	if err != nil {
		return rpcError(err, notFound(req.ID))
	}
	*rsp = toProduct(p)
	return nil
}

// Update changes a product; only its creator may.
func (h *Products) Update(ctx context.Context, req *productsrpc.UpdateRequest, rsp *productsrpc.Product) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	if err := product.CheckID(req.ID); err != nil {
		return rpcError(err, "")
	}
	patch := product.Patch{Name: req.Name, Description: req.Description, Category: req.Category, Brand: req.Brand, Attributes: req.Attributes}
	p, err := h.store.Update(req.ID, func(p *product.Product) error {
		if err := p.CheckEditor(uid); err != nil {
			return err
		}
		return p.Apply(patch, h.now())
	})
	if err != nil {
		return rpcError(err, notFound(req.ID))
	}
	*rsp = toProduct(p)
	return nil
}

// Delete removes a product; only its creator may. product.deleted is
// appended to the outbox in the same transaction, so the publications
// service closes the product's publications; its ID and time (the deletion
// time) are decided here, before the transaction.
func (h *Products) Delete(ctx context.Context, req *productsrpc.IDRequest, _ *productsrpc.Empty) error {
	uid, err := caller(ctx)
	if err != nil {
		return err
	}
	if err := product.CheckID(req.ID); err != nil {
		return rpcError(err, "")
	}
	err = h.store.Delete(req.ID, h.now(), ulid.Make().String(), func(p product.Product) error { return p.CheckEditor(uid) })
	if err != nil {
		return rpcError(err, notFound(req.ID))
	}
	h.relay.Notify() // product.deleted is in the outbox
	return nil
}

// Search filters, ranks and pages the catalog.
func (h *Products) Search(ctx context.Context, req *productsrpc.SearchRequest, rsp *productsrpc.SearchResponse) error {
	q, err := product.Query{
		Text: req.Query, Category: req.Category, Brand: req.Brand, MinPrice: req.MinPrice, MaxPrice: req.MaxPrice,
		Currency: req.Currency, Sort: req.Sort, PageSize: req.PageSize, PageToken: req.PageToken,
	}.Normalize()
	if err != nil {
		return rpcError(err, "")
	}
	items, next, err := h.store.Search(q)
	if err != nil {
		return rpcError(err, "")
	}
	rsp.Items = make([]productsrpc.Product, len(items))
	for i, p := range items {
		rsp.Items[i] = toProduct(p)
	}
	rsp.NextPageToken = next
	return nil
}

// Categories returns the category tree with counts.
func (h *Products) Categories(ctx context.Context, _ *productsrpc.Empty, rsp *productsrpc.CategoriesResponse) error {
	tree, err := h.store.Categories()
	if err != nil {
		return rpcError(err, "")
	}
	rsp.Categories = toCategories(tree)
	return nil
}

func toCategories(cs []product.Category) []productsrpc.Category {
	out := make([]productsrpc.Category, len(cs))
	for i, c := range cs {
		out[i] = productsrpc.Category{Name: c.Name, Path: c.Path, Count: c.Count, Children: toCategories(c.Children)}
	}
	return out
}
