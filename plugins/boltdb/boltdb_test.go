package boltdb

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestOpenCreatesTheDirectoryAndTheSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nested", "dir", "svc.db")
	db, err := Open(path, func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte("things"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckBucket(db, []byte("things")); err != nil {
		t.Fatalf("check: %v", err)
	}
	if err := CheckBucket(db, []byte("other")); err == nil || !strings.Contains(err.Error(), "other") {
		t.Fatalf("a missing bucket passed the check: %v", err)
	}
	db.Close()
}

func TestOpenFailsInsteadOfHangingWhenTheFileIsHeld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "svc.db")
	noop := func(*bolt.Tx) error { return nil }
	first, err := Open(path, noop)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := Open(path, noop); err == nil {
		t.Fatal("a second Open of a held file succeeded")
	}
}

func TestASchemaErrorClosesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "svc.db")
	boom := errors.New("boom")
	if _, err := Open(path, func(*bolt.Tx) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	db, err := Open(path, func(*bolt.Tx) error { return nil }) // not locked by the failed attempt
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
}

func TestKeysJoinPartsWithNUL(t *testing.T) {
	if got := string(Key("USD", "0001", "01ID")); got != "USD\x000001\x0001ID" {
		t.Fatalf("Key = %q", got)
	}
	if got := string(KeyBytes([]byte("a"), []byte{0xff, 0x01}, []byte("id"))); got != "a\x00\xff\x01\x00id" {
		t.Fatalf("KeyBytes = %q", got)
	}
	if got := string(Prefix("user", "01U")); got != "user\x0001U\x00" {
		t.Fatalf("Prefix = %q", got)
	}
	if got := Key(); len(got) != 0 {
		t.Fatalf("Key() = %q", got)
	}
}
