// Package handler serves the publications RPC endpoints: decode, apply the
// domain rules, store, encode. Every write that changes a publication's
// price, quantity or status has its publication.changed event appended to
// the outbox by the store in the same transaction; the handler then wakes
// the relay.
package handler

import (
	"context"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
	"github.com/marketmesh/marketmesh/services/publications/internal/publication"
	"github.com/marketmesh/marketmesh/services/publications/internal/store"
)

// Notifier is told when new events are in the outbox.
type Notifier interface{ Notify() }

// Publications is the RPC handler; its type name makes endpoints
// "Publications.<Method>". Every exported method is an endpoint.
type Publications struct {
	store    *store.Store
	products ProductChecker
	relay    Notifier
	maxTTL   time.Duration
	now      func() time.Time
}

// New returns the handler. maxTTL bounds Reserve's ttl_seconds.
func New(s *store.Store, products ProductChecker, relay Notifier, maxTTL time.Duration) *Publications {
	return &Publications{store: s, products: products, relay: relay, maxTTL: maxTTL,
		now: func() time.Time { return time.Now().UTC() }}
}

func caller(ctx context.Context) (string, error) {
	if id := rpcmeta.Caller(ctx); id != "" {
		return id, nil
	}
	return "", errNoCaller
}

func toPublication(p publication.Publication) publicationsrpc.Publication {
	return publicationsrpc.Publication{
		ID: p.ID, SellerID: p.SellerID, ProductID: p.ProductID, Title: p.Title, Price: p.Price,
		Quantity: p.Quantity, Reserved: p.Reserved, Condition: p.Condition, Status: p.Status,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
	}
}

func toReservation(r publication.Reservation) publicationsrpc.Reservation {
	return publicationsrpc.Reservation{ID: r.ID, PublicationID: r.PublicationID, Quantity: r.Quantity, Status: r.Status, ExpiresAt: r.ExpiresAt,
		ProductID: r.ProductID, SellerID: r.SellerID, Title: r.Title, UnitPrice: r.UnitPrice}
}

// Create lists a product for sale; the caller is the seller and the product
// must exist. The publication starts active.
func (h *Publications) Create(ctx context.Context, req *publicationsrpc.CreateRequest, rsp *publicationsrpc.Publication) error {
	seller, err := caller(ctx)
	if err != nil {
		return err
	}
	p, err := publication.New(ulid.Make().String(), seller, publication.Draft{
		ProductID: req.ProductID, Title: req.Title, Price: req.Price, Quantity: req.Quantity, Condition: req.Condition,
	}, h.now())
	if err != nil {
		return rpcError(err)
	}
	if err := checkProduct(ctx, h.products, p.ProductID); err != nil {
		return rpcError(err)
	}
	// The event's ID and time are decided here, before the transaction.
	if err := h.store.Create(p, store.NewStamp(p.CreatedAt)); err != nil {
		return rpcError(err)
	}
	h.relay.Notify()
	*rsp = toPublication(p)
	return nil
}

// Get reads one publication.
func (h *Publications) Get(ctx context.Context, req *publicationsrpc.IDRequest, rsp *publicationsrpc.Publication) error {
	if err := publication.CheckID("id", req.ID); err != nil {
		return rpcError(err)
	}
	p, err := h.store.Get(req.ID)
	if err != nil {
		return rpcError(err)
	}
	*rsp = toPublication(p)
	return nil
}

// GetMany reads up to 100 publications; unknown IDs are left out, the rest
// come in request order (a repeated ID once).
func (h *Publications) GetMany(ctx context.Context, req *publicationsrpc.GetManyRequest, rsp *publicationsrpc.GetManyResponse) error {
	if err := publication.CheckIDs(req.IDs); err != nil {
		return rpcError(err)
	}
	ps, err := h.store.GetMany(req.IDs)
	if err != nil {
		return rpcError(err)
	}
	rsp.Items = make([]publicationsrpc.Publication, len(ps))
	for i, p := range ps {
		rsp.Items[i] = toPublication(p)
	}
	return nil
}

// Update changes price, quantity (the available units; held reservations
// are not affected) or status, for the seller only. A closed publication
// is final: any update of it is 409. An update that changes nothing
// answers the publication as it is.
func (h *Publications) Update(ctx context.Context, req *publicationsrpc.UpdateRequest, rsp *publicationsrpc.Publication) error {
	seller, err := caller(ctx)
	if err != nil {
		return err
	}
	if err := publication.CheckID("id", req.ID); err != nil {
		return rpcError(err)
	}
	patch := publication.Patch{Price: req.Price, Quantity: req.Quantity, Status: req.Status}
	if err := patch.Check(); err != nil { // 422 before 404, 403 or 409
		return rpcError(err)
	}
	now := h.now()
	p, changed, err := h.store.Update(req.ID, store.NewStamp(now), func(p *publication.Publication) error {
		if err := p.CheckOwner(seller); err != nil {
			return err
		}
		return p.Apply(patch, now)
	})
	if err != nil {
		return rpcError(err)
	}
	if changed {
		h.relay.Notify()
	}
	*rsp = toPublication(p)
	return nil
}

// Search filters, ranks and pages publications.
func (h *Publications) Search(ctx context.Context, req *publicationsrpc.SearchRequest, rsp *publicationsrpc.SearchResponse) error {
	q, err := publication.CheckSearch(*req)
	if err != nil {
		return rpcError(err)
	}
	ps, next, err := h.store.Search(q)
	if err != nil {
		return rpcError(err)
	}
	rsp.Items = make([]publicationsrpc.Publication, len(ps))
	for i, p := range ps {
		rsp.Items[i] = toPublication(p)
	}
	rsp.NextPageToken = next
	return nil
}

// Count counts a seller's publications, of one status if given.
func (h *Publications) Count(ctx context.Context, req *publicationsrpc.CountRequest, rsp *publicationsrpc.CountResponse) error {
	if err := publication.CheckCount(*req); err != nil {
		return rpcError(err)
	}
	n, err := h.store.CountBySeller(req.SellerID, req.Status)
	if err != nil {
		return rpcError(err)
	}
	rsp.Count = n
	return nil
}

// stockCaller is the one service allowed to move stock: its credential
// (plugins/svcauth) must prove it, whatever the metadata claims.
const stockCaller = ordersrpc.Service

// Reserve holds stock until ttl_seconds pass; the reservation ID makes it
// idempotent. Not enough stock, or a publication that is not active, is
// 409 (Id out_of_stock or publication_unavailable). Only the orders service
// may call it, and the stock calls below.
func (h *Publications) Reserve(ctx context.Context, req *publicationsrpc.ReserveRequest, rsp *publicationsrpc.Reservation) error {
	if err := svcauth.Require(ctx, id, "Publications.Reserve", stockCaller); err != nil {
		return err
	}
	if err := publication.CheckReserve(*req, int64(h.maxTTL/time.Second)); err != nil {
		return rpcError(err)
	}
	r, err := h.store.Reserve(req.ReservationID, req.PublicationID, req.Quantity, time.Duration(req.TTLSeconds)*time.Second, store.NewStamp(h.now()))
	if err != nil {
		return rpcError(err)
	}
	h.relay.Notify()
	*rsp = toReservation(r)
	return nil
}

// Commit turns a held reservation into a sale (idempotent); released or
// expired reservations are 409.
func (h *Publications) Commit(ctx context.Context, req *publicationsrpc.ReservationRequest, rsp *publicationsrpc.Reservation) error {
	return h.settle(ctx, "Publications.Commit", req, rsp, h.store.Commit)
}

// Release returns a held reservation's units (idempotent, also after it
// expired); a committed reservation is 409.
func (h *Publications) Release(ctx context.Context, req *publicationsrpc.ReservationRequest, rsp *publicationsrpc.Reservation) error {
	return h.settle(ctx, "Publications.Release", req, rsp, h.store.Release)
}

// Restock puts a committed reservation's units back on sale (an order
// cancelled after payment); idempotent. Held, released or expired
// reservations are 409.
func (h *Publications) Restock(ctx context.Context, req *publicationsrpc.ReservationRequest, rsp *publicationsrpc.Reservation) error {
	return h.settle(ctx, "Publications.Restock", req, rsp, h.store.Restock)
}

func (h *Publications) settle(ctx context.Context, endpoint string, req *publicationsrpc.ReservationRequest, rsp *publicationsrpc.Reservation, act func(string, store.Stamp) (publication.Reservation, error)) error {
	if err := svcauth.Require(ctx, id, endpoint, stockCaller); err != nil {
		return err
	}
	if err := publication.CheckID("reservation_id", req.ReservationID); err != nil {
		return rpcError(err)
	}
	r, err := act(req.ReservationID, store.NewStamp(h.now()))
	// A commit of a reservation whose time was up is a 409, but the expiry
	// it caused was written: wake the relay either way.
	h.relay.Notify()
	if err != nil {
		return rpcError(err)
	}
	*rsp = toReservation(r)
	return nil
}
