package store_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/services/publications/internal/publication"
	"github.com/marketmesh/marketmesh/services/publications/internal/store"
)

// expiryEntries counts the reservations in the expiry index.
func expiryEntries(t *testing.T, s *store.Store) int {
	t.Helper()
	n := 0
	err := s.Bolt().View(func(tx *bolt.Tx) error {
		n = tx.Bucket([]byte("reservations.by_expiry")).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func stockOf(t *testing.T, s *store.Store, id string) publication.Stock {
	t.Helper()
	p := mustGet(t, s, id)
	return publication.Stock{Quantity: p.Quantity, Reserved: p.Reserved}
}

func TestReserveRules(t *testing.T) {
	s := newStore(t)
	active := mustCreate(t, s, spec{seller: "s", qty: 3})
	paused := mustCreate(t, s, spec{seller: "s", qty: 3, status: "paused"})
	closed := mustCreate(t, s, spec{seller: "s", qty: 3, status: "closed"})
	tests := []struct {
		name    string
		id, pub string
		qty     int64
		wantErr error
		msg     string
	}{
		{"a paused publication is not available", "r-paused", paused.ID, 1, publication.ErrNotAvailable, "not available"},
		{"a closed publication is not available", "r-closed", closed.ID, 1, publication.ErrNotAvailable, "not available"},
		{"an unknown publication is not found", "r-missing", "nope", 1, publication.ErrNotFound, "publication nope not found"},
		{"more than available is out of stock", "r-many", active.ID, 4, publication.ErrOutOfStock, "out of stock: 3 available"},
		{"all that is available is held", "r-all", active.ID, 3, nil, ""},
		{"nothing left is out of stock", "r-more", active.ID, 1, publication.ErrOutOfStock, "out of stock: 0 available"},
		{"the same ID with the same terms is the same reservation", "r-all", active.ID, 3, nil, ""},
		{"the same ID with another quantity is a conflict", "r-all", active.ID, 2, publication.ErrReservationMismatch, "already exists"},
		{"the same ID for another publication is a conflict", "r-all", paused.ID, 3, publication.ErrReservationMismatch, "already exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := s.Reserve(tt.id, tt.pub, tt.qty, time.Minute, store.NewStamp(t0))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Reserve = %+v, %v, want %v", r, err, tt.wantErr)
			}
			if err != nil {
				if tt.msg != "" && !strings.Contains(err.Error(), tt.msg) {
					t.Errorf("message %q does not say %q", err, tt.msg)
				}
				return
			}
			if r.Status != "held" || r.Quantity != tt.qty || !r.ExpiresAt.Equal(t0.Add(time.Minute)) {
				t.Errorf("reservation = %+v", r)
			}
		})
	}
	if got := stockOf(t, s, active.ID); got != (publication.Stock{Quantity: 0, Reserved: 3}) {
		t.Errorf("stock = %+v, want 0 available and 3 reserved (held once)", got)
	}
	for _, p := range []publication.Publication{paused, closed} {
		if got := stockOf(t, s, p.ID); got != (publication.Stock{Quantity: 3}) {
			t.Errorf("stock of %s = %+v, want untouched", p.Status, got)
		}
	}
	if n := expiryEntries(t, s); n != 1 {
		t.Errorf("expiry index has %d entries, want 1", n)
	}
}

// TestCommitAndReleaseStateMachine runs each sequence on a fresh
// reservation of 2 units out of 5 and checks every answer and the stock.
func TestCommitAndReleaseStateMachine(t *testing.T) {
	type step struct {
		action  string // commit, release, expire (the sweeper)
		at      time.Duration
		status  string // the answer's status, when no error
		wantErr error
	}
	tests := []struct {
		name  string
		steps []step
		stock publication.Stock
	}{
		{"commit sells the units", []step{{"commit", 0, "committed", nil}}, publication.Stock{Quantity: 3}},
		{"commit twice answers the same", []step{{"commit", 0, "committed", nil}, {"commit", 0, "committed", nil}}, publication.Stock{Quantity: 3}},
		{"release returns the units", []step{{"release", 0, "released", nil}}, publication.Stock{Quantity: 5}},
		{"release twice answers the same", []step{{"release", 0, "released", nil}, {"release", 0, "released", nil}}, publication.Stock{Quantity: 5}},
		{"release after commit is a conflict", []step{{"commit", 0, "committed", nil}, {"release", 0, "", publication.ErrReservationState}}, publication.Stock{Quantity: 3}},
		{"commit after release is a conflict", []step{{"release", 0, "released", nil}, {"commit", 0, "", publication.ErrReservationState}}, publication.Stock{Quantity: 5}},
		{"commit after expiry is a conflict", []step{{"expire", time.Hour, "", nil}, {"commit", time.Hour, "", publication.ErrReservationState}}, publication.Stock{Quantity: 5}},
		{"release after expiry answers expired", []step{{"expire", time.Hour, "", nil}, {"release", time.Hour, "expired", nil}}, publication.Stock{Quantity: 5}},
		{"commit when time is up but not swept is a conflict and expires it", []step{{"commit", time.Minute, "", publication.ErrReservationState}, {"release", time.Hour, "expired", nil}}, publication.Stock{Quantity: 5}},
		{"release when time is up but not swept answers expired", []step{{"release", time.Minute, "expired", nil}}, publication.Stock{Quantity: 5}},
		{"commit just before the time is up succeeds", []step{{"commit", time.Minute - time.Nanosecond, "committed", nil}, {"expire", time.Hour, "", nil}}, publication.Stock{Quantity: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			p := mustCreate(t, s, spec{seller: "s", qty: 5})
			if _, err := s.Reserve("r1", p.ID, 2, time.Minute, store.NewStamp(t0)); err != nil {
				t.Fatal(err)
			}
			for i, st := range tt.steps {
				var r publication.Reservation
				var err error
				switch st.action {
				case "commit":
					r, err = s.Commit("r1", store.NewStamp(t0.Add(st.at)))
				case "release":
					r, err = s.Release("r1", store.NewStamp(t0.Add(st.at)))
				case "expire":
					_, err = s.ExpireDue(store.NewStamp(t0.Add(st.at)), 100)
				}
				if !errors.Is(err, st.wantErr) {
					t.Fatalf("step %d (%s): err = %v, want %v", i, st.action, err, st.wantErr)
				}
				if st.wantErr != nil && !errors.Is(err, publication.ErrConflict) {
					t.Errorf("step %d: %v is not a conflict", i, err)
				}
				if st.status != "" && r.Status != st.status {
					t.Fatalf("step %d (%s): status %q, want %q", i, st.action, r.Status, st.status)
				}
			}
			if got := stockOf(t, s, p.ID); got != tt.stock {
				t.Errorf("stock = %+v, want %+v", got, tt.stock)
			}
			if n := expiryEntries(t, s); n != 0 {
				t.Errorf("expiry index keeps %d entries of a settled reservation", n)
			}
			checkIndexes(t, s)
		})
	}
	t.Run("an unknown reservation is not found", func(t *testing.T) {
		s := newStore(t)
		for _, act := range []func(string, store.Stamp) (publication.Reservation, error){s.Commit, s.Release, s.Restock} {
			if _, err := act("nope", store.NewStamp(t0)); !errors.Is(err, publication.ErrNotFound) {
				t.Fatalf("err = %v, want ErrNotFound", err)
			}
		}
	})
}

func TestReserveReplayAfterExpiryAnswersExpired(t *testing.T) {
	s := newStore(t)
	p := mustCreate(t, s, spec{seller: "s", qty: 2})
	if _, err := s.Reserve("r1", p.ID, 2, time.Minute, store.NewStamp(t0)); err != nil {
		t.Fatal(err)
	}
	r, err := s.Reserve("r1", p.ID, 2, time.Minute, store.NewStamp(t0.Add(2*time.Minute)))
	if err != nil || r.Status != publicationsrpc.ReservationExpired {
		t.Fatalf("replay after expiry = %+v, %v, want the reservation, expired", r, err)
	}
	if got := stockOf(t, s, p.ID); got != (publication.Stock{Quantity: 2}) {
		t.Errorf("stock = %+v, want the units back", got)
	}
}

func TestExpireDueUsesTheExpiryIndex(t *testing.T) {
	s := newStore(t)
	p := mustCreate(t, s, spec{seller: "s", qty: 10})
	for i, ttl := range []time.Duration{3 * time.Minute, time.Minute, 2 * time.Minute} {
		if _, err := s.Reserve(fmt.Sprintf("r%d", i), p.ID, 1, ttl, store.NewStamp(t0)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Reserve("done", p.ID, 1, time.Second, store.NewStamp(t0)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit("done", store.NewStamp(t0)); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name     string
		at       time.Duration
		limit    int
		expired  int
		stock    publication.Stock
		heldLeft int
	}{
		{"nothing is due before the first expiry", 59 * time.Second, 100, 0, publication.Stock{Quantity: 6, Reserved: 3}, 3},
		{"a reservation is due at its expiry instant", time.Minute, 100, 1, publication.Stock{Quantity: 7, Reserved: 2}, 2},
		{"a sweep stops at its limit", time.Hour, 1, 1, publication.Stock{Quantity: 8, Reserved: 1}, 1},
		{"the next sweep takes the rest", time.Hour, 100, 1, publication.Stock{Quantity: 9, Reserved: 0}, 0},
		{"a sweep with nothing due does nothing", 2 * time.Hour, 100, 0, publication.Stock{Quantity: 9, Reserved: 0}, 0},
	}
	for _, st := range steps {
		n, err := s.ExpireDue(store.NewStamp(t0.Add(st.at)), st.limit)
		if err != nil || n != st.expired {
			t.Fatalf("%s: ExpireDue = %d, %v, want %d", st.name, n, err, st.expired)
		}
		if got := stockOf(t, s, p.ID); got != st.stock {
			t.Fatalf("%s: stock = %+v, want %+v", st.name, got, st.stock)
		}
		if got := expiryEntries(t, s); got != st.heldLeft {
			t.Fatalf("%s: %d in the expiry index, want %d", st.name, got, st.heldLeft)
		}
	}
	for _, id := range []string{"r0", "r1", "r2"} {
		if r, _ := s.GetReservation(id); r.Status != "expired" {
			t.Errorf("%s = %+v, want expired", id, r)
		}
	}
	if r, _ := s.GetReservation("done"); r.Status != "committed" {
		t.Errorf("the committed reservation = %+v", r)
	}
}

// TestConcurrentReservationsNeverOversell races 50 buyers for 10 units:
// exactly 10 holds succeed, available never goes below zero (watched while
// they run), and the stored state adds up.
func TestConcurrentReservationsNeverOversell(t *testing.T) {
	s := newStore(t)
	p := mustCreate(t, s, spec{seller: "s", qty: 10})
	var ok, out atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 50 {
		wg.Go(func() {
			<-start
			_, err := s.Reserve(fmt.Sprintf("buyer-%d", i), p.ID, 1, time.Minute, store.NewStamp(t0))
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, publication.ErrOutOfStock):
				out.Add(1)
			default:
				t.Errorf("buyer %d: %v", i, err)
			}
		})
	}
	stop := make(chan struct{})
	watched := make(chan error, 1)
	go func() { // a reader watching every committed state
		for {
			select {
			case <-stop:
				watched <- nil
				return
			default:
			}
			got, err := s.Get(p.ID)
			if err == nil && (got.Quantity < 0 || got.Quantity+got.Reserved != 10) {
				err = fmt.Errorf("seen quantity %d reserved %d", got.Quantity, got.Reserved)
			}
			if err != nil {
				watched <- err
				return
			}
		}
	}()
	close(start)
	wg.Wait()
	close(stop)
	if err := <-watched; err != nil {
		t.Fatal(err)
	}
	if ok.Load() != 10 || out.Load() != 40 {
		t.Fatalf("%d held, %d out of stock, want 10 and 40", ok.Load(), out.Load())
	}
	if got := stockOf(t, s, p.ID); got != (publication.Stock{Quantity: 0, Reserved: 10}) {
		t.Fatalf("stock = %+v", got)
	}
	held := 0
	for i := range 50 {
		if r, err := s.GetReservation(fmt.Sprintf("buyer-%d", i)); err == nil && r.Status == "held" {
			held++
		}
	}
	if held != 10 || expiryEntries(t, s) != 10 {
		t.Fatalf("%d held reservations stored, %d in the expiry index, want 10", held, expiryEntries(t, s))
	}
	checkIndexes(t, s)
}

// TestRestockRoundTrip runs a committed reservation back onto the shelf on a
// real bbolt file: the units return once, however often it is asked, and the
// reservation keeps the snapshot it was taken with across a reopen.
func TestRestockRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "publications.db")
	s, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	p := mustCreate(t, s, spec{seller: "seller-1", product: "prod-1", title: "Brass lamp", amount: 2599, qty: 10})
	snapshot := publication.Reservation{ProductID: "prod-1", SellerID: "seller-1", Title: "Brass lamp", UnitPrice: money.Money{Amount: 2599, Currency: "USD"}}
	withSnapshot := func(t *testing.T, r publication.Reservation) {
		t.Helper()
		got := publication.Reservation{ProductID: r.ProductID, SellerID: r.SellerID, Title: r.Title, UnitPrice: r.UnitPrice}
		if got != snapshot {
			t.Errorf("snapshot of %s = %+v, want %+v", r.ID, got, snapshot)
		}
	}
	expectStock := func(t *testing.T, want publication.Stock) {
		t.Helper()
		if got := stockOf(t, s, p.ID); got != want {
			t.Fatalf("stock = %+v, want %+v", got, want)
		}
	}

	r, err := s.Reserve("order-1", p.ID, 3, time.Minute, store.NewStamp(t0))
	if err != nil {
		t.Fatal(err)
	}
	withSnapshot(t, r)
	expectStock(t, publication.Stock{Quantity: 7, Reserved: 3})
	// A later price change does not touch the reservation.
	if _, _, err := s.Update(p.ID, store.NewStamp(t0), func(p *publication.Publication) error { p.Price.Amount = 9999; return nil }); err != nil {
		t.Fatal(err)
	}
	if r, err = s.Commit("order-1", store.NewStamp(t0.Add(time.Second))); err != nil || r.Status != publicationsrpc.ReservationCommitted {
		t.Fatalf("Commit = %+v, %v", r, err)
	}
	withSnapshot(t, r)
	expectStock(t, publication.Stock{Quantity: 7})

	events := len(outbox(t, s))
	restocked, err := s.Restock("order-1", store.NewStamp(t0.Add(2*time.Second)))
	if err != nil || restocked.Status != publicationsrpc.ReservationRestocked || restocked.Quantity != 3 || !restocked.UpdatedAt.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("Restock = %+v, %v", restocked, err)
	}
	withSnapshot(t, restocked)
	expectStock(t, publication.Stock{Quantity: 10})
	evs := outbox(t, s)
	if len(evs) != events+1 {
		t.Fatalf("restock wrote %d events, want 1", len(evs)-events)
	}
	if got, want := payload(t, evs[len(evs)-1]), changedOf(mustGet(t, s, p.ID)); got != want || got.Quantity != 10 {
		t.Errorf("payload %+v, want %+v", got, want)
	}

	t.Run("restocking again answers the same and adds nothing", func(t *testing.T) {
		again, err := s.Restock("order-1", store.NewStamp(t0.Add(time.Hour)))
		if err != nil || again != restocked {
			t.Fatalf("Restock again = %+v, %v, want %+v", again, err, restocked)
		}
		expectStock(t, publication.Stock{Quantity: 10})
		if n := len(outbox(t, s)); n != events+1 {
			t.Errorf("%d events, want no new one", n-events-1)
		}
	})
	t.Run("commit and release after a restock are conflicts", func(t *testing.T) {
		for name, act := range map[string]func(string, store.Stamp) (publication.Reservation, error){"commit": s.Commit, "release": s.Release} {
			if _, err := act("order-1", store.NewStamp(t0.Add(time.Hour))); !errors.Is(err, publication.ErrReservationState) {
				t.Errorf("%s = %v, want ErrReservationState", name, err)
			}
		}
		expectStock(t, publication.Stock{Quantity: 10})
	})
	t.Run("a held, released or expired reservation cannot be restocked and nothing changes", func(t *testing.T) {
		for id, ttl := range map[string]time.Duration{"held": 10 * time.Minute, "released": time.Minute, "expired": time.Minute} {
			if _, err := s.Reserve(id, p.ID, 2, ttl, store.NewStamp(t0.Add(time.Hour))); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Release("released", store.NewStamp(t0.Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
		if n, err := s.ExpireDue(store.NewStamp(t0.Add(time.Hour+time.Minute)), 100); n != 1 || err != nil {
			t.Fatalf("ExpireDue = %d, %v, want 1", n, err)
		}
		before := stockOf(t, s, p.ID)
		events := len(outbox(t, s))
		at := t0.Add(time.Hour + time.Minute)
		for _, id := range []string{"held", "released", "expired"} {
			was, _ := s.GetReservation(id)
			_, err := s.Restock(id, store.NewStamp(at))
			if !errors.Is(err, publication.ErrReservationState) || !errors.Is(err, publication.ErrConflict) {
				t.Errorf("Restock(%s) = %v, want ErrReservationState (a conflict)", id, err)
			}
			if now, _ := s.GetReservation(id); now != was {
				t.Errorf("%s changed to %+v", id, now)
			}
		}
		if got := stockOf(t, s, p.ID); got != before {
			t.Errorf("stock = %+v, want %+v", got, before)
		}
		if n := len(outbox(t, s)); n != events {
			t.Errorf("refused restocks wrote %d events", n-events)
		}
	})
	t.Run("a held one whose time is up is expired, not restocked", func(t *testing.T) {
		if _, err := s.Reserve("late", p.ID, 1, time.Minute, store.NewStamp(t0.Add(2*time.Hour))); err != nil {
			t.Fatal(err)
		}
		before := stockOf(t, s, p.ID)
		if _, err := s.Restock("late", store.NewStamp(t0.Add(3*time.Hour))); !errors.Is(err, publication.ErrReservationState) {
			t.Fatalf("Restock = %v, want ErrReservationState", err)
		}
		if r, _ := s.GetReservation("late"); r.Status != publicationsrpc.ReservationExpired {
			t.Errorf("reservation = %+v, want expired", r)
		}
		if got, want := stockOf(t, s, p.ID), (publication.Stock{Quantity: before.Quantity + 1, Reserved: before.Reserved - 1}); got != want {
			t.Errorf("stock = %+v, want %+v (the expiry's units back, no more)", got, want)
		}
	})
	t.Run("a failing restock rolls back with its event", func(t *testing.T) {
		if _, err := s.Reserve("order-2", p.ID, 2, time.Minute, store.NewStamp(t0.Add(4*time.Hour))); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit("order-2", store.NewStamp(t0.Add(4*time.Hour))); err != nil {
			t.Fatal(err)
		}
		before, events := stockOf(t, s, p.ID), len(outbox(t, s))
		boom := errors.New("disk on fire")
		store.FailAfterEvent(s, boom)
		_, err := s.Restock("order-2", store.NewStamp(t0.Add(4*time.Hour)))
		store.FailAfterEvent(s, nil)
		if !errors.Is(err, boom) {
			t.Fatalf("Restock = %v, want %v", err, boom)
		}
		if r, _ := s.GetReservation("order-2"); r.Status != publicationsrpc.ReservationCommitted {
			t.Errorf("reservation = %+v, want still committed", r)
		}
		if got := stockOf(t, s, p.ID); got != before {
			t.Errorf("stock = %+v, want %+v", got, before)
		}
		if n := len(outbox(t, s)); n != events {
			t.Errorf("outbox has %d events, want %d", n, events)
		}
	})
	checkIndexes(t, s)

	t.Run("the snapshot survives reopening the file", func(t *testing.T) {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if s, err = store.Open(path); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetReservation("order-1")
		if err != nil || got != restocked {
			t.Fatalf("after reopen: %+v, %v, want %+v", got, err, restocked)
		}
		var rec store.ReservationRecord
		err = s.Bolt().View(func(tx *bolt.Tx) error {
			return json.Unmarshal(tx.Bucket([]byte("reservations")).Get([]byte("order-1")), &rec)
		})
		if err != nil {
			t.Fatal(err)
		}
		if rec.ProductID != "prod-1" || rec.SellerID != "seller-1" || rec.Title != "Brass lamp" || rec.UnitPrice != snapshot.UnitPrice {
			t.Errorf("stored record = %+v", rec)
		}
		expectStock(t, publication.Stock{Quantity: 6, Reserved: 2}) // "held" and the sold "order-2"
	})
}

func TestAReservationStoredBeforeSnapshotsStillSettles(t *testing.T) {
	s := newStore(t)
	p := mustCreate(t, s, spec{seller: "s", qty: 4})
	old := publication.Reservation{ID: "old", PublicationID: p.ID, Quantity: 1, Status: publicationsrpc.ReservationCommitted, ExpiresAt: t0, CreatedAt: t0, UpdatedAt: t0}
	raw, err := json.Marshal(store.ReservationRecord(old))
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"product_id", "seller_id", "title", "unit_price"} {
		if strings.Contains(string(raw), field) {
			t.Errorf("an empty snapshot is stored with %s: %s", field, raw)
		}
	}
	if err := s.Bolt().Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("reservations")).Put([]byte("old"), raw) }); err != nil {
		t.Fatal(err)
	}
	r, err := s.Restock("old", store.NewStamp(t0.Add(time.Minute)))
	if err != nil || r.Status != publicationsrpc.ReservationRestocked || r.ProductID != "" || r.UnitPrice != (money.Money{}) {
		t.Fatalf("Restock = %+v, %v", r, err)
	}
	if got := stockOf(t, s, p.ID); got != (publication.Stock{Quantity: 5}) {
		t.Errorf("stock = %+v, want 5 available", got)
	}
}
