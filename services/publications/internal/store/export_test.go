package store

import bolt "go.etcd.io/bbolt"

// FailAfterEvent makes every write fail with err right after it appended its
// publication.changed event, in the same transaction (nil: stop failing).
func FailAfterEvent(s *Store, err error) {
	if err == nil {
		s.afterEvent = nil
		return
	}
	s.afterEvent = func(*bolt.Tx) error { return err }
}

// CountSearchReads makes every search report how many publications it read.
func CountSearchReads(s *Store, f func(int)) { s.searchReads = f }

// PublicationRecord is a publications bucket value, for tests that read the
// file directly.
type PublicationRecord = publicationRecord

// ReservationRecord is a reservations bucket value, for tests that read the
// file directly.
type ReservationRecord = reservationRecord
