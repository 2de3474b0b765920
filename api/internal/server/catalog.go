package server

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/api/internal/fanout"
	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/apierror"
	"github.com/marketmesh/marketmesh/plugins/money"
)

type productBody struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Category    string            `json:"category"`
	Brand       string            `json:"brand"`
	Attributes  map[string]string `json:"attributes"`
}

func (a *API) createProduct(w http.ResponseWriter, r *http.Request) error {
	var b productBody
	if err := decodeJSON(w, r, a.opts.MaxBody, &b); err != nil {
		return err
	}
	if err := required([2]string{"name", b.Name}, [2]string{"category", b.Category}); err != nil {
		return err
	}
	p, err := a.products.Create(r.Context(), productsrpc.CreateRequest(b))
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/products/"+p.ID)
	writeJSON(w, http.StatusCreated, p)
	return nil
}

type productPatch struct {
	Name        *string            `json:"name"`
	Description *string            `json:"description"`
	Category    *string            `json:"category"`
	Brand       *string            `json:"brand"`
	Attributes  *map[string]string `json:"attributes"`
}

func (a *API) updateProduct(w http.ResponseWriter, r *http.Request) error {
	var b productPatch
	if err := decodeJSON(w, r, a.opts.MaxBody, &b); err != nil {
		return err
	}
	if b == (productPatch{}) {
		return apierror.New(http.StatusUnprocessableEntity, "nothing to update: send name, description, category, brand or attributes")
	}
	p, err := a.products.Update(r.Context(), productsrpc.UpdateRequest{ID: r.PathValue("id"),
		Name: b.Name, Description: b.Description, Category: b.Category, Brand: b.Brand, Attributes: b.Attributes})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (a *API) deleteProduct(w http.ResponseWriter, r *http.Request) error {
	if err := a.products.Delete(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

var productSorts = []string{productsrpc.SortRelevance, productsrpc.SortNewest, productsrpc.SortPriceAsc, productsrpc.SortPriceDesc, productsrpc.SortPopular}

func (a *API) searchProducts(w http.ResponseWriter, r *http.Request) error {
	q, size, token, err := listQuery(r)
	if err != nil {
		return err
	}
	req := productsrpc.SearchRequest{Query: q.Get("q"), Category: q.Get("category"), Brand: q.Get("brand"), PageSize: size, PageToken: token}
	if req.Sort, err = oneOf(q, "sort", productSorts); err != nil {
		return err
	}
	if req.MinPrice, req.MaxPrice, req.Currency, err = priceRange(q); err != nil {
		return err
	}
	page, err := a.products.Search(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (a *API) categories(w http.ResponseWriter, r *http.Request) error {
	c, err := a.products.Categories(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, c)
	return nil
}

// productPage is GET /v1/products/{id}: the product with its images and its
// active publications, cheapest first.
type productPage struct {
	Product      *productsrpc.Product          `json:"product"`
	Images       []imageView                   `json:"images"`
	Publications []publicationsrpc.Publication `json:"publications"`
	Partial      bool                          `json:"partial"`
	Unavailable  []string                      `json:"unavailable"`
}

func (a *API) getProduct(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var page productPage
	parts := fanout.New(r.Context())
	// The product is the core part: its error is the answer's. A product
	// that products does not know (never created, or deleted) is its 404
	// not_found, passed through as is, never a partial page; products down
	// (no instance, breaker open, timeout) is the client stack's 503.
	parts.Core("product", func(ctx context.Context) (err error) {
		page.Product, err = a.products.Get(ctx, productsrpc.GetRequest{ID: id, CountView: true})
		return err
	})
	parts.Optional("images", a.opts.PartTimeout, func(ctx context.Context) error {
		imgs, err := a.images.List(ctx, imagesrpc.ListRequest{OwnerType: imagesrpc.OwnerProduct, OwnerID: id, PageSize: 20})
		if err == nil {
			page.Images = imageViews(imgs.Items)
		}
		return err
	})
	parts.Optional("publications", a.opts.PartTimeout, func(ctx context.Context) error {
		pubs, err := a.publications.Search(ctx, publicationsrpc.SearchRequest{ProductID: id, Status: publicationsrpc.StatusActive,
			Sort: publicationsrpc.SortPriceAsc, PageSize: 20})
		if err == nil {
			page.Publications = pubs.Items
		}
		return err
	})
	if err := parts.Wait(); err != nil {
		return err
	}
	page.Partial, page.Unavailable = parts.Missing()
	page.Images, page.Publications, page.Unavailable = nonNil(page.Images), nonNil(page.Publications), nonNil(page.Unavailable)
	writeJSON(w, http.StatusOK, page)
	return nil
}

// publicationBody is POST /v1/publications; Quantity is a pointer so that
// a missing or null quantity is refused while an explicit 0 is kept.
type publicationBody struct {
	ProductID string      `json:"product_id"`
	Title     string      `json:"title"`
	Price     money.Money `json:"price"`
	Quantity  *int64      `json:"quantity"`
	Condition string      `json:"condition"`
}

func (a *API) createPublication(w http.ResponseWriter, r *http.Request) error {
	var b publicationBody
	if err := decodeJSON(w, r, a.opts.MaxBody, &b); err != nil {
		return err
	}
	if err := required([2]string{"product_id", b.ProductID}, [2]string{"title", b.Title}, [2]string{"condition", b.Condition}); err != nil {
		return err
	}
	if b.Quantity == nil {
		return apierror.New(http.StatusUnprocessableEntity, "quantity is required")
	}
	p, err := a.publications.Create(r.Context(), publicationsrpc.CreateRequest{ProductID: b.ProductID, Title: b.Title,
		Price: b.Price, Quantity: *b.Quantity, Condition: b.Condition})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/publications/"+p.ID)
	writeJSON(w, http.StatusCreated, p)
	return nil
}

type publicationPatch struct {
	Price    *money.Money `json:"price"`
	Quantity *int64       `json:"quantity"`
	Status   *string      `json:"status"`
}

func (a *API) updatePublication(w http.ResponseWriter, r *http.Request) error {
	var b publicationPatch
	if err := decodeJSON(w, r, a.opts.MaxBody, &b); err != nil {
		return err
	}
	if b == (publicationPatch{}) {
		return apierror.New(http.StatusUnprocessableEntity, "nothing to update: send price, quantity or status")
	}
	p, err := a.publications.Update(r.Context(), publicationsrpc.UpdateRequest{ID: r.PathValue("id"), Price: b.Price, Quantity: b.Quantity, Status: b.Status})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

var (
	publicationSorts    = []string{publicationsrpc.SortRelevance, publicationsrpc.SortNewest, publicationsrpc.SortPriceAsc, publicationsrpc.SortPriceDesc}
	publicationStatuses = []string{publicationsrpc.StatusActive, publicationsrpc.StatusPaused, publicationsrpc.StatusClosed}
)

func (a *API) searchPublications(w http.ResponseWriter, r *http.Request) error {
	q, size, token, err := listQuery(r)
	if err != nil {
		return err
	}
	req := publicationsrpc.SearchRequest{Query: q.Get("q"), ProductID: q.Get("product_id"), SellerID: q.Get("seller_id"), PageSize: size, PageToken: token}
	if req.Sort, err = oneOf(q, "sort", publicationSorts); err != nil {
		return err
	}
	if req.Status, err = oneOf(q, "status", publicationStatuses); err != nil {
		return err
	}
	if req.MinPrice, req.MaxPrice, req.Currency, err = priceRange(q); err != nil {
		return err
	}
	page, err := a.publications.Search(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// publicationPage is GET /v1/publications/{id}: the listing with its product,
// images and the seller's public profile.
type publicationPage struct {
	Publication *publicationsrpc.Publication `json:"publication"`
	Product     *productsrpc.Product         `json:"product"`
	Images      []imageView                  `json:"images"`
	Seller      *usersrpc.PublicProfile      `json:"seller"`
	Partial     bool                         `json:"partial"`
	Unavailable []string                     `json:"unavailable"`
}

func (a *API) getPublication(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var page publicationPage
	// The images need only the ID, so they load alongside the publication;
	// product and seller need the publication's fields, so they follow it,
	// in parallel with each other.
	parts := fanout.New(r.Context())
	parts.Core("publication", func(ctx context.Context) (err error) {
		page.Publication, err = a.publications.Get(ctx, id)
		return err
	})
	parts.Optional("images", a.opts.PartTimeout, func(ctx context.Context) error {
		imgs, err := a.images.List(ctx, imagesrpc.ListRequest{OwnerType: imagesrpc.OwnerPublication, OwnerID: id, PageSize: 20})
		if err == nil {
			page.Images = imageViews(imgs.Items)
		}
		return err
	})
	if err := parts.Wait(); err != nil {
		return err
	}
	pub := page.Publication
	more := fanout.New(r.Context())
	more.Optional("product", a.opts.PartTimeout, func(ctx context.Context) (err error) {
		page.Product, err = a.products.Get(ctx, productsrpc.GetRequest{ID: pub.ProductID})
		return gone(err) // a deleted product is "product": null, not an outage
	})
	more.Optional("seller", a.opts.PartTimeout, func(ctx context.Context) (err error) {
		page.Seller, err = a.users.Profile(ctx, pub.SellerID)
		return err
	})
	_ = more.Wait() // optional parts only
	_, first := parts.Missing()
	_, second := more.Missing()
	page.Unavailable = append(first, second...)
	page.Partial = len(page.Unavailable) > 0
	page.Images, page.Unavailable = nonNil(page.Images), nonNil(page.Unavailable)
	writeJSON(w, http.StatusOK, page)
	return nil
}

// gone turns a part's "not found" into no error: the thing was deleted, and
// the page shows it absent rather than reporting the part unavailable.
func gone(err error) error {
	var me *merrors.Error
	if errors.As(err, &me) && me.Code == http.StatusNotFound {
		return nil
	}
	return err
}

func oneOf(q url.Values, name string, allowed []string) (string, error) {
	v := q.Get(name)
	if v == "" {
		return "", nil
	}
	for _, a := range allowed {
		if v == a {
			return v, nil
		}
	}
	return "", apierror.New(http.StatusBadRequest, name+" must be one of "+strings.Join(allowed, ", "))
}

// priceRange reads min_price and max_price (minor units) and currency.
func priceRange(q url.Values) (*int64, *int64, string, error) {
	parse := func(name string) (*int64, error) {
		v := q.Get(name)
		if v == "" {
			return nil, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > money.MaxAmount {
			return nil, apierror.New(http.StatusBadRequest, name+" must be a non-negative integer amount in minor units (1999 = 19.99)")
		}
		return &n, nil
	}
	minP, err := parse("min_price")
	if err != nil {
		return nil, nil, "", err
	}
	maxP, err := parse("max_price")
	if err != nil {
		return nil, nil, "", err
	}
	if minP != nil && maxP != nil && *minP > *maxP {
		return nil, nil, "", apierror.New(http.StatusBadRequest, "min_price must not exceed max_price")
	}
	cur := q.Get("currency")
	if cur != "" && !money.IsCurrency(cur) {
		return nil, nil, "", apierror.New(http.StatusBadRequest, "currency must be an ISO 4217 code like USD")
	}
	return minP, maxP, cur, nil
}

// nonNil makes a nil list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
