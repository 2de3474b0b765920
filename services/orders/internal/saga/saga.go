// Package saga orchestrates the checkout: reserve stock for every line,
// charge the buyer, commit the stock, and undo in reverse on failure. Each
// step is persisted before its work starts, and every remote call is
// idempotent (reservation IDs and payment keys derive from the order ID), so
// a step may always be repeated after a crash.
//
// The charge is the pivot. Before the charge is attempted, an interruption
// (a dependency down, or this process killed) drives the order back: its
// reservations are released and it fails. From the moment the charge is
// attempted the order is driven forward: the charge is asked for again with
// the same key (the provider answers with the charge it made, if any), then
// the stock is committed. Only a refusal (declined card, stock gone, a
// reservation expired before it could be committed) turns it back, and then
// the charge is refunded.
package saga

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/services/orders/internal/fault"
	"github.com/marketmesh/marketmesh/services/orders/internal/order"
	"github.com/marketmesh/marketmesh/services/orders/internal/payment"
	"github.com/marketmesh/marketmesh/services/orders/internal/store"
)

// Stock is the publications service's stock API as the saga uses it.
type Stock interface {
	Reserve(ctx context.Context, r publicationsrpc.ReserveRequest) (*publicationsrpc.Reservation, error)
	Commit(ctx context.Context, reservationID string) (*publicationsrpc.Reservation, error)
	Release(ctx context.Context, reservationID string) (*publicationsrpc.Reservation, error)
	Restock(ctx context.Context, reservationID string) (*publicationsrpc.Reservation, error)
}

// Notifier is told when events are in the outbox.
type Notifier interface{ Notify() }

// Options tune the saga.
type Options struct {
	// ReservationTTL is how long stock stays held for an order that is not
	// committed (it must cover a pending payment's confirmation).
	ReservationTTL time.Duration
	// RecoverEvery is how often orders left mid-way are looked for.
	RecoverEvery time.Duration
	// StepTimeout bounds each remote call of a step.
	StepTimeout time.Duration
}

// Saga drives orders. One process drives an order at a time: a request and
// the recovery loop never work on the same order together.
type Saga struct {
	store *store.Store
	stock Stock
	pay   payment.Provider
	relay Notifier
	opts  Options
	now   func() time.Time

	mu     sync.Mutex
	active map[string]bool
}

// New returns the saga.
func New(s *store.Store, stock Stock, pay payment.Provider, relay Notifier, o Options) *Saga {
	if o.ReservationTTL <= 0 {
		o.ReservationTTL = 15 * time.Minute
	}
	if o.RecoverEvery <= 0 {
		o.RecoverEvery = 5 * time.Second
	}
	if o.StepTimeout <= 0 {
		o.StepTimeout = 5 * time.Second
	}
	return &Saga{store: s, stock: stock, pay: pay, relay: relay, opts: o,
		now: func() time.Time { return time.Now().UTC() }, active: map[string]bool{}}
}

// Notify wakes the outbox relay (events were appended outside the saga).
func (s *Saga) Notify() { s.relay.Notify() }

// Provider is the payment provider the saga charges through.
func (s *Saga) Provider() payment.Provider { return s.pay }

func (s *Saga) claim(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active[id] {
		return false
	}
	s.active[id] = true
	return true
}

func (s *Saga) unclaim(id string) {
	s.mu.Lock()
	delete(s.active, id)
	s.mu.Unlock()
}

// Place stores a new order (with its idempotency record) and drives its
// saga. The order is claimed before it is stored, so the recovery loop never
// mistakes it for one left behind by a crash.
func (s *Saga) Place(ctx context.Context, o order.Order, idem *store.Idempotency) (order.Order, error) {
	if !s.claim(o.ID) {
		return o, fmt.Errorf("saga: order %s is claimed already", o.ID)
	}
	defer s.unclaim(o.ID)
	if err := s.store.Create(o, idem); err != nil {
		return o, err
	}
	return s.drive(ctx, o.ID, false)
}

// Drive runs the order's saga as far as it can go now and returns the order
// as it then stands. If another goroutine drives it, Drive waits for it.
func (s *Saga) Drive(ctx context.Context, id string) (order.Order, error) {
	for !s.claim(id) {
		select {
		case <-ctx.Done():
			return order.Order{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	defer s.unclaim(id)
	return s.drive(ctx, id, false)
}

// drive loops over the steps. recovering is true when the process that
// started the order is gone: an order not yet charged is then driven back.
func (s *Saga) drive(ctx context.Context, id string, recovering bool) (order.Order, error) {
	o, err := s.store.Get(id)
	if err != nil {
		return o, err
	}
	if recovering && o.Step == order.StepReserving {
		if o, err = s.fail(id, ordersrpc.ReasonServiceUnavailable, "the order was interrupted before payment; nothing was charged"); err != nil {
			return o, err
		}
	}
	for {
		var stop bool
		switch o.Step {
		case order.StepReserving:
			o, stop, err = s.reserve(ctx, o)
		case order.StepCharging:
			o, stop, err = s.charge(ctx, o)
		case order.StepAwaitingPayment:
			o, stop, err = s.awaitPayment(ctx, o, recovering)
		case order.StepCommitting:
			o, stop, err = s.commit(ctx, o)
		case order.StepCompensating, order.StepCancelling:
			o, stop, err = s.compensate(ctx, o)
		case order.StepDone:
			return o, nil
		default:
			return o, fmt.Errorf("saga: order %s in unknown step %q", o.ID, o.Step)
		}
		if err != nil || stop {
			return o, err
		}
	}
}

// callCtx bounds one remote call.
func (s *Saga) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.opts.StepTimeout)
}

// reserve holds stock for every line not yet held, the calls in parallel,
// then records every reservation's snapshot and the total in one
// transaction, which also moves the order to charging. A crash before that
// transaction leaves the order reserving: recovery turns it back, releasing
// every line's derived reservation ID (unknown ones are not an error).
func (s *Saga) reserve(ctx context.Context, o order.Order) (order.Order, bool, error) {
	snaps := make([]*publicationsrpc.Reservation, len(o.Lines))
	errs := make([]error, len(o.Lines))
	var wg sync.WaitGroup
	for i, l := range o.Lines {
		if l.ReservationStatus != order.ResNone {
			continue // recorded by an earlier version of this step
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fault.Crash("reserve")
			cctx, cancel := s.callCtx(ctx)
			defer cancel()
			snaps[i], errs[i] = s.stock.Reserve(cctx, publicationsrpc.ReserveRequest{ReservationID: l.ReservationID,
				PublicationID: l.PublicationID, Quantity: l.Quantity, TTLSeconds: int64(s.opts.ReservationTTL / time.Second)})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			reason, msg := reserveFailure(o.Lines[i].PublicationID, err)
			o, err = s.fail(o.ID, reason, msg)
			return o, false, err
		}
	}
	fault.Crash("reserved")
	o, err := s.store.Update(o.ID, func(o *order.Order, _ *store.Tx) error {
		for i, r := range snaps {
			if r != nil {
				o.Reserved(i, order.Snapshot{ProductID: r.ProductID, SellerID: r.SellerID, Title: r.Title, UnitPrice: r.UnitPrice}, s.now())
			}
		}
		if reason, msg := o.ReservationsDone(s.now()); reason != "" {
			o.Fail(reason, msg, s.now())
		}
		return nil
	})
	return o, err != nil, err
}

// reserveFailure names why a reservation was refused.
func reserveFailure(pub string, err error) (string, string) {
	var me *merrors.Error
	if errors.As(err, &me) {
		switch {
		case me.Id == ordersrpc.ReasonOutOfStock:
			return ordersrpc.ReasonOutOfStock, me.Detail
		case me.Code == http.StatusNotFound || me.Code == http.StatusConflict || me.Code == http.StatusUnprocessableEntity:
			return ordersrpc.ReasonPublicationUnavailable, me.Detail
		}
	}
	slog.Warn("saga: reservation failed; the order is turned back", "publication", pub, "err", err)
	return ordersrpc.ReasonServiceUnavailable, "the publications service is unavailable; nothing was charged, try again"
}

// charge asks the provider for the charge (again, after a crash: same key).
func (s *Saga) charge(ctx context.Context, o order.Order) (order.Order, bool, error) {
	fault.Crash("charge")
	cctx, cancel := s.callCtx(ctx)
	c, err := s.pay.Charge(cctx, payment.ChargeRequest{IdempotencyKey: o.Payment.IdempotencyKey, OrderID: o.ID,
		CardToken: o.Payment.CardToken, Amount: o.Total})
	cancel()
	if err != nil {
		slog.Error("saga: charge failed", "order", o.ID, "err", err)
		o, err = s.fail(o.ID, ordersrpc.ReasonPaymentError, "the payment provider could not take the payment; nothing was charged")
		return o, false, err
	}
	fault.Crash("charged")
	if c.Status == payment.StatusPending && o.Step == order.StepAwaitingPayment {
		return o, true, nil // still pending: nothing new to record
	}
	o, err = s.store.Update(o.ID, func(o *order.Order, _ *store.Tx) error {
		switch c.Status {
		case payment.StatusSucceeded, payment.StatusPending:
			o.Charged(s.pay.Name(), c.ID, c.Status, s.now())
		default:
			o.Charged(s.pay.Name(), c.ID, ordersrpc.PaymentFailed, s.now())
			o.PaymentFailed(s.now())
			o.Fail(ordersrpc.ReasonPaymentDeclined, "the card was declined", s.now())
		}
		return nil
	})
	return o, err != nil, err
}

// awaitPayment stops: the provider confirms through the webhook. On
// recovery it asks the provider (same key) whether the charge has settled.
func (s *Saga) awaitPayment(ctx context.Context, o order.Order, recovering bool) (order.Order, bool, error) {
	if !recovering {
		return o, true, nil
	}
	return s.charge(ctx, o)
}

// commit turns every held reservation into a sale, the calls in parallel,
// then marks the order paid in one transaction with its order.paid event.
// The charge is made: a dependency down means trying again later (commit is
// idempotent); a reservation that expired meanwhile turns the order back.
func (s *Saga) commit(ctx context.Context, o order.Order) (order.Order, bool, error) {
	errs := make([]error, len(o.Lines))
	var wg sync.WaitGroup
	for i, l := range o.Lines {
		if l.ReservationStatus == order.ResCommitted {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fault.Crash("commit")
			cctx, cancel := s.callCtx(ctx)
			defer cancel()
			_, errs[i] = s.stock.Commit(cctx, l.ReservationID)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		var me *merrors.Error
		switch {
		case err == nil:
		case errors.As(err, &me) && (me.Code == http.StatusConflict || me.Code == http.StatusNotFound):
			o, err = s.fail(o.ID, ordersrpc.ReasonReservationExpired, "the stock held for this order was released before payment completed; the charge is refunded")
			return o, false, err
		default:
			slog.Warn("saga: commit failed; will retry", "order", o.ID, "reservation", o.Lines[i].ReservationID, "err", err)
			return o, true, nil
		}
	}
	fault.Crash("committed")
	// The payment's time and the order.paid event's ID are decided here,
	// before the transaction, whose function may run more than once. A
	// commit step repeated after a crash (its transaction lost) decides new
	// ones: the order's step, not the event ID, keeps it from being paid twice.
	now, eventID := s.now(), ulid.Make().String()
	o, err := s.store.Update(o.ID, func(o *order.Order, t *store.Tx) error {
		for i := range o.Lines {
			o.Committed(i, now)
		}
		o.Paid(now)
		if o.FromCart {
			if err := t.CartBought(o, now); err != nil {
				return err
			}
		}
		if err := t.Emit(eventID, now, ordersrpc.TopicOrderPaid, o.Event("", now)); err != nil {
			return err
		}
		return t.Settle(o, o.BuyerID, o.IdempotencyKey, response(o))
	})
	s.relay.Notify()
	return o, true, err
}

// fail turns the order back with reason.
func (s *Saga) fail(id, reason, msg string) (order.Order, error) {
	return s.store.Update(id, func(o *order.Order, _ *store.Tx) error {
		if o.Step == order.StepDone || o.Step == order.StepCompensating {
			return nil
		}
		o.Fail(reason, msg, s.now())
		return nil
	})
}

// compensate undoes in reverse: refund if a charge was attempted, then put
// every line's stock back (release a held reservation; restock a committed
// one, which a release answers with a conflict), then one transaction ends
// the order: cancelled for a cancellation, failed otherwise. Every call is
// idempotent, so a crash anywhere here only means doing it again.
func (s *Saga) compensate(ctx context.Context, o order.Order) (order.Order, bool, error) {
	refund := payment.Refund{Status: "none"}
	if o.ChargeStarted && o.Payment.Status != ordersrpc.PaymentRefunded {
		fault.Crash("refund")
		cctx, cancel := s.callCtx(ctx)
		var err error
		refund, err = s.pay.Refund(cctx, payment.RefundRequest{IdempotencyKey: o.RefundKey(), ChargeKey: o.Payment.IdempotencyKey})
		cancel()
		if err != nil {
			slog.Warn("saga: refund failed; will retry", "order", o.ID, "err", err)
			return o, true, nil
		}
	}
	back := make([]string, len(o.Lines))
	for i := len(o.Lines) - 1; i >= 0; i-- {
		l := o.Lines[i]
		if l.ReservationStatus == order.ResReleased || l.ReservationStatus == order.ResRestocked {
			back[i] = l.ReservationStatus
			continue
		}
		fault.Crash("release")
		status, err := s.giveBack(ctx, l)
		if err != nil {
			slog.Warn("saga: giving back stock failed; will retry", "order", o.ID, "reservation", l.ReservationID, "err", err)
			return o, true, nil
		}
		back[i] = status
	}
	// The end's time and its event's ID (if it has one) are decided before
	// the transaction, as in commit.
	now, eventID := s.now(), ulid.Make().String()
	o, err := s.store.Update(o.ID, func(o *order.Order, t *store.Tx) error {
		switch refund.Status {
		case payment.StatusSucceeded:
			o.Refunded(now)
		case payment.StatusCanceled:
			o.Payment.Status = ordersrpc.PaymentRefunded
		default: // nothing was charged
			if o.ChargeStarted && o.Payment.Status != ordersrpc.PaymentRefunded {
				o.PaymentFailed(now)
			}
		}
		for i, st := range back {
			o.Released(i, st, now)
		}
		cancelled := o.Step == order.StepCancelling
		o.Compensated(now)
		topic := ""
		switch {
		case cancelled:
			topic = ordersrpc.TopicOrderCancelled
		case o.FailureReason == ordersrpc.ReasonPaymentDeclined || o.FailureReason == ordersrpc.ReasonPaymentError:
			topic = ordersrpc.TopicOrderPaymentFailed
		}
		if topic != "" {
			if err := t.Emit(eventID, now, topic, o.Event("", now)); err != nil {
				return err
			}
		}
		return t.Settle(o, o.BuyerID, o.IdempotencyKey, response(o))
	})
	s.relay.Notify()
	return o, true, err
}

// giveBack puts a line's stock back on sale: a release of a held (or never
// made) reservation, a restock of a committed one. It returns the line's
// new reservation status.
func (s *Saga) giveBack(ctx context.Context, l order.Line) (string, error) {
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	var me *merrors.Error
	if l.ReservationStatus != order.ResCommitted {
		_, err := s.stock.Release(cctx, l.ReservationID)
		switch {
		case err == nil, errors.As(err, &me) && me.Code == http.StatusNotFound:
			return order.ResReleased, nil // released, or never made
		case !(errors.As(err, &me) && me.Code == http.StatusConflict):
			return "", err
		}
		// A conflict: it was committed (by a commit whose record was lost).
	}
	if _, err := s.stock.Restock(cctx, l.ReservationID); err != nil {
		return "", err
	}
	return order.ResRestocked, nil
}

// response is what an idempotent request that made or changed o answers.
func response(o *order.Order) ordersrpc.Order { return o.RPC("") }

// Recover drives every order left mid-way that nobody drives now. At
// start-up, every active order is such an order.
func (s *Saga) Recover(ctx context.Context) {
	ids, err := s.store.Active()
	if err != nil {
		slog.Error("saga: list active orders", "err", err)
		return
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		if !s.claim(id) {
			continue
		}
		o, err := s.drive(ctx, id, true)
		s.unclaim(id)
		if err != nil {
			slog.Warn("saga: recovery could not finish an order; will retry", "order", id, "step", o.Step, "err", err)
		} else if o.Step != order.StepAwaitingPayment {
			slog.Info("saga: recovered order", "order", id, "status", o.Status, "step", o.Step)
		}
	}
}

// Run recovers at start and then every RecoverEvery until ctx ends.
func (s *Saga) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.RecoverEvery)
	defer t.Stop()
	for {
		s.Recover(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Kick drives an order in the background (a webhook moved it on).
func (s *Saga) Kick(ctx context.Context, id string) {
	go func() {
		if _, err := s.Drive(context.WithoutCancel(ctx), id); err != nil {
			slog.Warn("saga: driving order after webhook", "order", id, "err", err)
		}
	}()
}
