package publication

import (
	"fmt"
	"time"

	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/money"
)

// Reservation is stock held for a buyer until ExpiresAt, or what became of
// it (committed, released, expired).
type Reservation struct {
	ID            string
	PublicationID string
	Quantity      int64
	Status        string
	ExpiresAt     time.Time
	CreatedAt     time.Time
	UpdatedAt     time.Time
	// The publication as it was when the stock was reserved: what the buyer
	// pays and who sells, whatever the listing says later.
	ProductID string
	SellerID  string
	Title     string
	UnitPrice money.Money
}

// Expired reports whether a held reservation's time is up at now.
func (r Reservation) Expired(now time.Time) bool {
	return r.Status == publicationsrpc.ReservationHeld && !now.Before(r.ExpiresAt)
}

// CheckTerms refuses to reuse the reservation's ID for another publication
// or quantity (ErrReservationMismatch).
func (r Reservation) CheckTerms(publicationID string, q int64) error {
	if r.PublicationID != publicationID || r.Quantity != q {
		return ReservationMismatch(r.ID)
	}
	return nil
}

// Act applies action a to the reservation by Transition. changed is true
// when the hold ended: the publication's stock must then be settled (Settle).
func (r *Reservation) Act(a Action, now time.Time) (changed bool, err error) {
	to, changed, err := Transition(r.ID, r.Status, a)
	if err != nil || !changed {
		return false, err
	}
	r.Status, r.UpdatedAt = to, now
	return true, nil
}

// Reserve holds q units of the publication for ttl (Stock.Hold) and returns
// the held reservation, reservationID. A publication that is not active is
// ErrNotAvailable; more than is available is ErrOutOfStock, and nothing
// changes.
func (p *Publication) Reserve(reservationID string, q int64, ttl time.Duration, now time.Time) (Reservation, error) {
	s := p.stock()
	if err := s.Hold(p.ID, p.Status, q); err != nil {
		return Reservation{}, err
	}
	p.Quantity, p.Reserved, p.UpdatedAt = s.Quantity, s.Reserved, now
	return Reservation{
		ID: reservationID, PublicationID: p.ID, Quantity: q, Status: publicationsrpc.ReservationHeld,
		ExpiresAt: now.Add(ttl), CreatedAt: now, UpdatedAt: now,
		ProductID: p.ProductID, SellerID: p.SellerID, Title: p.Title, UnitPrice: p.Price,
	}, nil
}

// Settle applies the end of reservation r (its status after Act) to the
// publication's stock (Stock.Settle).
func (p *Publication) Settle(r Reservation, now time.Time) error {
	s := p.stock()
	if err := s.Settle(r.Status, r.Quantity); err != nil {
		return fmt.Errorf("publication %s: %w", p.ID, err)
	}
	p.Quantity, p.Reserved, p.UpdatedAt = s.Quantity, s.Reserved, now
	return nil
}

func (p Publication) stock() Stock { return Stock{Quantity: p.Quantity, Reserved: p.Reserved} }

// Stock is a publication's units: Quantity available to buy, Reserved held
// by reservations. Sold units leave both.
type Stock struct {
	Quantity int64
	Reserved int64
}

// Hold moves q units from Quantity to Reserved for a reservation of an
// active publication. It never lets Quantity go negative: asking for more
// than is available is ErrOutOfStock and changes nothing.
func (s *Stock) Hold(id, status string, q int64) error {
	if status != publicationsrpc.StatusActive {
		return NotAvailable(id, status)
	}
	if q < 1 {
		return invalid("quantity must be at least 1")
	}
	if q > s.Quantity {
		return OutOfStock(id, s.Quantity)
	}
	s.Quantity -= q
	s.Reserved += q
	return nil
}

// Settle applies the end of a held reservation of q units: committed units
// are sold (they leave Reserved), released or expired units go back to
// Quantity. Restocked units (a committed reservation given back: an order
// cancelled after payment) go from sold back to Quantity.
func (s *Stock) Settle(to string, q int64) error {
	if to == publicationsrpc.ReservationRestocked {
		s.Quantity += q
		return nil
	}
	if q > s.Reserved {
		return fmt.Errorf("stock: settling %d units with only %d reserved", q, s.Reserved)
	}
	s.Reserved -= q
	switch to {
	case publicationsrpc.ReservationCommitted:
	case publicationsrpc.ReservationReleased, publicationsrpc.ReservationExpired:
		s.Quantity += q
	default:
		return fmt.Errorf("stock: cannot settle into %q", to)
	}
	return nil
}

// Action is what happens to a reservation.
type Action string

// Actions on a reservation.
const (
	Commit  Action = "commit"
	Release Action = "release"
	Expire  Action = "expire"
	Restock Action = "restock"
)

// Transition is the reservation state machine. From held, commit, release
// and expire end the hold (changed is true: the stock must be settled).
// Repeating the action that ended it answers the same (idempotent, changed
// false): commit after commit, release after release or expiry, expire
// after anything; restock after restock. Everything else is a conflict:
// commit after release, expiry or restock; release after commit or restock;
// restock of anything not committed. A closed publication still takes its
// restocked units back (they exist again); it stays closed, so none sell.
//
//	held      --commit-->  committed   (units sold)
//	held      --release--> released    (units back)
//	held      --expire-->  expired     (units back)
//	committed --restock--> restocked   (sold units back on sale)
func Transition(id, from string, a Action) (to string, changed bool, err error) {
	switch from {
	case publicationsrpc.ReservationHeld:
		switch a {
		case Commit:
			return publicationsrpc.ReservationCommitted, true, nil
		case Release:
			return publicationsrpc.ReservationReleased, true, nil
		case Expire:
			return publicationsrpc.ReservationExpired, true, nil
		case Restock:
			return from, false, stateError(id, from, a)
		}
	case publicationsrpc.ReservationCommitted:
		switch a {
		case Commit, Expire:
			return from, false, nil
		case Release:
			return from, false, stateError(id, from, a)
		case Restock:
			return publicationsrpc.ReservationRestocked, true, nil
		}
	case publicationsrpc.ReservationRestocked:
		switch a {
		case Restock, Expire:
			return from, false, nil
		case Commit, Release:
			return from, false, stateError(id, from, a)
		}
	case publicationsrpc.ReservationReleased, publicationsrpc.ReservationExpired:
		switch a {
		case Release, Expire:
			return from, false, nil
		case Commit, Restock:
			return from, false, stateError(id, from, a)
		}
	}
	return from, false, fmt.Errorf("reservation %s: unknown status %q or action %q", id, from, a)
}

func stateError(id, status string, a Action) error {
	return kindError{kind: ErrReservationState, msg: fmt.Sprintf("reservation %s is %s; it cannot %s", id, status, a)}
}
