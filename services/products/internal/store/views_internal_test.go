package store

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/services/products/internal/product"
)

// openLarge opens a store whose memory map never needs to grow in these
// tests: a writer growing it would wait for the open read transaction the
// tests hold on purpose.
func openLarge(t *testing.T) (*Store, product.Product) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "p.db"), 0o600, &bolt.Options{Timeout: time.Second, InitialMmapSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(createBuckets); err != nil {
		t.Fatal(err)
	}
	s := &Store{db: db}
	s.views.init(0)
	t.Cleanup(func() { s.Close() })
	p, err := product.New(ulid.Make().String(), "u1", product.Draft{Name: "Thing", Category: "misc"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create(p); err != nil {
		t.Fatal(err)
	}
	return s, p
}

func TestAReadJustAfterAFlushCommitsCountsTheBatchOnce(t *testing.T) {
	s, p := openLarge(t)
	for range 3 {
		s.Get(p.ID, true)
	}
	var got int64 = -1
	s.views.afterCommit = func() { // committed, batch not yet dropped
		r, err := s.Get(p.ID, false)
		if err != nil {
			t.Error(err)
		}
		got = r.ViewCount
	}
	if err := s.FlushViews(); err != nil {
		t.Fatal(err)
	}
	if got != 3 {
		t.Fatalf("a read between commit and drop saw %d views, want 3", got)
	}
}

func TestAReadWhoseSnapshotPredatesAFlushStillCountsTheBatch(t *testing.T) {
	s, p := openLarge(t)
	for range 3 {
		s.Get(p.ID, true)
	}
	snapshot, committed, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	s.views.afterCommit = func() { close(committed) }
	go func() {
		<-snapshot
		done <- s.FlushViews()
	}()
	var got uint64
	err := s.view(func(tx *bolt.Tx, pending func(string) uint64) error {
		f, err := decodeFacets(tx.Bucket(facetsBucket).Get([]byte(p.ID)))
		if err != nil {
			return err
		}
		close(snapshot) // our snapshot has 0 stored views
		select {
		case <-committed:
		case <-time.After(5 * time.Second):
			t.Error("the flush did not commit while a read was open")
		}
		time.Sleep(20 * time.Millisecond) // room for a flusher that does not wait for readers to drop the batch
		got = f.views + pending(p.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got != 3 {
		t.Fatalf("a read from before the commit saw %d views, want 3", got)
	}
	if r, _ := s.Get(p.ID, false); r.ViewCount != 3 {
		t.Fatalf("after the flush: %d views, want 3", r.ViewCount)
	}
}
