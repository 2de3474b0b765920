package store

import (
	"fmt"
	"path/filepath"
	"slices"
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

// heldRead is a read transaction kept open in the background, as a slow
// search keeps one.
type heldRead struct {
	ask   chan string
	ans   chan uint64
	done  chan error
	ended bool
}

// holdRead opens a read transaction and returns once its snapshot is taken.
func holdRead(t *testing.T, s *Store) *heldRead {
	t.Helper()
	r := &heldRead{ask: make(chan string), ans: make(chan uint64), done: make(chan error, 1)}
	open, ask := make(chan struct{}), r.ask
	go func() {
		r.done <- s.view(func(tx *bolt.Tx, pending func(string) uint64) error {
			close(open)
			for id := range ask {
				f, err := decodeFacets(tx.Bucket(facetsBucket).Get([]byte(id)))
				if err != nil {
					return err
				}
				r.ans <- f.views + pending(id)
			}
			return nil
		})
	}()
	select {
	case <-open:
	case err := <-r.done:
		t.Fatalf("the read ended before it was held: %v", err)
	}
	return r
}

// views is id's view count as this read's snapshot plus its pending views make it.
func (r *heldRead) views(id string) uint64 {
	r.ask <- id
	return <-r.ans
}

// end closes the read's transaction (once; later calls do nothing).
func (r *heldRead) end(t *testing.T) {
	t.Helper()
	if r.ended {
		return
	}
	r.ended = true
	close(r.ask)
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
}

// within returns what fn returns, failing the test if that takes longer
// than a generous deadline (fn is then left running).
func within[T any](t *testing.T, what string, fn func() T) T {
	t.Helper()
	c := make(chan T, 1)
	go func() { c <- fn() }()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still waiting after 10s", what)
		panic("unreachable")
	}
}

// TestReadsDoNotWaitForAFlushBehindALongRead: while one read transaction
// stays open, a flush commits and returns, and new reads start and finish
// throughout, each counting every view once. (With readers and the flusher
// sharing a RWMutex, the flusher queued behind the long read and every new
// read queued behind the flusher.)
func TestReadsDoNotWaitForAFlushBehindALongRead(t *testing.T) {
	s, p := openLarge(t)
	for range 3 {
		s.Get(p.ID, true)
	}
	long := holdRead(t, s)
	defer long.end(t)
	committed := make(chan struct{})
	s.views.afterCommit = func() { close(committed) }
	flushed := make(chan error, 1)
	go func() { flushed <- s.FlushViews() }()
	within(t, "the flush to commit while a read is open", func() struct{} { <-committed; return struct{}{} })

	reads := 0
	for done := false; !done; reads++ {
		select {
		case err := <-flushed:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		default:
		}
		got := within(t, fmt.Sprintf("read %d after the flush committed", reads), func() int64 {
			r, err := s.Get(p.ID, false)
			if err != nil {
				t.Error(err)
			}
			return r.ViewCount
		})
		if got != 3 {
			t.Fatalf("read %d after the flush committed saw %d views, want 3", reads, got)
		}
	}
	if got := long.views(p.ID); got != 3 {
		t.Fatalf("the read open since before the flush saw %d views, want 3", got)
	}
	long.end(t)
	if r, _ := s.Get(p.ID, false); r.ViewCount != 3 || s.PendingViews() != 0 {
		t.Fatalf("after the long read: %d views (%d pending), want 3 (0)", r.ViewCount, s.PendingViews())
	}
}

// batchGens lists the generations of the batches kept in memory.
func batchGens(s *Store) []uint64 {
	s.views.mu.Lock()
	defer s.views.mu.Unlock()
	var gens []uint64
	for _, b := range s.views.batches {
		gens = append(gens, b.gen)
	}
	return gens
}

// TestBatchesFlushedDuringLongReadsAreCountedOnceThenDropped: reads whose
// snapshots predate one or two flushes count each flushed batch once, and a
// batch is kept in memory only until no running read can lack it.
func TestBatchesFlushedDuringLongReadsAreCountedOnceThenDropped(t *testing.T) {
	s, p := openLarge(t)
	view := func(n int) {
		for range n {
			if _, err := s.Get(p.ID, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	flush := func() {
		t.Helper()
		if err := within(t, "a flush while reads are open", s.FlushViews); err != nil {
			t.Fatal(err)
		}
	}
	view(2)
	a := holdRead(t, s) // before generation 1
	defer a.end(t)
	flush() // generation 1: 2 views
	view(3)
	b := holdRead(t, s) // generation 1 stored, before 2
	defer b.end(t)
	flush() // generation 2: 3 views
	view(1) // pending
	if got, want := a.views(p.ID), uint64(6); got != want {
		t.Fatalf("a read from before both flushes saw %d views, want %d", got, want)
	}
	if got, want := b.views(p.ID), uint64(6); got != want {
		t.Fatalf("a read from between the flushes saw %d views, want %d", got, want)
	}
	if got := within(t, "a new read", func() int64 { r, _ := s.Get(p.ID, false); return r.ViewCount }); got != 6 {
		t.Fatalf("a new read saw %d views, want 6", got)
	}
	if gens := batchGens(s); !slices.Equal(gens, []uint64{1, 2}) {
		t.Fatalf("kept batches %v, want [1 2]", gens)
	}

	a.end(t)
	if gens := batchGens(s); !slices.Equal(gens, []uint64{2}) {
		t.Fatalf("after the oldest read ended: kept batches %v, want [2]", gens)
	}
	if got := b.views(p.ID); got != 6 {
		t.Fatalf("after the oldest read ended, the other saw %d views, want 6", got)
	}
	b.end(t)
	if gens := batchGens(s); len(gens) != 0 {
		t.Fatalf("with no read open: kept batches %v, want none", gens)
	}
	if r, _ := s.Get(p.ID, false); r.ViewCount != 6 || s.PendingViews() != 1 {
		t.Fatalf("at the end: %d views (%d pending), want 6 (1)", r.ViewCount, s.PendingViews())
	}
}

// TestAFailedFlushDuringALongReadLeavesItsViewsPending: a flush that does
// not commit puts its batch back, and no read, old or new, loses or doubles it.
func TestAFailedFlushDuringALongReadLeavesItsViewsPending(t *testing.T) {
	s, p := openLarge(t)
	for range 3 {
		s.Get(p.ID, true)
	}
	broken := []byte("broken") // a facets record the flush cannot decode makes it fail
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(facetsBucket).Put(broken, []byte{1}) }); err != nil {
		t.Fatal(err)
	}
	s.views.add(string(broken))
	long := holdRead(t, s)
	defer long.end(t)
	if err := within(t, "a failing flush while a read is open", s.FlushViews); err == nil {
		t.Fatal("the flush of a corrupt record succeeded")
	}
	if got := long.views(p.ID); got != 3 {
		t.Fatalf("the open read saw %d views after the failed flush, want 3", got)
	}
	if r, _ := s.Get(p.ID, false); r.ViewCount != 3 || s.PendingViews() != 4 {
		t.Fatalf("after the failed flush: %d views (%d pending), want 3 (4)", r.ViewCount, s.PendingViews())
	}
	if gens := batchGens(s); len(gens) != 0 {
		t.Fatalf("the failed batch is still kept as flushed: %v", gens)
	}

	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(facetsBucket).Delete(broken) }); err != nil {
		t.Fatal(err)
	}
	if err := within(t, "a flush while a read is open", s.FlushViews); err != nil {
		t.Fatal(err)
	}
	if got := long.views(p.ID); got != 3 {
		t.Fatalf("the open read saw %d views after the flush, want 3", got)
	}
	long.end(t)
	if r, _ := s.Get(p.ID, false); r.ViewCount != 3 || s.PendingViews() != 0 {
		t.Fatalf("at the end: %d views (%d pending), want 3 (0)", r.ViewCount, s.PendingViews())
	}
}
