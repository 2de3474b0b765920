// Package handler serves the orders RPC endpoints: decode, apply the domain
// rules (internal/order), store or drive the saga, encode. Writes that move
// money are idempotent by the caller's Idempotency-Key (from RPC metadata),
// recorded in the same transaction as their effect.
package handler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/oklog/ulid/v2"
	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/services/orders/internal/fault"
	"github.com/marketmesh/marketmesh/services/orders/internal/order"
	"github.com/marketmesh/marketmesh/services/orders/internal/payment"
	"github.com/marketmesh/marketmesh/services/orders/internal/saga"
	"github.com/marketmesh/marketmesh/services/orders/internal/store"
)

// Catalog reads publications (to refuse an order or a cart line that cannot
// be bought before anything is reserved).
type Catalog interface {
	Get(ctx context.Context, id string) (*publicationsrpc.Publication, error)
	GetMany(ctx context.Context, ids []string) (*publicationsrpc.GetManyResponse, error)
}

// Orders is the RPC handler; its type name makes endpoints "Orders.<Method>".
type Orders struct {
	store   *store.Store
	saga    *saga.Saga
	catalog Catalog
	now     func() time.Time
}

// New returns the handler.
func New(s *store.Store, sg *saga.Saga, catalog Catalog) *Orders {
	return &Orders{store: s, saga: sg, catalog: catalog, now: func() time.Time { return time.Now().UTC() }}
}

func caller(ctx context.Context) (string, error) {
	if id := rpcmeta.Caller(ctx); id != "" {
		return id, nil
	}
	return "", errNoCaller
}

// Create places an order and runs its saga before answering.
func (h *Orders) Create(ctx context.Context, req *ordersrpc.CreateRequest, rsp *ordersrpc.Order) error {
	return h.place(ctx, "Create", req, order.Draft{Items: req.Items, Payment: req.Payment, Address: req.ShippingAddress}, rsp)
}

// Checkout places an order for the caller's cart.
func (h *Orders) Checkout(ctx context.Context, req *ordersrpc.CheckoutRequest, rsp *ordersrpc.Order) error {
	return h.place(ctx, "Checkout", req, order.Draft{Payment: req.Payment, Address: req.ShippingAddress, FromCart: true}, rsp)
}

func (h *Orders) place(ctx context.Context, endpoint string, req any, d order.Draft, rsp *ordersrpc.Order) error {
	buyer, err := caller(ctx)
	if err != nil {
		return err
	}
	out, err := h.idempotent(ctx, buyer, endpoint, req, func(idem *store.Idempotency) (ordersrpc.Order, error) {
		if d.FromCart {
			c, err := h.store.Cart(buyer)
			if err != nil {
				return ordersrpc.Order{}, err
			}
			if d.Items, err = c.Draft(); err != nil {
				return ordersrpc.Order{}, err
			}
		}
		o, err := order.New(ulid.Make().String(), buyer, d, h.now())
		if err != nil {
			return ordersrpc.Order{}, err
		}
		if err := h.saga.Provider().CheckToken(d.Payment.CardToken); err != nil {
			return ordersrpc.Order{}, err
		}
		listings, err := h.listings(ctx, d.Items)
		if err != nil {
			return ordersrpc.Order{}, err
		}
		if err := o.Precheck(listings); err != nil {
			return ordersrpc.Order{}, err
		}
		if idem != nil {
			idem.OrderID, o.IdempotencyKey = o.ID, idem.Key
		}
		o, err = h.saga.Place(ctx, o, idem)
		if err != nil {
			return ordersrpc.Order{}, err
		}
		return h.finish(o, idem)
	})
	if err != nil {
		return rpcError(err)
	}
	if fault.Fire("drop_reply") {
		// Tests: the order is made but its answer never reaches the caller,
		// as when a connection drops; the caller's retry must not make another.
		return merrors.Timeout(id, "the reply was lost (fault point drop_reply)")
	}
	*rsp = out
	return nil
}

// finish records the answer of an idempotent request (unless the saga did).
func (h *Orders) finish(o order.Order, idem *store.Idempotency) (ordersrpc.Order, error) {
	out := o.RPC("")
	if idem == nil || o.Step == order.StepDone {
		return out, nil // the saga's last transaction recorded the answer
	}
	_, err := h.store.Update(o.ID, func(o *order.Order, t *store.Tx) error {
		return t.Settle(o, idem.User, idem.Key, out)
	})
	return out, err
}

// listings reads the publications of items: unknown ones are left out.
func (h *Orders) listings(ctx context.Context, items []ordersrpc.Item) (map[string]order.Listing, error) {
	ids := make([]string, 0, len(items))
	for _, it := range items {
		ids = append(ids, it.PublicationID)
	}
	rsp, err := h.catalog.GetMany(ctx, ids)
	if err != nil {
		return nil, unavailable("publications", err)
	}
	out := make(map[string]order.Listing, len(rsp.Items))
	for _, p := range rsp.Items {
		out[p.ID] = order.Listing{ID: p.ID, SellerID: p.SellerID, Status: p.Status, Currency: p.Price.Currency}
	}
	return out, nil
}

// idempotent runs a write at most once per (caller, Idempotency-Key): a
// repeat with the same request replays the first answer, with another
// request it is refused, and while the first still runs it must wait.
func (h *Orders) idempotent(ctx context.Context, user, endpoint string, req any, run func(*store.Idempotency) (ordersrpc.Order, error)) (ordersrpc.Order, error) {
	key := rpcmeta.IdempotencyKey(ctx)
	if key == "" {
		return run(nil)
	}
	if len(key) > 255 {
		return ordersrpc.Order{}, order.Invalid("Idempotency-Key is longer than 255 characters")
	}
	body, err := json.Marshal(req)
	if err != nil {
		return ordersrpc.Order{}, err
	}
	sum := sha256.Sum256(append([]byte(endpoint+"\x00"), body...))
	hash := hex.EncodeToString(sum[:])
	rec, found, err := h.store.Idempotency(user, key)
	if err != nil {
		return ordersrpc.Order{}, err
	}
	if !found {
		out, err := run(&store.Idempotency{User: user, Key: key, Endpoint: endpoint, Hash: hash, Created: h.now()})
		var exists *store.IdempotencyExists
		if !errors.As(err, &exists) {
			return out, err
		}
		rec = exists.Record // a concurrent request took the key first
	}
	if rec.Hash != hash {
		return ordersrpc.Order{}, merrors.New(ordersrpc.CodeIdempotencyKeyReused,
			"Idempotency-Key "+key+" was used with another request ("+rec.Endpoint+"); use a new key for a new request", 422)
	}
	if !rec.Done {
		return ordersrpc.Order{}, merrors.New(ordersrpc.CodeRequestInProgress,
			"a request with Idempotency-Key "+key+" is still in progress; retry later", 409)
	}
	var out ordersrpc.Order
	if err := json.Unmarshal(rec.Response, &out); err != nil {
		return ordersrpc.Order{}, err
	}
	return out, nil
}

// Get reads one order the caller bought or sells in.
func (h *Orders) Get(ctx context.Context, req *ordersrpc.IDRequest, rsp *ordersrpc.Order) error {
	who, err := caller(ctx)
	if err != nil {
		return err
	}
	if err := order.CheckOrderID(req.ID); err != nil {
		return rpcError(err)
	}
	o, err := h.store.Get(req.ID)
	if err != nil {
		return rpcError(err)
	}
	v, err := o.View(who)
	if err != nil {
		return rpcError(err)
	}
	*rsp = v
	return nil
}

// List pages the caller's orders as buyer or as seller, newest first.
func (h *Orders) List(ctx context.Context, req *ordersrpc.ListRequest, rsp *ordersrpc.ListResponse) error {
	who, err := caller(ctx)
	if err != nil {
		return err
	}
	role, err := order.CheckRole(req.Role)
	if err != nil {
		return rpcError(err)
	}
	os, next, err := h.store.List(role, who, order.PageSize(req.PageSize), req.PageToken)
	if err != nil {
		return rpcError(err)
	}
	rsp.Items = make([]ordersrpc.Order, 0, len(os))
	for _, o := range os {
		seller := ""
		if role == ordersrpc.RoleSeller {
			seller = who
		}
		rsp.Items = append(rsp.Items, o.RPC(seller))
	}
	rsp.NextPageToken = next
	return nil
}

// Cancel cancels a paid, unshipped order (buyer): refund, restock, cancelled.
func (h *Orders) Cancel(ctx context.Context, req *ordersrpc.IDRequest, rsp *ordersrpc.Order) error {
	who, err := caller(ctx)
	if err != nil {
		return err
	}
	if err := order.CheckOrderID(req.ID); err != nil {
		return rpcError(err)
	}
	out, err := h.idempotent(ctx, who, "Cancel", req, func(idem *store.Idempotency) (ordersrpc.Order, error) {
		o, err := h.store.Update(req.ID, func(o *order.Order, t *store.Tx) error {
			if err := o.Cancel(who, h.now()); err != nil {
				return err
			}
			o.IdempotencyKey = ""
			if idem != nil {
				idem.OrderID, o.IdempotencyKey = o.ID, idem.Key
				return t.BeginIdempotency(*idem)
			}
			return nil
		})
		if err != nil {
			return ordersrpc.Order{}, err
		}
		if o, err = h.saga.Drive(ctx, o.ID); err != nil {
			return ordersrpc.Order{}, err
		}
		return h.finish(o, idem)
	})
	if err != nil {
		return rpcError(err)
	}
	*rsp = out
	return nil
}

// Ship marks the caller's shipment of an order shipped (seller).
func (h *Orders) Ship(ctx context.Context, req *ordersrpc.IDRequest, rsp *ordersrpc.Order) error {
	return h.shipment(ctx, "Ship", req, rsp, (*order.Order).Ship, ordersrpc.TopicOrderShipped)
}

// Deliver marks the caller's shipped shipment delivered (seller).
func (h *Orders) Deliver(ctx context.Context, req *ordersrpc.IDRequest, rsp *ordersrpc.Order) error {
	return h.shipment(ctx, "Deliver", req, rsp, (*order.Order).Deliver, ordersrpc.TopicOrderDelivered)
}

func (h *Orders) shipment(ctx context.Context, endpoint string, req *ordersrpc.IDRequest, rsp *ordersrpc.Order,
	change func(*order.Order, string, time.Time) error, topic string) error {
	who, err := caller(ctx)
	if err != nil {
		return err
	}
	if err := order.CheckOrderID(req.ID); err != nil {
		return rpcError(err)
	}
	out, err := h.idempotent(ctx, who, endpoint, req, func(idem *store.Idempotency) (ordersrpc.Order, error) {
		var out ordersrpc.Order
		// The change's time and its event's ID are decided before the
		// transaction, whose function may run more than once.
		now, eventID := h.now(), ulid.Make().String()
		_, err := h.store.Update(req.ID, func(o *order.Order, t *store.Tx) error {
			if err := change(o, who, now); err != nil {
				return err
			}
			if err := t.Emit(eventID, now, topic, o.Event(who, now)); err != nil {
				return err
			}
			out = o.RPC(who)
			if idem == nil {
				return nil
			}
			idem.OrderID = o.ID
			if err := t.BeginIdempotency(*idem); err != nil {
				return err
			}
			return t.FinishIdempotency(idem.User, idem.Key, out)
		})
		h.saga.Notify()
		return out, err
	})
	if err != nil {
		return rpcError(err)
	}
	*rsp = out
	return nil
}

// Cart reads the caller's cart.
func (h *Orders) Cart(ctx context.Context, _ *ordersrpc.Empty, rsp *ordersrpc.Cart) error {
	who, err := caller(ctx)
	if err != nil {
		return err
	}
	c, err := h.store.Cart(who)
	if err != nil {
		return rpcError(err)
	}
	*rsp = c.RPC()
	return nil
}

// SetCartItem adds a line or sets its quantity (0 removes it). The
// publication must exist, be on sale, and not be the caller's own.
func (h *Orders) SetCartItem(ctx context.Context, req *ordersrpc.SetCartItemRequest, rsp *ordersrpc.Cart) error {
	who, err := caller(ctx)
	if err != nil {
		return err
	}
	// Validate the shape first (no call for a bad request).
	var probe order.Cart
	if err := probe.Set(req.PublicationID, req.Quantity, h.now()); err != nil {
		return rpcError(err)
	}
	if req.Quantity > 0 {
		p, err := h.catalog.Get(ctx, req.PublicationID)
		var me *merrors.Error
		switch {
		case errors.As(err, &me) && me.Code == 404:
			return rpcError(order.NotFound("publication_id: publication %s not found", req.PublicationID))
		case err != nil:
			return rpcError(unavailable("publications", err))
		case p.SellerID == who:
			return rpcError(order.Invalid("publication_id: publication " + p.ID + " is your own; you cannot buy it"))
		case p.Status != publicationsrpc.StatusActive:
			return rpcError(order.Conflict("publication_id: publication %s is %s, not on sale", p.ID, p.Status))
		}
	}
	c, err := h.store.UpdateCart(who, func(c *order.Cart) error { return c.Set(req.PublicationID, req.Quantity, h.now()) })
	if err != nil {
		return rpcError(err)
	}
	*rsp = c.RPC()
	return nil
}

// RemoveCartItem removes a line from the caller's cart.
func (h *Orders) RemoveCartItem(ctx context.Context, req *ordersrpc.CartItemRequest, rsp *ordersrpc.Cart) error {
	who, err := caller(ctx)
	if err != nil {
		return err
	}
	c, err := h.store.UpdateCart(who, func(c *order.Cart) error { return c.Remove(req.PublicationID, h.now()) })
	if err != nil {
		return rpcError(err)
	}
	*rsp = c.RPC()
	return nil
}

// Webhook verifies a payment provider's callback and applies it once.
func (h *Orders) Webhook(ctx context.Context, req *ordersrpc.WebhookRequest, rsp *ordersrpc.WebhookResponse) error {
	ev, err := h.saga.Provider().ParseWebhook(req.Body, req.Signature, time.Now())
	if err != nil {
		return rpcError(err)
	}
	o, dup, err := h.store.ApplyWebhook(ev.ID, ev.OrderID, func(o *order.Order, _ *store.Tx) error {
		o.PaymentSettled(ev.ChargeID, ev.Type == payment.EventSucceeded, h.now())
		return nil
	})
	if err != nil {
		return rpcError(err)
	}
	if !dup && o.ID != "" && o.Step != order.StepDone && o.Step != order.StepAwaitingPayment {
		h.saga.Kick(ctx, o.ID)
	}
	rsp.EventID, rsp.Duplicate = ev.ID, dup
	return nil
}
