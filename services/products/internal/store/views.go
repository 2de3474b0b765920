package store

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// viewCounter batches product views in memory: counting a view on the read
// path is a map increment, never a bbolt write. FlushViews adds the batch to
// the stored counts (and the views index) in one transaction.
//
// A read must count every view exactly once, whether it is still pending,
// being flushed, or stored. Each flush stamps its transaction with a
// generation number (viewsGenKey); a reader adds the batch being flushed
// only if its snapshot predates that generation. The gate makes "the flush
// committed" and "the batch is dropped from memory" one step as far as
// readers are concerned: readers hold it shared for the whole transaction,
// the flusher takes it exclusively only to drop the batch, after commit.
// Lock order: gate, then bbolt; mu is never held while waiting for either.
type viewCounter struct {
	gate    sync.RWMutex
	flushMu sync.Mutex // one flush at a time

	mu       sync.Mutex
	pending  map[string]uint64 // views since the last flush began
	flushing map[string]uint64 // the batch being written, nil when none
	flushGen uint64            // the generation flushing will commit as
	gen      uint64            // the last generation handed out

	// afterCommit, when set (by tests), runs between a flush's commit and
	// the dropping of its batch: the window the gate exists for.
	afterCommit func()
}

func (v *viewCounter) init(gen uint64) {
	v.pending, v.gen = map[string]uint64{}, gen
}

func (v *viewCounter) add(id string) {
	v.mu.Lock()
	v.pending[id]++
	v.mu.Unlock()
}

func (v *viewCounter) forget(id string) {
	v.mu.Lock()
	delete(v.pending, id)
	v.mu.Unlock()
}

// pending returns the views of id that a snapshot at generation gen lacks.
func (v *viewCounter) pendingFor(id string, gen uint64) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := v.pending[id]
	if v.flushing != nil && v.flushGen > gen {
		n += v.flushing[id]
	}
	return n
}

// PendingViews is the number of views counted in memory and not yet flushed.
func (s *Store) PendingViews() int {
	s.views.mu.Lock()
	defer s.views.mu.Unlock()
	n := 0
	for _, c := range s.views.pending {
		n += int(c)
	}
	return n
}

func viewsGen(tx *bolt.Tx) uint64 { return uint64(getCount(tx.Bucket(metaBucket), viewsGenKey)) }

// view runs fn in a read transaction; pending(id) is the number of views of
// id that are not in this transaction's snapshot.
func (s *Store) view(fn func(tx *bolt.Tx, pending func(id string) uint64) error) error {
	s.views.gate.RLock()
	defer s.views.gate.RUnlock()
	return s.db.View(func(tx *bolt.Tx) error {
		gen := viewsGen(tx)
		return fn(tx, func(id string) uint64 { return s.views.pendingFor(id, gen) })
	})
}

// update is view for a write transaction.
func (s *Store) update(fn func(tx *bolt.Tx, pending func(id string) uint64) error) error {
	s.views.gate.RLock()
	defer s.views.gate.RUnlock()
	return s.db.Update(func(tx *bolt.Tx) error {
		gen := viewsGen(tx)
		return fn(tx, func(id string) uint64 { return s.views.pendingFor(id, gen) })
	})
}

// FlushViews adds the views counted in memory to the stored counts and the
// views index, in one transaction. On failure the views stay pending.
func (s *Store) FlushViews() error {
	v := &s.views
	v.flushMu.Lock()
	defer v.flushMu.Unlock()

	v.mu.Lock()
	if len(v.pending) == 0 {
		v.mu.Unlock()
		return nil
	}
	v.gen++
	batch, gen := v.pending, v.gen
	v.flushing, v.flushGen, v.pending = batch, gen, map[string]uint64{}
	v.mu.Unlock()

	err := s.db.Update(func(tx *bolt.Tx) error {
		fb, ix := tx.Bucket(facetsBucket), tx.Bucket(viewsIndex)
		for id, n := range batch {
			raw := fb.Get([]byte(id))
			if raw == nil {
				continue // deleted since it was viewed
			}
			f, err := decodeFacets(raw)
			if err != nil {
				return fmt.Errorf("product %s: %w", id, err)
			}
			if err := ix.Delete(viewsKey(f.views, id)); err != nil {
				return err
			}
			f.views += n
			if err := ix.Put(viewsKey(f.views, id), nil); err != nil {
				return err
			}
			if err := fb.Put([]byte(id), f.encode()); err != nil {
				return err
			}
		}
		return tx.Bucket(metaBucket).Put(viewsGenKey, u64(gen))
	})
	if v.afterCommit != nil {
		v.afterCommit()
	}

	v.gate.Lock()
	v.mu.Lock()
	if err != nil { // not committed: the batch is pending again
		for id, n := range batch {
			v.pending[id] += n
		}
	}
	v.flushing = nil
	v.mu.Unlock()
	v.gate.Unlock()
	if err != nil {
		return fmt.Errorf("store: flush views: %w", err)
	}
	return nil
}

// ViewFlusher returns a worker (for service.Go) that flushes view counts
// every interval and once more when its context ends.
func (s *Store) ViewFlusher(every time.Duration) func(context.Context) {
	return func(ctx context.Context) {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				if err := s.FlushViews(); err != nil {
					slog.Error("products: final view flush failed", "err", err)
				}
				return
			case <-t.C:
				if err := s.FlushViews(); err != nil {
					slog.Error("products: view flush failed; will retry", "err", err)
				}
			}
		}
	}
}
