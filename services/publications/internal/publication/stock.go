package publication

import (
	"fmt"

	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
)

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
// Quantity.
func (s *Stock) Settle(to string, q int64) error {
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
)

// Transition is the reservation state machine. From held, commit, release
// and expire end the hold (changed is true: the stock must be settled).
// Repeating the action that ended it answers the same (idempotent, changed
// false): commit after commit, release after release or expiry, expire
// after anything. Everything else is a conflict: commit after release or
// expiry, release after commit.
//
//	held      --commit-->  committed   (units sold)
//	held      --release--> released    (units back)
//	held      --expire-->  expired     (units back)
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
		}
	case publicationsrpc.ReservationCommitted:
		switch a {
		case Commit, Expire:
			return from, false, nil
		case Release:
			return from, false, stateError(id, from, a)
		}
	case publicationsrpc.ReservationReleased, publicationsrpc.ReservationExpired:
		switch a {
		case Release, Expire:
			return from, false, nil
		case Commit:
			return from, false, stateError(id, from, a)
		}
	}
	return from, false, fmt.Errorf("reservation %s: unknown status %q or action %q", id, from, a)
}

func stateError(id, status string, a Action) error {
	return kindError{kind: ErrReservationState, msg: fmt.Sprintf("reservation %s is %s; it cannot %s", id, status, a)}
}
