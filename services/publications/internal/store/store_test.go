package store_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/services/publications/internal/publication"
	"github.com/marketmesh/marketmesh/services/publications/internal/store"
)

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func newStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "publications", "publications.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type spec struct {
	seller, product, title string
	amount                 int64
	currency               string
	qty                    int64
	status                 string
}

func newPub(sp spec) publication.Publication {
	if sp.currency == "" {
		sp.currency = "USD"
	}
	if sp.status == "" {
		sp.status = publicationsrpc.StatusActive
	}
	if sp.amount == 0 {
		sp.amount = 1000
	}
	if sp.title == "" {
		sp.title = "Thing"
	}
	return publication.Publication{
		ID: ulid.Make().String(), SellerID: sp.seller, ProductID: sp.product, Title: sp.title,
		Price: money.Money{Amount: sp.amount, Currency: sp.currency}, Quantity: sp.qty,
		Condition: "new", Status: sp.status, CreatedAt: t0, UpdatedAt: t0,
	}
}

func mustCreate(t *testing.T, s *store.Store, sp spec) publication.Publication {
	t.Helper()
	p := newPub(sp)
	if err := s.Create(p, store.NewStamp(t0)); err != nil {
		t.Fatalf("Create(%+v) = %v", sp, err)
	}
	return p
}

func outbox(t *testing.T, s *store.Store) []events.Event {
	t.Helper()
	evs, err := events.Outbox(s.Bolt())
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func payload(t *testing.T, ev events.Event) publicationsrpc.PublicationChanged {
	t.Helper()
	if ev.Topic != publicationsrpc.TopicPublicationChanged || ev.Source != publicationsrpc.Service {
		t.Fatalf("event %s from %s, want %s from %s", ev.Topic, ev.Source, publicationsrpc.TopicPublicationChanged, publicationsrpc.Service)
	}
	var pc publicationsrpc.PublicationChanged
	if err := ev.Decode(&pc); err != nil {
		t.Fatal(err)
	}
	return pc
}

func changedOf(p publication.Publication) publicationsrpc.PublicationChanged {
	return publicationsrpc.PublicationChanged{PublicationID: p.ID, ProductID: p.ProductID, SellerID: p.SellerID,
		Price: p.Price, Quantity: p.Quantity, Status: p.Status}
}

func mustGet(t *testing.T, s *store.Store, id string) publication.Publication {
	t.Helper()
	p, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOpenCreatesEveryBucketAndReopens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	s, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	p := mustCreate(t, s, spec{seller: "s1", product: "x", qty: 1})
	s.Close()
	s, err = store.Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if err := s.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, p.ID); got.Title != p.Title {
		t.Errorf("after reopen: %+v", got)
	}
	err = s.Bolt().View(func(tx *bolt.Tx) error {
		for _, b := range []string{"publications", "publications.by_product", "publications.by_seller", "publications.by_seller_status",
			"publications.by_status", "publications.by_price", "publications.postings", "publications.docs",
			"reservations", "reservations.by_expiry", "deleted_products", "events.outbox", "events.cursors", "events.inbox"} {
			if tx.Bucket([]byte(b)) == nil {
				return fmt.Errorf("bucket %s missing", b)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestEveryStateChangeWritesOnePublicationChangedEvent(t *testing.T) {
	s := newStore(t)
	p := mustCreate(t, s, spec{seller: "s1", product: "x", amount: 500, qty: 5})
	steps := []struct {
		name   string
		do     func() error
		events int // new events expected
	}{
		{"create", func() error { return nil }, 1},
		{"a price change", func() error {
			_, _, err := s.Update(p.ID, store.NewStamp(t0), func(p *publication.Publication) error { p.Price.Amount = 600; return nil })
			return err
		}, 1},
		{"an update that changes nothing", func() error {
			_, _, err := s.Update(p.ID, store.NewStamp(t0), func(p *publication.Publication) error { p.Price.Amount = 600; return nil })
			return err
		}, 0},
		{"a quantity change", func() error {
			_, _, err := s.Update(p.ID, store.NewStamp(t0), func(p *publication.Publication) error { p.Quantity = 4; return nil })
			return err
		}, 1},
		{"a status change", func() error {
			_, _, err := s.Update(p.ID, store.NewStamp(t0), func(p *publication.Publication) error { p.Status = "paused"; return nil })
			return err
		}, 1},
		{"a status change back", func() error {
			_, _, err := s.Update(p.ID, store.NewStamp(t0), func(p *publication.Publication) error { p.Status = "active"; return nil })
			return err
		}, 1},
		{"a reservation", func() error { _, err := s.Reserve("r1", p.ID, 2, time.Minute, store.NewStamp(t0)); return err }, 1},
		{"a repeated reservation", func() error { _, err := s.Reserve("r1", p.ID, 2, time.Minute, store.NewStamp(t0)); return err }, 0},
		{"a commit (the available quantity does not move)", func() error { _, err := s.Commit("r1", store.NewStamp(t0)); return err }, 0},
		{"a second reservation", func() error { _, err := s.Reserve("r2", p.ID, 1, time.Minute, store.NewStamp(t0)); return err }, 1},
		{"a release", func() error { _, err := s.Release("r2", store.NewStamp(t0)); return err }, 1},
		{"a repeated release", func() error { _, err := s.Release("r2", store.NewStamp(t0)); return err }, 0},
		{"an expiry", func() error {
			if _, err := s.Reserve("r3", p.ID, 1, time.Minute, store.NewStamp(t0)); err != nil {
				return err
			}
			n, err := s.ExpireDue(store.NewStamp(t0.Add(time.Hour)), 10)
			if n != 1 {
				return fmt.Errorf("expired %d, want 1", n)
			}
			return err
		}, 2},
		{"a restock of the committed reservation", func() error { _, err := s.Restock("r1", store.NewStamp(t0)); return err }, 1},
		{"a repeated restock", func() error { _, err := s.Restock("r1", store.NewStamp(t0)); return err }, 0},
	}
	seen := 0
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		evs := outbox(t, s)
		if got := len(evs) - seen; got != st.events {
			t.Fatalf("%s wrote %d events, want %d", st.name, got, st.events)
		}
		seen = len(evs)
		if st.events > 0 {
			// The last event carries the state after the change.
			if got, want := payload(t, evs[len(evs)-1]), changedOf(mustGet(t, s, p.ID)); got != want {
				t.Errorf("%s: payload %+v, want %+v", st.name, got, want)
			}
		}
		checkIndexes(t, s)
	}
}

func TestAFailingWriteLeavesNoEventAndNoChange(t *testing.T) {
	s := newStore(t)
	p := mustCreate(t, s, spec{seller: "s1", product: "x", title: "Brass lamp", amount: 500, qty: 5})
	if _, err := s.Reserve("held", p.ID, 1, time.Minute, store.NewStamp(t0)); err != nil {
		t.Fatal(err)
	}
	before := len(outbox(t, s))
	boom := errors.New("disk on fire")
	store.FailAfterEvent(s, boom)

	fresh := newPub(spec{seller: "s2", product: "y", title: "Copper kettle", qty: 1})
	writes := []struct {
		name string
		do   func() error
	}{
		{"create", func() error { return s.Create(fresh, store.NewStamp(t0)) }},
		{"update", func() error {
			_, _, err := s.Update(p.ID, store.NewStamp(t0), func(p *publication.Publication) error { p.Price.Amount = 1; p.Status = "paused"; return nil })
			return err
		}},
		{"reserve", func() error { _, err := s.Reserve("r1", p.ID, 1, time.Minute, store.NewStamp(t0)); return err }},
		{"release", func() error { _, err := s.Release("held", store.NewStamp(t0)); return err }},
		{"expire", func() error { _, err := s.ExpireDue(store.NewStamp(t0.Add(time.Hour)), 10); return err }},
	}
	for _, w := range writes {
		t.Run(w.name+" rolls back with its event", func(t *testing.T) {
			if err := w.do(); !errors.Is(err, boom) {
				t.Fatalf("err = %v, want %v", err, boom)
			}
			if n := len(outbox(t, s)); n != before {
				t.Fatalf("outbox has %d events, want %d", n, before)
			}
		})
	}
	store.FailAfterEvent(s, nil)

	if _, err := s.Get(fresh.ID); !errors.Is(err, publication.ErrNotFound) {
		t.Errorf("the failed create is readable: %v", err)
	}
	if n, _ := s.CountBySeller("s2", ""); n != 0 {
		t.Errorf("the failed create is in the seller index: %d", n)
	}
	got := mustGet(t, s, p.ID)
	if got.Price.Amount != 500 || got.Status != "active" || got.Quantity != 4 || got.Reserved != 1 {
		t.Errorf("after failed writes: %+v", got)
	}
	if ps, _, _ := s.Search(mustSearch(t, publicationsrpc.SearchRequest{Query: "kettle"})); len(ps) != 0 {
		t.Errorf("the failed create is in the text index: %+v", ps)
	}
	if ps, _, _ := s.Search(mustSearch(t, publicationsrpc.SearchRequest{Status: "paused"})); len(ps) != 0 {
		t.Errorf("the failed update is in the status index: %+v", ps)
	}
	if _, err := s.GetReservation("r1"); !errors.Is(err, publication.ErrNotFound) {
		t.Errorf("the failed reservation exists: %v", err)
	}
	if r, _ := s.GetReservation("held"); r.Status != "held" {
		t.Errorf("the failed release changed the reservation: %+v", r)
	}
	checkIndexes(t, s)
}

func TestUpdateKeepsIndexesInStep(t *testing.T) {
	s := newStore(t)
	p := mustCreate(t, s, spec{seller: "s1", product: "x", amount: 500, qty: 5})
	if _, _, err := s.Update(p.ID, store.NewStamp(t0), func(p *publication.Publication) error {
		p.Status = "paused"
		p.Price = money.Money{Amount: 700, Currency: "EUR"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ids := func(req publicationsrpc.SearchRequest) []string {
		ps, _, err := s.Search(mustSearch(t, req))
		if err != nil {
			t.Fatal(err)
		}
		return idsOf(ps)
	}
	checks := []struct {
		name string
		req  publicationsrpc.SearchRequest
		want int
	}{
		{"found by the new status", publicationsrpc.SearchRequest{Status: "paused"}, 1},
		{"not found by the old status", publicationsrpc.SearchRequest{Status: "active"}, 0},
		{"found by the new price", publicationsrpc.SearchRequest{MinPrice: ptr[int64](700), MaxPrice: ptr[int64](700), Currency: "EUR"}, 1},
		{"not found by the old price", publicationsrpc.SearchRequest{MinPrice: ptr[int64](500), MaxPrice: ptr[int64](500)}, 0},
		{"found by seller and new status", publicationsrpc.SearchRequest{SellerID: "s1", Status: "paused"}, 1},
		{"not found by seller and old status", publicationsrpc.SearchRequest{SellerID: "s1", Status: "active"}, 0},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if got := ids(c.req); len(got) != c.want {
				t.Fatalf("got %v, want %d", got, c.want)
			}
		})
	}
	if n, _ := s.CountBySeller("s1", "paused"); n != 1 {
		t.Errorf("paused count = %d", n)
	}
	if n, _ := s.CountBySeller("s1", "active"); n != 0 {
		t.Errorf("active count = %d", n)
	}
	checkIndexes(t, s)
}

func TestUpdateOfAMissingPublicationIsNotFound(t *testing.T) {
	s := newStore(t)
	_, _, err := s.Update("nope", store.NewStamp(t0), func(*publication.Publication) error { return nil })
	if !errors.Is(err, publication.ErrNotFound) || !strings.Contains(err.Error(), "publication nope not found") {
		t.Fatalf("err = %v", err)
	}
}

func TestCountBySeller(t *testing.T) {
	s := newStore(t)
	for _, sp := range []spec{
		{seller: "a", status: "active"}, {seller: "a", status: "active"}, {seller: "a", status: "paused"},
		{seller: "a", status: "closed"}, {seller: "ab", status: "active"}, {seller: "b", status: "active"},
	} {
		mustCreate(t, s, sp)
	}
	tests := []struct {
		name, seller, status string
		want                 int64
	}{
		{"every status of a seller", "a", "", 4},
		{"active ones of a seller", "a", "active", 2},
		{"paused ones of a seller", "a", "paused", 1},
		{"closed ones of a seller", "a", "closed", 1},
		{"a seller whose ID extends another's is counted apart", "ab", "", 1},
		{"a seller with nothing", "zz", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := s.CountBySeller(tt.seller, tt.status)
			if err != nil || n != tt.want {
				t.Fatalf("CountBySeller(%q, %q) = %d, %v, want %d", tt.seller, tt.status, n, err, tt.want)
			}
		})
	}
}

func TestGetManyKeepsRequestOrder(t *testing.T) {
	s := newStore(t)
	a := mustCreate(t, s, spec{seller: "s"})
	b := mustCreate(t, s, spec{seller: "s"})
	c := mustCreate(t, s, spec{seller: "s"})
	got, err := s.GetMany([]string{c.ID, "missing", a.ID, c.ID, b.ID})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{c.ID, a.ID, b.ID}; !slices.Equal(idsOf(got), want) {
		t.Fatalf("GetMany = %v, want %v", idsOf(got), want)
	}
}
