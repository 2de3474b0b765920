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

	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
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

func toPublication(p store.Publication) publicationsrpc.Publication {
	return publicationsrpc.Publication{
		ID: p.ID, SellerID: p.SellerID, ProductID: p.ProductID, Title: p.Title, Price: p.Price,
		Quantity: p.Quantity, Reserved: p.Reserved, Condition: p.Condition, Status: p.Status,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
	}
}

func toReservation(r store.Reservation) publicationsrpc.Reservation {
	return publicationsrpc.Reservation{ID: r.ID, PublicationID: r.PublicationID, Quantity: r.Quantity, Status: r.Status, ExpiresAt: r.ExpiresAt}
}

// Create lists a product for sale; the caller is the seller and the product
// must exist. The publication starts active.
func (h *Publications) Create(ctx context.Context, req *publicationsrpc.CreateRequest, rsp *publicationsrpc.Publication) error {
	seller, err := caller(ctx)
	if err != nil {
		return err
	}
	in, err := publication.CheckCreate(*req)
	if err != nil {
		return rpcError(err)
	}
	if err := checkProduct(ctx, h.products, in.ProductID); err != nil {
		return rpcError(err)
	}
	now := h.now()
	p := store.Publication{
		ID: ulid.Make().String(), SellerID: seller, ProductID: in.ProductID, Title: in.Title, Price: in.Price,
		Quantity: in.Quantity, Condition: in.Condition, Status: publicationsrpc.StatusActive, CreatedAt: now, UpdatedAt: now,
	}
	if err := h.store.Create(p); err != nil {
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
	if err := publication.CheckUpdate(*req); err != nil {
		return rpcError(err)
	}
	now := h.now()
	p, changed, err := h.store.Update(req.ID, func(p *store.Publication) error {
		if p.SellerID != seller {
			return publication.NotOwner(p.ID)
		}
		if err := publication.CheckTransition(p.ID, p.Status); err != nil {
			return err
		}
		if req.Price != nil {
			p.Price = *req.Price
		}
		if req.Quantity != nil {
			p.Quantity = *req.Quantity
		}
		if req.Status != nil {
			p.Status = *req.Status
		}
		p.UpdatedAt = now
		return nil
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

// Reserve holds stock until ttl_seconds pass; the reservation ID makes it
// idempotent. Not enough stock, or a publication that is not active, is
// 409. Stock calls come from the orders service, with or without a caller.
func (h *Publications) Reserve(ctx context.Context, req *publicationsrpc.ReserveRequest, rsp *publicationsrpc.Reservation) error {
	if err := publication.CheckReserve(*req, int64(h.maxTTL/time.Second)); err != nil {
		return rpcError(err)
	}
	r, err := h.store.Reserve(req.ReservationID, req.PublicationID, req.Quantity, time.Duration(req.TTLSeconds)*time.Second, h.now())
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
	return h.settle(req, rsp, h.store.Commit)
}

// Release returns a held reservation's units (idempotent, also after it
// expired); a committed reservation is 409.
func (h *Publications) Release(ctx context.Context, req *publicationsrpc.ReservationRequest, rsp *publicationsrpc.Reservation) error {
	return h.settle(req, rsp, h.store.Release)
}

func (h *Publications) settle(req *publicationsrpc.ReservationRequest, rsp *publicationsrpc.Reservation, act func(string, time.Time) (store.Reservation, error)) error {
	if err := publication.CheckID("reservation_id", req.ReservationID); err != nil {
		return rpcError(err)
	}
	r, err := act(req.ReservationID, h.now())
	// A commit of a reservation whose time was up is a 409, but the expiry
	// it caused was written: wake the relay either way.
	h.relay.Notify()
	if err != nil {
		return rpcError(err)
	}
	*rsp = toReservation(r)
	return nil
}
