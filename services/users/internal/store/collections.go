package store

import (
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/services/users/internal/user"
)

// AddWishlist saves pubID for owner; created is false if it was there.
func (s *Store) AddWishlist(owner, pubID string, now time.Time) (user.WishlistEntry, bool, error) {
	e := user.WishlistEntry{PublicationID: pubID, AddedAt: now}
	created := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(wishlistBucket)
		key := ownedKey(owner, pubID)
		if v := b.Get(key); v != nil {
			t, err := time.Parse(time.RFC3339Nano, string(v))
			e.AddedAt = t
			return err
		}
		created = true
		return b.Put(key, []byte(now.Format(time.RFC3339Nano)))
	})
	return e, created, err
}

// RemoveWishlist deletes pubID from owner's wishlist.
func (s *Store) RemoveWishlist(owner, pubID string) error {
	return deleteOwned(s.db, wishlistBucket, owner, pubID, nil)
}

// ListWishlist returns a page of owner's wishlist, ordered by publication ID.
func (s *Store) ListWishlist(owner string, size int, token string) ([]user.WishlistEntry, string, error) {
	return listOwned(s.db, wishlistBucket, owner, size, token, func(item, v []byte) (user.WishlistEntry, error) {
		t, err := time.Parse(time.RFC3339Nano, string(v))
		return user.WishlistEntry{PublicationID: string(item), AddedAt: t}, err
	})
}

// bankRecord is a stored user.BankAccount (the number sealed), converted
// like userRecord.
type bankRecord struct {
	ID           string    `json:"id"`
	Holder       string    `json:"holder"`
	Bank         string    `json:"bank"`
	SealedNumber []byte    `json:"sealed_number"`
	Last4        string    `json:"last4"`
	Currency     string    `json:"currency"`
	CreatedAt    time.Time `json:"created_at"`
}

// AddBankAccount stores a for owner.
func (s *Store) AddBankAccount(owner string, a user.BankAccount) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bankBucket), ownedKey(owner, a.ID), bankRecord(a))
	})
}

// RemoveBankAccount deletes owner's account id; another user's ID is "not found".
func (s *Store) RemoveBankAccount(owner, id string) error {
	return deleteOwned(s.db, bankBucket, owner, id, nil)
}

// ListBankAccounts returns a page of owner's accounts, oldest first (IDs are ULIDs).
func (s *Store) ListBankAccounts(owner string, size int, token string) ([]user.BankAccount, string, error) {
	return listOwned(s.db, bankBucket, owner, size, token, func(_, v []byte) (user.BankAccount, error) {
		var r bankRecord
		err := json.Unmarshal(v, &r)
		return user.BankAccount(r), err
	})
}

// deviceRecord is a stored user.Device, converted like userRecord.
type deviceRecord struct {
	Token     string    `json:"token"`
	Platform  string    `json:"platform"`
	CreatedAt time.Time `json:"created_at"`
}

// AddDevice registers token for owner. A token identifies one app install,
// so if another user had it (the device changed hands) it moves to owner.
func (s *Store) AddDevice(owner string, d user.Device) (user.Device, bool, error) {
	rec := deviceRecord(d)
	created := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		devices, index := tx.Bucket(deviceBucket), tx.Bucket(deviceIndex)
		key := ownedKey(owner, rec.Token)
		if prev := index.Get([]byte(rec.Token)); prev != nil {
			if string(prev) == owner {
				var existing deviceRecord
				if err := getJSON(devices, key, &existing); err != nil {
					return err
				}
				if existing.Platform == rec.Platform {
					rec = existing
					return nil
				}
				rec.CreatedAt = existing.CreatedAt
				return putJSON(devices, key, rec)
			}
			if err := devices.Delete(ownedKey(string(prev), rec.Token)); err != nil {
				return err
			}
		}
		created = true
		if err := index.Put([]byte(rec.Token), []byte(owner)); err != nil {
			return err
		}
		return putJSON(devices, key, rec)
	})
	return user.Device(rec), created, err
}

// RemoveDevice unregisters owner's token.
func (s *Store) RemoveDevice(owner, token string) error {
	return deleteOwned(s.db, deviceBucket, owner, token, func(tx *bolt.Tx) error {
		return tx.Bucket(deviceIndex).Delete([]byte(token))
	})
}

// ListDevices returns a page of owner's devices.
func (s *Store) ListDevices(owner string, size int, token string) ([]user.Device, string, error) {
	return listOwned(s.db, deviceBucket, owner, size, token, func(_, v []byte) (user.Device, error) {
		var r deviceRecord
		err := json.Unmarshal(v, &r)
		return user.Device(r), err
	})
}

// prefsRecord is stored user.Preferences, converted like userRecord.
type prefsRecord struct {
	Email bool `json:"email"`
	Push  bool `json:"push"`
}

// GetPreferences returns owner's preferences or user.DefaultPreferences.
func (s *Store) GetPreferences(owner string) (user.Preferences, error) {
	p := prefsRecord(user.DefaultPreferences)
	err := s.db.View(func(tx *bolt.Tx) error {
		err := getJSON(tx.Bucket(prefsBucket), []byte(owner), &p)
		if err == user.ErrNotFound {
			return nil
		}
		return err
	})
	return user.Preferences(p), err
}

// SetPreferences replaces owner's preferences.
func (s *Store) SetPreferences(owner string, p user.Preferences) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(prefsBucket), []byte(owner), prefsRecord(p))
	})
}

func deleteOwned(db *bolt.DB, bucket []byte, owner, item string, also func(*bolt.Tx) error) error {
	return db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		key := ownedKey(owner, item)
		if b.Get(key) == nil {
			return user.ErrNotFound
		}
		if err := b.Delete(key); err != nil {
			return err
		}
		if also != nil {
			return also(tx)
		}
		return nil
	})
}
