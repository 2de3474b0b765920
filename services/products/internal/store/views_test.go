package store_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/services/products/internal/product"
	"github.com/marketmesh/marketmesh/services/products/internal/store"
)

// lastTxID is the ID of the last committed write transaction.
func lastTxID(t *testing.T, s *store.Store) int {
	t.Helper()
	var id int
	if err := s.Bolt().View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestViewsAreBatchedInMemoryUntilFlushed(t *testing.T) {
	s, _ := newStore(t)
	seen := create(t, s, spec{name: "Seen once"})
	hot := create(t, s, spec{name: "Hot item"})
	s.Get(seen.ID, true)
	if err := s.FlushViews(); err != nil {
		t.Fatal(err)
	}

	tx := lastTxID(t, s)
	for i := 1; i <= 3; i++ {
		p, err := s.Get(hot.ID, true)
		if err != nil {
			t.Fatal(err)
		}
		if p.ViewCount != int64(i) {
			t.Fatalf("view %d: ViewCount = %d", i, p.ViewCount)
		}
	}
	if got := lastTxID(t, s); got != tx {
		t.Fatalf("counting views wrote to the database (tx %d → %d)", tx, got)
	}
	if n := s.PendingViews(); n != 3 {
		t.Fatalf("PendingViews = %d, want 3", n)
	}
	if p, _ := s.Get(hot.ID, false); p.ViewCount != 3 {
		t.Fatalf("a read without counting shows %d views, want 3 (pending included)", p.ViewCount)
	}
	if got := all(t, s, product.Query{Sort: "popular"}); !slices.Equal(got, ids(seen, hot)) {
		t.Fatalf("popular before the flush = %v: pending views are not in the index yet", names(t, s, got))
	}

	if err := s.FlushViews(); err != nil {
		t.Fatal(err)
	}
	if got := lastTxID(t, s); got != tx+1 {
		t.Fatalf("a flush took %d transactions, want 1", got-tx)
	}
	if n := s.PendingViews(); n != 0 {
		t.Fatalf("PendingViews after flush = %d", n)
	}
	if p, _ := s.Get(hot.ID, false); p.ViewCount != 3 {
		t.Fatalf("ViewCount after flush = %d, want 3", p.ViewCount)
	}
	if got := all(t, s, product.Query{Sort: "popular"}); !slices.Equal(got, ids(hot, seen)) {
		t.Fatalf("popular after the flush = %v", names(t, s, got))
	}
	if err := s.FlushViews(); err != nil || lastTxID(t, s) != tx+1 {
		t.Fatalf("a flush with nothing pending wrote (err %v)", err)
	}
}

// TestViewCountsStayExactDuringConcurrentFlushes counts views from many
// goroutines while another flushes continuously: a reader must never see
// the count go down (a batch counted neither in memory nor on disk) or jump
// past the views made (a batch counted twice).
func TestViewCountsStayExactDuringConcurrentFlushes(t *testing.T) {
	s, _ := newStore(t)
	p := create(t, s, spec{name: "Viral"})
	const viewers, each = 4, 150
	ctx, cancel := context.WithCancel(context.Background())
	var flusher, readers sync.WaitGroup
	flusher.Go(func() {
		for ctx.Err() == nil {
			if err := s.FlushViews(); err != nil {
				t.Error(err)
				return
			}
		}
	})
	var made sync.WaitGroup
	for range viewers {
		made.Go(func() {
			for range each {
				if _, err := s.Get(p.ID, true); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	readers.Go(func() {
		last := int64(0)
		for ctx.Err() == nil {
			got, err := s.Get(p.ID, false)
			if err != nil {
				t.Error(err)
				return
			}
			if got.ViewCount < last || got.ViewCount > viewers*each {
				t.Errorf("ViewCount went from %d to %d", last, got.ViewCount)
				return
			}
			last = got.ViewCount
		}
	})
	made.Wait()
	cancel()
	flusher.Wait()
	readers.Wait()
	if got, _ := s.Get(p.ID, false); got.ViewCount != viewers*each {
		t.Fatalf("ViewCount = %d, want %d", got.ViewCount, viewers*each)
	}
	if err := s.FlushViews(); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(p.ID, false); got.ViewCount != viewers*each || s.PendingViews() != 0 {
		t.Fatalf("after the last flush: ViewCount %d, pending %d", got.ViewCount, s.PendingViews())
	}
}

func TestViewFlusherFlushesPeriodicallyAndWhenStopped(t *testing.T) {
	s, _ := newStore(t)
	p := create(t, s, spec{name: "Gadget"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ViewFlusher(20 * time.Millisecond)(ctx)
	}()
	s.Get(p.ID, true)
	deadline := time.Now().Add(5 * time.Second)
	for s.PendingViews() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the flusher did not flush within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.Get(p.ID, true)
	cancel()
	<-done
	if n := s.PendingViews(); n != 0 {
		t.Fatalf("%d views left pending after the flusher stopped", n)
	}
	if got := all(t, s, product.Query{Sort: "popular"}); len(got) != 1 {
		t.Fatalf("popular = %v", got)
	}
	if got, _ := s.Get(p.ID, false); got.ViewCount != 2 {
		t.Fatalf("ViewCount = %d, want 2", got.ViewCount)
	}
}
