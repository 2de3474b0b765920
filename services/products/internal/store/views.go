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
// generation number (viewsGenKey); a reader adds the batches whose
// generation is newer than its snapshot's, and only those.
//
// So a batch stays in memory, after its flush committed, for as long as a
// reader whose snapshot may predate it is running. A reader registers before
// it opens its transaction, under the generation last known committed
// (stored): its snapshot is at least that recent. A committed batch is
// dropped once every running reader registered under its generation or a
// later one. Neither side waits for the other: readers never wait for a
// flush (only for mu, held for a few map operations, never across I/O), and
// a flush never waits for readers to finish.
type viewCounter struct {
	flushMu sync.Mutex // one flush at a time

	mu      sync.Mutex
	pending map[string]uint64 // views since the last flush began
	batches []viewBatch       // flushing (the last, while a flush runs) or flushed, oldest first
	gen     uint64            // the last generation handed out
	stored  uint64            // the last generation known committed
	readers map[uint64]int    // running readers by the generation they registered under

	// afterCommit, when set (by tests), runs between a flush's commit and
	// the publishing of that commit to readers.
	afterCommit func()
}

// viewBatch is the views a flush adds, as generation gen.
type viewBatch struct {
	gen       uint64
	views     map[string]uint64
	committed bool
}

func (v *viewCounter) init(gen uint64) {
	v.pending, v.readers, v.gen, v.stored = map[string]uint64{}, map[uint64]int{}, gen, gen
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

// pendingFor returns the views of id that a snapshot at generation gen lacks.
func (v *viewCounter) pendingFor(id string, gen uint64) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := v.pending[id]
	for _, b := range v.batches {
		if b.gen > gen {
			n += b.views[id]
		}
	}
	return n
}

// enter registers a reader about to open a transaction, whose snapshot will
// be at least as recent as the generation returned; leave ends it.
func (v *viewCounter) enter() uint64 {
	v.mu.Lock()
	g := v.stored
	v.readers[g]++
	v.mu.Unlock()
	return g
}

func (v *viewCounter) leave(g uint64) {
	v.mu.Lock()
	if v.readers[g]--; v.readers[g] == 0 {
		delete(v.readers, g)
		v.drop()
	}
	v.mu.Unlock()
}

// drop forgets the committed batches no running reader can lack: those of
// a generation no newer than the oldest registration. v.mu is held.
func (v *viewCounter) drop() {
	n := 0
	for n < len(v.batches) && v.batches[n].committed && !v.neededBy(v.batches[n].gen) {
		n++
	}
	switch {
	case n == len(v.batches):
		v.batches = nil
	case n > 0:
		clear(v.batches[:n]) // let their maps go
		v.batches = v.batches[n:]
	}
}

// neededBy reports whether a running reader may have a snapshot older than gen.
func (v *viewCounter) neededBy(gen uint64) bool {
	for g := range v.readers {
		if g < gen {
			return true
		}
	}
	return false
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
	defer s.views.leave(s.views.enter())
	return s.db.View(func(tx *bolt.Tx) error {
		gen := viewsGen(tx)
		return fn(tx, func(id string) uint64 { return s.views.pendingFor(id, gen) })
	})
}

// update is view for a write transaction.
func (s *Store) update(fn func(tx *bolt.Tx, pending func(id string) uint64) error) error {
	defer s.views.leave(s.views.enter())
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
	v.batches = append(v.batches, viewBatch{gen: gen, views: batch})
	v.pending = map[string]uint64{}
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

	v.mu.Lock()
	last := len(v.batches) - 1 // this flush's batch: flushMu kept others from adding one
	if err == nil {
		v.batches[last].committed, v.stored = true, gen
		v.drop()
	} else { // not committed: the batch is pending again
		for id, n := range batch {
			v.pending[id] += n
		}
		v.batches[last] = viewBatch{}
		v.batches = v.batches[:last]
	}
	v.mu.Unlock()
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
