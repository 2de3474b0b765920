package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/services/publications/internal/publication"
)

// Reservation is stored held stock.
type Reservation struct {
	ID            string    `json:"id"`
	PublicationID string    `json:"publication_id"`
	Quantity      int64     `json:"quantity"`
	Status        string    `json:"status"`
	ExpiresAt     time.Time `json:"expires_at"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// expired reports whether a held reservation's time is up at now.
func (r Reservation) expired(now time.Time) bool {
	return r.Status == publicationsrpc.ReservationHeld && !now.Before(r.ExpiresAt)
}

// Reserve holds quantity units of a publication for ttl, in one
// transaction (bbolt runs one writer at a time, so concurrent buyers see
// each other's holds and stock is never oversold):
//
//   - a reservation ID seen before returns that reservation (idempotent), or
//     ErrReservationMismatch if it was for another publication or quantity;
//     a held one whose time is up is expired first, and returned expired;
//   - the publication must be active (ErrNotAvailable) and have quantity
//     units available (ErrOutOfStock, which names how many are);
//   - the units move from Quantity to Reserved, the reservation is stored
//     held and indexed by expiry, and publication.changed is appended.
func (s *Store) Reserve(id, publicationID string, quantity int64, ttl time.Duration, now time.Time) (Reservation, error) {
	var r Reservation
	err := s.db.Update(func(tx *bolt.Tx) error {
		existing, found, err := getReservation(tx, id)
		if err != nil {
			return err
		}
		if found {
			if existing.PublicationID != publicationID || existing.Quantity != quantity {
				return publication.ReservationMismatch(id)
			}
			r = existing
			if r.expired(now) {
				r, err = s.settle(tx, r, publication.Expire, now)
			}
			return err
		}
		p, err := getPublication(tx, publicationID)
		if err != nil {
			return err
		}
		stock := publication.Stock{Quantity: p.Quantity, Reserved: p.Reserved}
		if err := stock.Hold(p.ID, p.Status, quantity); err != nil {
			return err
		}
		p.Quantity, p.Reserved, p.UpdatedAt = stock.Quantity, stock.Reserved, now
		r = Reservation{
			ID: id, PublicationID: publicationID, Quantity: quantity, Status: publicationsrpc.ReservationHeld,
			ExpiresAt: now.Add(ttl), CreatedAt: now, UpdatedAt: now,
		}
		if err := putJSON(tx.Bucket(reservationsBucket), []byte(id), r); err != nil {
			return err
		}
		if err := tx.Bucket(byExpiry).Put(expiryKey(r.ExpiresAt.UnixNano(), id), nil); err != nil {
			return err
		}
		if err := putPublication(tx, p); err != nil {
			return err
		}
		return s.changed(tx, p)
	})
	if err != nil {
		return Reservation{}, err
	}
	return r, nil
}

// Commit turns a held reservation into a sale: its units leave Reserved.
// Committing again returns the same reservation. A released or expired
// reservation is ErrReservationState; so is a held one whose time is up,
// which is expired (units back) in the same, committed, transaction.
func (s *Store) Commit(id string, now time.Time) (Reservation, error) {
	return s.act(id, publication.Commit, now)
}

// Release returns a held reservation's units to Quantity. Releasing a
// released or expired reservation returns it unchanged; a committed one is
// ErrReservationState.
func (s *Store) Release(id string, now time.Time) (Reservation, error) {
	return s.act(id, publication.Release, now)
}

func (s *Store) act(id string, a publication.Action, now time.Time) (Reservation, error) {
	var r Reservation
	var outcome error // an answer for the caller that must not roll the transaction back
	err := s.db.Update(func(tx *bolt.Tx) error {
		var found bool
		var err error
		if r, found, err = getReservation(tx, id); err != nil {
			return err
		}
		if !found {
			return publication.NotFound("reservation", id)
		}
		if r.expired(now) {
			// Its time is up: expire it first, whatever was asked. A commit
			// then fails (below) but the expiry stands.
			if r, err = s.settle(tx, r, publication.Expire, now); err != nil {
				return err
			}
		}
		settled, err := s.settle(tx, r, a, now)
		if errors.Is(err, publication.ErrReservationState) {
			outcome = err
			return nil
		}
		r = settled
		return err
	})
	if err != nil {
		return Reservation{}, err
	}
	if outcome != nil {
		return Reservation{}, outcome
	}
	return r, nil
}

// settle applies action a to r in tx: the status changes by
// publication.Transition and, if the hold ended, the publication's stock is
// settled, the expiry index entry removed and publication.changed appended
// when the available quantity changed.
func (s *Store) settle(tx *bolt.Tx, r Reservation, a publication.Action, now time.Time) (Reservation, error) {
	to, changed, err := publication.Transition(r.ID, r.Status, a)
	if err != nil || !changed {
		return r, err
	}
	p, err := getPublication(tx, r.PublicationID)
	if err != nil {
		return r, fmt.Errorf("reservation %s: %w", r.ID, err)
	}
	stock := publication.Stock{Quantity: p.Quantity, Reserved: p.Reserved}
	if err := stock.Settle(to, r.Quantity); err != nil {
		return r, fmt.Errorf("publication %s: %w", p.ID, err)
	}
	if err := tx.Bucket(byExpiry).Delete(expiryKey(r.ExpiresAt.UnixNano(), r.ID)); err != nil {
		return r, err
	}
	r.Status, r.UpdatedAt = to, now
	if err := putJSON(tx.Bucket(reservationsBucket), []byte(r.ID), r); err != nil {
		return r, err
	}
	quantityChanged := stock.Quantity != p.Quantity
	p.Quantity, p.Reserved, p.UpdatedAt = stock.Quantity, stock.Reserved, now
	if err := putPublication(tx, p); err != nil {
		return r, err
	}
	if quantityChanged {
		return r, s.changed(tx, p)
	}
	return r, nil
}

// ExpireDue expires up to limit held reservations whose time is up at now,
// oldest first, found through the expiry index (no scan of reservations),
// in one transaction; their units go back to Quantity. It returns how many
// it expired: limit means there may be more.
func (s *Store) ExpireDue(now time.Time, limit int) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		var due [][]byte
		c := tx.Bucket(byExpiry).Cursor()
		for k, _ := c.First(); k != nil && len(due) < limit; k, _ = c.Next() {
			if len(k) < 9 || int64(binary.BigEndian.Uint64(k[:8])) > now.UnixNano() {
				break
			}
			due = append(due, append([]byte{}, k...)) // keys are only valid inside the tx's cursor walk
		}
		for _, k := range due {
			r, found, err := getReservation(tx, string(k[9:]))
			if err != nil {
				return err
			}
			if !found || !r.expired(now) {
				// A stale entry (never written by this code): drop it
				// rather than stop every future sweep on it.
				if err := tx.Bucket(byExpiry).Delete(k); err != nil {
					return err
				}
				continue
			}
			if _, err := s.settle(tx, r, publication.Expire, now); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// GetReservation returns the reservation with id as stored.
func (s *Store) GetReservation(id string) (Reservation, error) {
	var r Reservation
	err := s.db.View(func(tx *bolt.Tx) error {
		var found bool
		var err error
		r, found, err = getReservation(tx, id)
		if err == nil && !found {
			err = publication.NotFound("reservation", id)
		}
		return err
	})
	return r, err
}

func getReservation(tx *bolt.Tx, id string) (Reservation, bool, error) {
	var r Reservation
	raw := tx.Bucket(reservationsBucket).Get([]byte(id))
	if raw == nil {
		return r, false, nil
	}
	return r, true, json.Unmarshal(raw, &r)
}
