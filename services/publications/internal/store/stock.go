package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/services/publications/internal/publication"
)

// reservationRecord is a reservation as stored in the reservations bucket
// (JSON); its fields are publication.Reservation's, so each converts to the
// other.
type reservationRecord struct {
	ID            string    `json:"id"`
	PublicationID string    `json:"publication_id"`
	Quantity      int64     `json:"quantity"`
	Status        string    `json:"status"`
	ExpiresAt     time.Time `json:"expires_at"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	// The snapshot (empty in reservations stored before it was kept).
	ProductID string      `json:"product_id,omitempty"`
	SellerID  string      `json:"seller_id,omitempty"`
	Title     string      `json:"title,omitempty"`
	UnitPrice money.Money `json:"unit_price,omitzero"`
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
//
// The command's time is st.At; its event is stamped st.
func (s *Store) Reserve(id, publicationID string, quantity int64, ttl time.Duration, st Stamp) (publication.Reservation, error) {
	var r publication.Reservation
	now := st.At
	// Batch: concurrent reservations share one commit (one fsync); the
	// function may run again if another in the batch fails, so it only
	// decides from what it reads in tx and from st.
	err := s.db.Batch(func(tx *bolt.Tx) error {
		w := &write{Stamp: st}
		existing, found, err := getReservation(tx, id)
		if err != nil {
			return err
		}
		if found {
			if err := existing.CheckTerms(publicationID, quantity); err != nil {
				return err
			}
			r = existing
			if r.Expired(now) {
				r, err = s.settle(tx, w, r, publication.Expire)
			}
			return err
		}
		p, err := getPublication(tx, publicationID)
		if err != nil {
			return err
		}
		if r, err = p.Reserve(id, quantity, ttl, now); err != nil {
			return err
		}
		if err := putReservation(tx, r); err != nil {
			return err
		}
		if err := tx.Bucket(byExpiry).Put(expiryKey(r.ExpiresAt.UnixNano(), id), nil); err != nil {
			return err
		}
		if err := putPublication(tx, p); err != nil {
			return err
		}
		return s.changed(tx, w, p)
	})
	if err != nil {
		return publication.Reservation{}, err
	}
	return r, nil
}

// Commit turns a held reservation into a sale: its units leave Reserved.
// Committing again returns the same reservation. A released or expired
// reservation is ErrReservationState; so is a held one whose time is up,
// which is expired (units back) in the same, committed, transaction.
// Here and in Restock and Release, the command's time is st.At and its
// events are stamped st.
func (s *Store) Commit(id string, st Stamp) (publication.Reservation, error) {
	return s.act(id, publication.Commit, st)
}

// Restock puts a committed reservation's sold units back to Quantity (an
// order cancelled after payment). Restocking again returns the same
// reservation; a held, released or expired one is ErrReservationState.
func (s *Store) Restock(id string, st Stamp) (publication.Reservation, error) {
	return s.act(id, publication.Restock, st)
}

// Release returns a held reservation's units to Quantity. Releasing a
// released or expired reservation returns it unchanged; a committed one is
// ErrReservationState.
func (s *Store) Release(id string, st Stamp) (publication.Reservation, error) {
	return s.act(id, publication.Release, st)
}

func (s *Store) act(id string, a publication.Action, st Stamp) (publication.Reservation, error) {
	var r publication.Reservation
	var outcome error // an answer for the caller that must not roll the transaction back
	err := s.db.Batch(func(tx *bolt.Tx) error {
		outcome = nil // the function may run again (batched)
		w := &write{Stamp: st}
		var found bool
		var err error
		if r, found, err = getReservation(tx, id); err != nil {
			return err
		}
		if !found {
			return publication.NotFound("reservation", id)
		}
		if r.Expired(st.At) {
			// Its time is up: expire it first, whatever was asked. A commit
			// then fails (below) but the expiry stands.
			if r, err = s.settle(tx, w, r, publication.Expire); err != nil {
				return err
			}
		}
		settled, err := s.settle(tx, w, r, a)
		if errors.Is(err, publication.ErrReservationState) {
			outcome = err
			return nil
		}
		r = settled
		return err
	})
	if err != nil {
		return publication.Reservation{}, err
	}
	if outcome != nil {
		return publication.Reservation{}, outcome
	}
	return r, nil
}

// settle applies action a to r in tx (Reservation.Act) at w's time and, if
// the hold ended, settles the publication's stock, removes the expiry index
// entry and appends publication.changed when the available quantity changed.
func (s *Store) settle(tx *bolt.Tx, w *write, r publication.Reservation, a publication.Action) (publication.Reservation, error) {
	now := w.At
	if changed, err := r.Act(a, now); err != nil || !changed {
		return r, err // unchanged
	}
	p, err := getPublication(tx, r.PublicationID)
	if err != nil {
		return r, fmt.Errorf("reservation %s: %w", r.ID, err)
	}
	available := p.Quantity
	if err := p.Settle(r, now); err != nil {
		return r, err
	}
	if err := tx.Bucket(byExpiry).Delete(expiryKey(r.ExpiresAt.UnixNano(), r.ID)); err != nil {
		return r, err
	}
	if err := putReservation(tx, r); err != nil {
		return r, err
	}
	if err := putPublication(tx, p); err != nil {
		return r, err
	}
	if p.Quantity != available {
		return r, s.changed(tx, w, p)
	}
	return r, nil
}

// ExpireDue expires up to limit held reservations whose time is up at
// st.At, oldest first, found through the expiry index (no scan of
// reservations), in one transaction; their units go back to Quantity, and
// their events are stamped st. It returns how many it expired: limit means
// there may be more.
func (s *Store) ExpireDue(st Stamp, limit int) (int, error) {
	n := 0
	now := st.At
	err := s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		w := &write{Stamp: st}
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
			if !found || !r.Expired(now) {
				// A stale entry (never written by this code): drop it
				// rather than stop every future sweep on it.
				if err := tx.Bucket(byExpiry).Delete(k); err != nil {
					return err
				}
				continue
			}
			if _, err := s.settle(tx, w, r, publication.Expire); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// GetReservation returns the reservation with id as stored.
func (s *Store) GetReservation(id string) (publication.Reservation, error) {
	var r publication.Reservation
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

func getReservation(tx *bolt.Tx, id string) (publication.Reservation, bool, error) {
	var rec reservationRecord
	raw := tx.Bucket(reservationsBucket).Get([]byte(id))
	if raw == nil {
		return publication.Reservation{}, false, nil
	}
	err := json.Unmarshal(raw, &rec)
	return publication.Reservation(rec), true, err
}

func putReservation(tx *bolt.Tx, r publication.Reservation) error {
	return putJSON(tx.Bucket(reservationsBucket), []byte(r.ID), reservationRecord(r))
}
