package store

import bolt "go.etcd.io/bbolt"

// FailAfterEvent makes every write fail with err right after it appended its
// event to the outbox, in the same transaction (nil: stop failing).
func FailAfterEvent(s *Store, err error) {
	if err == nil {
		s.afterEvent = nil
		return
	}
	s.afterEvent = func(*bolt.Tx) error { return err }
}
