package handler_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/plugins/rpcfake"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
	"github.com/marketmesh/marketmesh/services/publications/internal/handler"
	"github.com/marketmesh/marketmesh/services/publications/internal/store"
)

// countingNotifier records how often the relay was told about new events.
type countingNotifier struct{ n atomic.Int32 }

func (c *countingNotifier) Notify() { c.n.Add(1) }

// fakeProducts knows a set of products, or fails every question with err.
type fakeProducts struct {
	known map[string]bool
	err   error
	asked atomic.Int32
}

func (f *fakeProducts) ProductExists(_ context.Context, id string) (bool, error) {
	f.asked.Add(1)
	if f.err != nil {
		return false, f.err
	}
	return f.known[id], nil
}

type fixture struct {
	h        *handler.Publications
	store    *store.Store
	products *fakeProducts
	relay    *countingNotifier
}

const maxTTL = 30 * time.Minute

func newFixture(t *testing.T) *fixture {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "publications.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	products := &fakeProducts{known: map[string]bool{"prod-1": true, "prod-2": true}}
	relay := &countingNotifier{}
	return &fixture{h: handler.New(s, products, relay, maxTTL), store: s, products: products, relay: relay}
}

func as(uid string) context.Context { return rpcmeta.WithCaller(context.Background(), uid) }

// fromOrders is a call proven (plugins/svcauth) to come from the orders
// service, the only caller the stock endpoints accept.
func fromOrders() context.Context { return svcauth.WithCaller(context.Background(), ordersrpc.Service) }

func ptr[T any](v T) *T { return &v }

func usd(amount int64) money.Money { return money.Money{Amount: amount, Currency: "USD"} }

func createReq(title string, amount, qty int64) *publicationsrpc.CreateRequest {
	return &publicationsrpc.CreateRequest{ProductID: "prod-1", Title: title, Price: usd(amount), Quantity: qty, Condition: "new"}
}

func (f *fixture) create(t *testing.T, seller string, req *publicationsrpc.CreateRequest) publicationsrpc.Publication {
	t.Helper()
	var p publicationsrpc.Publication
	if err := f.h.Create(as(seller), req, &p); err != nil {
		t.Fatalf("Create(%+v) = %v", req, err)
	}
	return p
}

func (f *fixture) get(t *testing.T, id string) publicationsrpc.Publication {
	t.Helper()
	var p publicationsrpc.Publication
	if err := f.h.Get(context.Background(), &publicationsrpc.IDRequest{ID: id}, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *fixture) outbox(t *testing.T) []events.Event {
	t.Helper()
	evs, err := events.Outbox(f.store.Bolt())
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// microErr fails unless err is a go-micro error of publicationsrpc.Service with code, and returns it.
func microErr(t testing.TB, err error, code int32) *merrors.Error {
	t.Helper()
	return rpcfake.RequireCode(t, err, publicationsrpc.Service, code)
}

func TestCreate(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		ctx    context.Context
		req    *publicationsrpc.CreateRequest
		code   int32
		detail string
	}{
		{"without a caller is 401", context.Background(), createReq("Lamp", 100, 1), 401, "authentication"},
		{"with an empty caller is 401", as(""), createReq("Lamp", 100, 1), 401, "authentication"},
		{"an empty title is 422 naming it", as("s1"), createReq("", 100, 1), 422, "title"},
		{"a long title is 422 naming it", as("s1"), createReq(strings.Repeat("x", 201), 100, 1), 422, "title"},
		{"a zero price is 422 naming it", as("s1"), createReq("Lamp", 0, 1), 422, "price.amount"},
		{"a negative quantity is 422 naming it", as("s1"), createReq("Lamp", 100, -1), 422, "quantity"},
		{"a quantity over a million is 422", as("s1"), createReq("Lamp", 100, 1_000_001), 422, "quantity"},
		{"an unknown condition is 422", as("s1"), &publicationsrpc.CreateRequest{ProductID: "prod-1", Title: "Lamp", Price: usd(1), Condition: "mint"}, 422, "condition"},
		{"a product that does not exist is 422", as("s1"), &publicationsrpc.CreateRequest{ProductID: "ghost", Title: "Lamp", Price: usd(1), Condition: "new"}, 422, "product_id ghost does not exist"},
		{"a missing product_id is 422 without asking products", as("s1"), &publicationsrpc.CreateRequest{Title: "Lamp", Price: usd(1), Condition: "new"}, 422, "product_id is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			me := microErr(t, f.h.Create(tt.ctx, tt.req, &publicationsrpc.Publication{}), tt.code)
			if !strings.Contains(me.Detail, tt.detail) {
				t.Errorf("detail %q does not say %q", me.Detail, tt.detail)
			}
		})
	}
	if n := len(f.outbox(t)); n != 0 || f.relay.n.Load() != 0 {
		t.Fatalf("failed creates wrote %d events, notified %d times", n, f.relay.n.Load())
	}
	if n := f.products.asked.Load(); n != 1 {
		t.Errorf("products was asked %d times, want once (invalid input is rejected first)", n)
	}

	t.Run("a valid request lists the product for the caller, active, with one event", func(t *testing.T) {
		p := f.create(t, "seller-1", &publicationsrpc.CreateRequest{ProductID: "prod-2", Title: "  Brass lamp ", Price: usd(2599), Quantity: 4, Condition: "used"})
		if p.ID == "" || p.SellerID != "seller-1" || p.ProductID != "prod-2" || p.Title != "Brass lamp" || p.Price != usd(2599) ||
			p.Quantity != 4 || p.Reserved != 0 || p.Condition != "used" || p.Status != "active" || p.CreatedAt.IsZero() {
			t.Fatalf("created %+v", p)
		}
		if got := f.get(t, p.ID); got != p {
			t.Errorf("Get = %+v, want %+v", got, p)
		}
		evs := f.outbox(t)
		if len(evs) != 1 || evs[0].Topic != publicationsrpc.TopicPublicationChanged {
			t.Fatalf("outbox = %+v, want one %s", evs, publicationsrpc.TopicPublicationChanged)
		}
		var pc publicationsrpc.PublicationChanged
		if err := evs[0].Decode(&pc); err != nil {
			t.Fatal(err)
		}
		want := publicationsrpc.PublicationChanged{PublicationID: p.ID, ProductID: "prod-2", SellerID: "seller-1", Price: usd(2599), Quantity: 4, Status: "active"}
		if pc != want {
			t.Errorf("payload = %+v, want %+v", pc, want)
		}
		if f.relay.n.Load() != 1 {
			t.Errorf("relay notified %d times, want 1", f.relay.n.Load())
		}
	})

	t.Run("products being down is 503 and nothing is written", func(t *testing.T) {
		f.products.err = merrors.New("marketmesh.products", "products is unavailable (circuit open)", 503)
		defer func() { f.products.err = nil }()
		before := len(f.outbox(t))
		me := microErr(t, f.h.Create(as("s1"), createReq("Lamp", 100, 1), &publicationsrpc.Publication{}), 503)
		if !strings.Contains(me.Detail, "products is unavailable") {
			t.Errorf("detail %q does not pass the cause through", me.Detail)
		}
		if len(f.outbox(t)) != before {
			t.Error("an event was written")
		}
	})
}

func TestGet(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name string
		id   string
		code int32
	}{
		{"an unknown ID is 404", "01HNOPE", 404},
		{"an empty ID is 422", "", 422},
		{"an ID with a NUL is 422", "a\x00b", 422},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			microErr(t, f.h.Get(context.Background(), &publicationsrpc.IDRequest{ID: tt.id}, &publicationsrpc.Publication{}), tt.code)
		})
	}
}

func TestUpdate(t *testing.T) {
	f := newFixture(t)
	p := f.create(t, "owner", createReq("Lamp", 100, 5))
	tests := []struct {
		name   string
		ctx    context.Context
		req    *publicationsrpc.UpdateRequest
		code   int32
		detail string
	}{
		{"without a caller is 401", context.Background(), &publicationsrpc.UpdateRequest{ID: p.ID, Quantity: ptr[int64](1)}, 401, ""},
		{"by another seller is 403", as("mallory"), &publicationsrpc.UpdateRequest{ID: p.ID, Quantity: ptr[int64](1)}, 403, "another seller"},
		{"of an unknown publication is 404", as("owner"), &publicationsrpc.UpdateRequest{ID: "01HNOPE", Quantity: ptr[int64](1)}, 404, "publication 01HNOPE not found"},
		{"with a bad price is 422", as("owner"), &publicationsrpc.UpdateRequest{ID: p.ID, Price: &money.Money{Amount: 5, Currency: "usd"}}, 422, "price.currency"},
		{"with a negative quantity is 422", as("owner"), &publicationsrpc.UpdateRequest{ID: p.ID, Quantity: ptr[int64](-2)}, 422, "quantity"},
		{"with an unknown status is 422", as("owner"), &publicationsrpc.UpdateRequest{ID: p.ID, Status: ptr("sold")}, 422, "status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			me := microErr(t, f.h.Update(tt.ctx, tt.req, &publicationsrpc.Publication{}), tt.code)
			if !strings.Contains(me.Detail, tt.detail) {
				t.Errorf("detail %q does not say %q", me.Detail, tt.detail)
			}
		})
	}
	if got := f.get(t, p.ID); got != p {
		t.Fatalf("failed updates changed the publication: %+v", got)
	}

	steps := []struct {
		name   string
		req    publicationsrpc.UpdateRequest
		check  func(publicationsrpc.Publication) bool
		events int
	}{
		{"the owner changes the price", publicationsrpc.UpdateRequest{Price: &money.Money{Amount: 250, Currency: "EUR"}},
			func(p publicationsrpc.Publication) bool { return p.Price == money.Money{Amount: 250, Currency: "EUR"} }, 1},
		{"the owner changes the quantity", publicationsrpc.UpdateRequest{Quantity: ptr[int64](9)},
			func(p publicationsrpc.Publication) bool { return p.Quantity == 9 }, 1},
		{"the owner pauses it", publicationsrpc.UpdateRequest{Status: ptr("paused")},
			func(p publicationsrpc.Publication) bool { return p.Status == "paused" }, 1},
		{"the owner activates it again", publicationsrpc.UpdateRequest{Status: ptr("active")},
			func(p publicationsrpc.Publication) bool { return p.Status == "active" }, 1},
		{"an update that changes nothing writes no event", publicationsrpc.UpdateRequest{Quantity: ptr[int64](9)},
			func(p publicationsrpc.Publication) bool { return p.Quantity == 9 }, 0},
		{"an empty update answers the publication", publicationsrpc.UpdateRequest{},
			func(p publicationsrpc.Publication) bool { return p.Status == "active" }, 0},
		{"the owner closes it", publicationsrpc.UpdateRequest{Status: ptr("closed"), Quantity: ptr[int64](0)},
			func(p publicationsrpc.Publication) bool { return p.Status == "closed" && p.Quantity == 0 }, 1},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := len(f.outbox(t))
			st.req.ID = p.ID
			var got publicationsrpc.Publication
			if err := f.h.Update(as("owner"), &st.req, &got); err != nil {
				t.Fatal(err)
			}
			if !st.check(got) || got != f.get(t, p.ID) {
				t.Fatalf("answer %+v, stored %+v", got, f.get(t, p.ID))
			}
			if n := len(f.outbox(t)) - before; n != st.events {
				t.Fatalf("%d events, want %d", n, st.events)
			}
		})
	}

	closed := f.get(t, p.ID)
	for _, req := range []publicationsrpc.UpdateRequest{
		{Status: ptr("active")}, {Status: ptr("paused")}, {Status: ptr("closed")}, {Quantity: ptr[int64](3)}, {Price: ptr(usd(1))}, {},
	} {
		t.Run(fmt.Sprintf("a closed publication is final: %s is 409", reqString(req)), func(t *testing.T) {
			req.ID = p.ID
			me := microErr(t, f.h.Update(as("owner"), &req, &publicationsrpc.Publication{}), 409)
			if !strings.Contains(me.Detail, "closed") {
				t.Errorf("detail %q", me.Detail)
			}
			if got := f.get(t, p.ID); got != closed {
				t.Fatalf("changed to %+v", got)
			}
		})
	}
	t.Run("a closed publication is still 403 to others", func(t *testing.T) {
		microErr(t, f.h.Update(as("mallory"), &publicationsrpc.UpdateRequest{ID: p.ID, Status: ptr("active")}, &publicationsrpc.Publication{}), 403)
	})
}

func reqString(r publicationsrpc.UpdateRequest) string {
	var parts []string
	if r.Status != nil {
		parts = append(parts, "status "+*r.Status)
	}
	if r.Quantity != nil {
		parts = append(parts, "quantity")
	}
	if r.Price != nil {
		parts = append(parts, "price")
	}
	if len(parts) == 0 {
		return "an empty update"
	}
	return strings.Join(parts, ", ")
}

func TestGetManyAnswersInRequestOrder(t *testing.T) {
	f := newFixture(t)
	a := f.create(t, "s", createReq("A", 1, 1))
	b := f.create(t, "s", createReq("B", 1, 1))
	c := f.create(t, "s", createReq("C", 1, 1))
	var rsp publicationsrpc.GetManyResponse
	if err := f.h.GetMany(context.Background(), &publicationsrpc.GetManyRequest{IDs: []string{b.ID, "nope", c.ID, a.ID}}, &rsp); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range rsp.Items {
		got = append(got, p.ID)
	}
	if want := []string{b.ID, c.ID, a.ID}; !slices.Equal(got, want) {
		t.Fatalf("GetMany = %v, want %v (unknown IDs left out)", got, want)
	}
	t.Run("no IDs answers no items", func(t *testing.T) {
		var rsp publicationsrpc.GetManyResponse
		if err := f.h.GetMany(context.Background(), &publicationsrpc.GetManyRequest{}, &rsp); err != nil || len(rsp.Items) != 0 {
			t.Fatalf("%+v, %v", rsp, err)
		}
	})
	t.Run("more than 100 IDs is 422", func(t *testing.T) {
		ids := make([]string, 101)
		for i := range ids {
			ids[i] = a.ID
		}
		me := microErr(t, f.h.GetMany(context.Background(), &publicationsrpc.GetManyRequest{IDs: ids}, &publicationsrpc.GetManyResponse{}), 422)
		if !strings.Contains(me.Detail, "ids") {
			t.Errorf("detail %q", me.Detail)
		}
	})
}

func TestSearchAndCount(t *testing.T) {
	f := newFixture(t)
	var ids []string
	for i := range 5 {
		ids = append(ids, f.create(t, "s1", createReq(fmt.Sprintf("Lamp %d", i), int64(100*(i+1)), 1)).ID)
	}
	f.create(t, "s2", createReq("Kettle", 50, 1))
	if err := f.h.Update(as("s1"), &publicationsrpc.UpdateRequest{ID: ids[0], Status: ptr("paused")}, &publicationsrpc.Publication{}); err != nil {
		t.Fatal(err)
	}

	t.Run("pages follow their tokens to the end", func(t *testing.T) {
		req := &publicationsrpc.SearchRequest{SellerID: "s1", PageSize: 2}
		var got []string
		for {
			var rsp publicationsrpc.SearchResponse
			if err := f.h.Search(context.Background(), req, &rsp); err != nil {
				t.Fatal(err)
			}
			for _, p := range rsp.Items {
				got = append(got, p.ID)
			}
			if rsp.NextPageToken == "" {
				break
			}
			req.PageToken = rsp.NextPageToken
		}
		want := slices.Clone(ids)
		slices.Reverse(want)
		if !slices.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	})
	t.Run("a query ranks by relevance", func(t *testing.T) {
		var rsp publicationsrpc.SearchResponse
		if err := f.h.Search(context.Background(), &publicationsrpc.SearchRequest{Query: "kettle"}, &rsp); err != nil {
			t.Fatal(err)
		}
		if len(rsp.Items) != 1 || rsp.Items[0].Title != "Kettle" {
			t.Fatalf("got %+v", rsp.Items)
		}
	})
	errs := []struct {
		name string
		req  publicationsrpc.SearchRequest
		code int32
	}{
		{"a bad page token is 400", publicationsrpc.SearchRequest{PageToken: "garbage!"}, 400},
		{"an unknown sort is 422", publicationsrpc.SearchRequest{Sort: "random"}, 422},
		{"relevance without a query is 422", publicationsrpc.SearchRequest{Sort: "relevance"}, 422},
		{"an unknown status is 422", publicationsrpc.SearchRequest{Status: "sold"}, 422},
		{"min above max is 422", publicationsrpc.SearchRequest{MinPrice: ptr[int64](5), MaxPrice: ptr[int64](1)}, 422},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			microErr(t, f.h.Search(context.Background(), &tt.req, &publicationsrpc.SearchResponse{}), tt.code)
		})
	}

	counts := []struct {
		name, seller, status string
		want                 int64
	}{
		{"a seller's publications", "s1", "", 5},
		{"a seller's active publications", "s1", "active", 4},
		{"a seller's paused publications", "s1", "paused", 1},
		{"another seller's", "s2", "", 1},
		{"a seller without any", "s3", "", 0},
	}
	for _, tt := range counts {
		t.Run("Count of "+tt.name, func(t *testing.T) {
			var rsp publicationsrpc.CountResponse
			if err := f.h.Count(context.Background(), &publicationsrpc.CountRequest{SellerID: tt.seller, Status: tt.status}, &rsp); err != nil {
				t.Fatal(err)
			}
			if rsp.Count != tt.want {
				t.Fatalf("count = %d, want %d", rsp.Count, tt.want)
			}
		})
	}
	t.Run("Count without a seller is 422", func(t *testing.T) {
		microErr(t, f.h.Count(context.Background(), &publicationsrpc.CountRequest{}, &publicationsrpc.CountResponse{}), 422)
	})
	t.Run("Count with an unknown status is 422", func(t *testing.T) {
		microErr(t, f.h.Count(context.Background(), &publicationsrpc.CountRequest{SellerID: "s1", Status: "x"}, &publicationsrpc.CountResponse{}), 422)
	})
}

func (f *fixture) reserve(ctx context.Context, id, pub string, qty, ttl int64) (publicationsrpc.Reservation, error) {
	var r publicationsrpc.Reservation
	err := f.h.Reserve(ctx, &publicationsrpc.ReserveRequest{ReservationID: id, PublicationID: pub, Quantity: qty, TTLSeconds: ttl}, &r)
	return r, err
}

// TestFiftyBuyersForTenUnits is the race: 50 concurrent buyers each
// reserve one unit of a publication with exactly 10 available.
func TestFiftyBuyersForTenUnits(t *testing.T) {
	f := newFixture(t)
	p := f.create(t, "seller", createReq("Limited print", 5000, 10))
	var wg sync.WaitGroup
	var held, outOfStock atomic.Int32
	start := make(chan struct{})
	for i := range 50 {
		wg.Go(func() {
			<-start
			_, err := f.reserve(svcauth.WithCaller(as(fmt.Sprintf("buyer-%d", i)), ordersrpc.Service), fmt.Sprintf("order-%d", i), p.ID, 1, 600)
			if err == nil {
				held.Add(1)
				return
			}
			var me *merrors.Error
			if errors.As(err, &me) && me.Code == 409 && me.Id == "out_of_stock" && strings.Contains(me.Detail, "out of stock: 0 available") {
				outOfStock.Add(1)
				return
			}
			t.Errorf("buyer %d: %v", i, err)
		})
	}
	close(start)
	wg.Wait()
	if held.Load() != 10 || outOfStock.Load() != 40 {
		t.Fatalf("%d reservations, %d out of stock; want 10 and 40", held.Load(), outOfStock.Load())
	}
	got := f.get(t, p.ID)
	if got.Quantity != 0 || got.Reserved != 10 {
		t.Fatalf("after the race: quantity %d reserved %d, want 0 and 10", got.Quantity, got.Reserved)
	}
	stored, err := f.store.Get(p.ID)
	if err != nil || stored.Quantity != 0 || stored.Reserved != 10 {
		t.Fatalf("stored: %+v, %v", stored, err)
	}

	t.Run("releasing gives the units back to the next buyers", func(t *testing.T) {
		released := 0
		for i := range 50 {
			r, err := f.release(fmt.Sprintf("order-%d", i))
			if err != nil {
				var me *merrors.Error
				if errors.As(err, &me) && me.Code == 404 {
					continue // one of the 40 that never held anything
				}
				t.Fatal(err)
			}
			if r.Status != "released" {
				t.Fatalf("release answered %+v", r)
			}
			released++
			if released == 3 {
				break
			}
		}
		if got := f.get(t, p.ID); got.Quantity != 3 || got.Reserved != 7 {
			t.Fatalf("after 3 releases: quantity %d reserved %d, want 3 and 7", got.Quantity, got.Reserved)
		}
		if _, err := f.reserve(fromOrders(), "late-buyer", p.ID, 3, 60); err != nil {
			t.Fatalf("the released units cannot be reserved: %v", err)
		}
		if got := f.get(t, p.ID); got.Quantity != 0 || got.Reserved != 10 {
			t.Fatalf("quantity %d reserved %d, want 0 and 10", got.Quantity, got.Reserved)
		}
	})
}

// settleEndpoint is one of the handler's reservation endpoints (Commit,
// Release, Restock) as a method value.
type settleEndpoint = func(context.Context, *publicationsrpc.ReservationRequest, *publicationsrpc.Reservation) error

// settle calls endpoint for reservation id as the orders service.
func settle(endpoint settleEndpoint, id string) (publicationsrpc.Reservation, error) {
	var r publicationsrpc.Reservation
	err := endpoint(fromOrders(), &publicationsrpc.ReservationRequest{ReservationID: id}, &r)
	return r, err
}

func (f *fixture) commit(id string) (publicationsrpc.Reservation, error) {
	return settle(f.h.Commit, id)
}
func (f *fixture) release(id string) (publicationsrpc.Reservation, error) {
	return settle(f.h.Release, id)
}
func (f *fixture) restock(id string) (publicationsrpc.Reservation, error) {
	return settle(f.h.Restock, id)
}

func TestReserve(t *testing.T) {
	f := newFixture(t)
	p := f.create(t, "seller", createReq("Lamp", 100, 4))
	paused := f.create(t, "seller", createReq("Paused lamp", 100, 4))
	if err := f.h.Update(as("seller"), &publicationsrpc.UpdateRequest{ID: paused.ID, Status: ptr("paused")}, &publicationsrpc.Publication{}); err != nil {
		t.Fatal(err)
	}
	closed := f.create(t, "seller", createReq("Closed lamp", 100, 4))
	if err := f.h.Update(as("seller"), &publicationsrpc.UpdateRequest{ID: closed.ID, Status: ptr("closed")}, &publicationsrpc.Publication{}); err != nil {
		t.Fatal(err)
	}
	const service = publicationsrpc.Service
	tests := []struct {
		name        string
		id, pub     string
		qty, ttl    int64
		code        int32
		errID       string // the go-micro error Id: the machine code of a stock refusal
		detail      string
		wantQty     int64
		wantHeldQty int64
	}{
		{"a ttl over the maximum is 422", "r1", p.ID, 1, int64(maxTTL/time.Second) + 1, 422, service, "ttl_seconds", 4, 0},
		{"a zero ttl is 422", "r1", p.ID, 1, 0, 422, service, "ttl_seconds", 4, 0},
		{"a zero quantity is 422", "r1", p.ID, 0, 60, 422, service, "quantity", 4, 0},
		{"a missing reservation ID is 422", "", p.ID, 1, 60, 422, service, "reservation_id", 4, 0},
		{"an unknown publication is 404", "r1", "01HNOPE", 1, 60, 404, service, "publication 01HNOPE not found", 4, 0},
		{"a paused publication is 409 publication_unavailable", "r1", paused.ID, 1, 60, 409, "publication_unavailable", "not available", 4, 0},
		{"a closed publication is 409 publication_unavailable", "r1", closed.ID, 1, 60, 409, "publication_unavailable", "not available", 4, 0},
		{"more than available is 409 out_of_stock saying how many are", "r1", p.ID, 5, 60, 409, "out_of_stock", "out of stock: 4 available", 4, 0},
		{"a valid hold", "r1", p.ID, 3, 60, 0, "", "", 1, 3},
		{"the same reservation again holds nothing more", "r1", p.ID, 3, 60, 0, "", "", 1, 3},
		{"the same ID with other terms is a plain 409", "r1", p.ID, 1, 60, 409, service, "already exists", 1, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := f.reserve(fromOrders(), tt.id, tt.pub, tt.qty, tt.ttl)
			if tt.code != 0 {
				me := rpcfake.RequireCode(t, err, tt.errID, tt.code)
				if !strings.Contains(me.Detail, tt.detail) {
					t.Errorf("detail %q does not say %q", me.Detail, tt.detail)
				}
			} else if err != nil || r.ID != tt.id || r.Status != "held" || r.Quantity != tt.qty || r.PublicationID != tt.pub ||
				r.ProductID != p.ProductID || r.SellerID != p.SellerID || r.Title != p.Title || r.UnitPrice != p.Price {
				t.Fatalf("Reserve = %+v, %v, want a held reservation with the snapshot of %+v", r, err, p)
			}
			if got := f.get(t, p.ID); got.Quantity != tt.wantQty || got.Reserved != tt.wantHeldQty {
				t.Fatalf("quantity %d reserved %d, want %d and %d", got.Quantity, got.Reserved, tt.wantQty, tt.wantHeldQty)
			}
		})
	}
	t.Run("a replay answers the first reservation exactly", func(t *testing.T) {
		a, err1 := f.reserve(fromOrders(), "r1", p.ID, 3, 600)
		b, err2 := f.reserve(fromOrders(), "r1", p.ID, 3, 5)
		if err1 != nil || err2 != nil || a != b {
			t.Fatalf("%+v %v / %+v %v", a, err1, b, err2)
		}
	})
}

func TestCommitReleaseAndRestock(t *testing.T) {
	f := newFixture(t)
	now := time.Now().UTC()
	handler.SetNow(f.h, func() time.Time { return now })
	p := f.create(t, "seller", createReq("Lamp", 100, 10))
	for _, id := range []string{"to-commit", "to-release", "to-expire", "held"} {
		if _, err := f.reserve(fromOrders(), id, p.ID, 2, 60); err != nil {
			t.Fatal(err)
		}
	}
	commit, release, restock := f.commit, f.release, f.restock
	calls := []struct {
		name    string
		act     func(string) (publicationsrpc.Reservation, error)
		id      string
		advance time.Duration
		code    int32
		status  string
		qty     int64
		held    int64
	}{
		{"restock of a held reservation is 409", restock, "to-commit", 0, 409, "", 2, 8},
		{"commit of a held reservation sells it", commit, "to-commit", 0, 0, "committed", 2, 6},
		{"commit again answers the same", commit, "to-commit", 0, 0, "committed", 2, 6},
		{"release of a committed reservation is 409", release, "to-commit", 0, 409, "", 2, 6},
		{"release of a held reservation returns the units", release, "to-release", 0, 0, "released", 4, 4},
		{"release again answers the same", release, "to-release", 0, 0, "released", 4, 4},
		{"commit of a released reservation is 409", commit, "to-release", 0, 409, "", 4, 4},
		{"restock of a released reservation is 409", restock, "to-release", 0, 409, "", 4, 4},
		{"restock of a committed reservation puts its units back", restock, "to-commit", 0, 0, "restocked", 6, 4},
		{"restock again answers the same and adds nothing", restock, "to-commit", 0, 0, "restocked", 6, 4},
		{"commit after a restock is 409", commit, "to-commit", 0, 409, "", 6, 4},
		{"release after a restock is 409", release, "to-commit", 0, 409, "", 6, 4},
		{"commit once its time is up is 409 and releases it", commit, "to-expire", time.Minute, 409, "", 8, 2},
		{"release of an expired reservation answers expired", release, "to-expire", 0, 0, "expired", 8, 2},
		{"restock of an expired reservation is 409", restock, "to-expire", 0, 409, "", 8, 2},
		{"restock once its time is up is 409 and releases it", restock, "held", 0, 409, "", 10, 0},
		{"commit of an unknown reservation is 404", commit, "nope", 0, 404, "", 10, 0},
		{"release of an unknown reservation is 404", release, "nope", 0, 404, "", 10, 0},
		{"restock of an unknown reservation is 404", restock, "nope", 0, 404, "", 10, 0},
		{"commit without an ID is 422", commit, "", 0, 422, "", 10, 0},
		{"restock without an ID is 422", restock, "", 0, 422, "", 10, 0},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			now = now.Add(c.advance)
			r, err := c.act(c.id)
			if c.code != 0 {
				microErr(t, err, c.code)
			} else if err != nil || r.Status != c.status || r.ID != c.id {
				t.Fatalf("answer %+v, %v, want status %s", r, err, c.status)
			}
			if got := f.get(t, p.ID); got.Quantity != c.qty || got.Reserved != c.held {
				t.Fatalf("quantity %d reserved %d, want %d and %d", got.Quantity, got.Reserved, c.qty, c.held)
			}
		})
	}
}

// TestStockEndpointsAreForTheOrdersServiceOnly calls each stock endpoint as
// everyone but the proven orders service: each is 403 naming the endpoint,
// and no stock, reservation or event changes.
func TestStockEndpointsAreForTheOrdersServiceOnly(t *testing.T) {
	f := newFixture(t)
	p := f.create(t, "seller", createReq("Lamp", 100, 10))
	if _, err := f.reserve(fromOrders(), "held", p.ID, 2, 600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.reserve(fromOrders(), "sold", p.ID, 3, 600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.commit("sold"); err != nil {
		t.Fatal(err)
	}
	before, events, notified := f.get(t, p.ID), len(f.outbox(t)), f.relay.n.Load()
	callers := map[string]context.Context{
		"no caller":                     context.Background(),
		"another service":               svcauth.WithCaller(context.Background(), "marketmesh.api"),
		"a user":                        as("buyer-1"),
		"a user claiming to be orders":  as(ordersrpc.Service),
		"a user beside another service": svcauth.WithCaller(as("buyer-1"), "marketmesh.api"),
	}
	endpoints := map[string]func(context.Context) error{
		"Publications.Reserve": func(ctx context.Context) error {
			_, err := f.reserve(ctx, "new", p.ID, 1, 60)
			return err
		},
		"Publications.Commit": func(ctx context.Context) error {
			return f.h.Commit(ctx, &publicationsrpc.ReservationRequest{ReservationID: "held"}, &publicationsrpc.Reservation{})
		},
		"Publications.Release": func(ctx context.Context) error {
			return f.h.Release(ctx, &publicationsrpc.ReservationRequest{ReservationID: "held"}, &publicationsrpc.Reservation{})
		},
		"Publications.Restock": func(ctx context.Context) error {
			return f.h.Restock(ctx, &publicationsrpc.ReservationRequest{ReservationID: "sold"}, &publicationsrpc.Reservation{})
		},
	}
	for endpoint, call := range endpoints {
		for who, ctx := range callers {
			t.Run(endpoint+" by "+who+" is 403", func(t *testing.T) {
				me := microErr(t, call(ctx), 403)
				if !strings.Contains(me.Detail, endpoint) || !strings.Contains(me.Detail, ordersrpc.Service) {
					t.Errorf("detail %q does not name %s and %s", me.Detail, endpoint, ordersrpc.Service)
				}
			})
		}
	}
	if got := f.get(t, p.ID); got != before {
		t.Errorf("publication changed to %+v, want %+v", got, before)
	}
	if _, err := f.store.GetReservation("new"); err == nil {
		t.Error("a refused Reserve stored a reservation")
	}
	for id, status := range map[string]string{"held": "held", "sold": "committed"} {
		if r, err := f.store.GetReservation(id); err != nil || r.Status != status {
			t.Errorf("%s = %+v, %v, want %s", id, r, err, status)
		}
	}
	if n := len(f.outbox(t)); n != events || f.relay.n.Load() != notified {
		t.Errorf("refused calls wrote %d events and notified %d times", n-events, f.relay.n.Load()-notified)
	}
}

// TestRestockAnnouncesThePublication checks a restock through the handler
// like every other stock change: one publication.changed with the quantity
// back, the relay woken, and the answer carrying the snapshot taken when the
// stock was reserved, whatever the publication says now.
func TestRestockAnnouncesThePublication(t *testing.T) {
	f := newFixture(t)
	p := f.create(t, "seller-1", createReq("Lamp", 100, 10))
	if _, err := f.reserve(fromOrders(), "order-1", p.ID, 3, 600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.commit("order-1"); err != nil {
		t.Fatal(err)
	}
	if err := f.h.Update(as("seller-1"), &publicationsrpc.UpdateRequest{ID: p.ID, Price: ptr(usd(250))}, &publicationsrpc.Publication{}); err != nil {
		t.Fatal(err)
	}
	events, notified := len(f.outbox(t)), f.relay.n.Load()
	r, err := f.restock("order-1")
	if err != nil {
		t.Fatal(err)
	}
	want := publicationsrpc.Reservation{ID: "order-1", PublicationID: p.ID, Quantity: 3, Status: publicationsrpc.ReservationRestocked, ExpiresAt: r.ExpiresAt,
		ProductID: "prod-1", SellerID: "seller-1", Title: "Lamp", UnitPrice: usd(100)}
	if r != want {
		t.Errorf("Restock = %+v, want %+v", r, want)
	}
	evs := f.outbox(t)
	if len(evs) != events+1 || evs[len(evs)-1].Topic != publicationsrpc.TopicPublicationChanged {
		t.Fatalf("outbox = %+v, want one more %s", evs, publicationsrpc.TopicPublicationChanged)
	}
	var pc publicationsrpc.PublicationChanged
	if err := evs[len(evs)-1].Decode(&pc); err != nil {
		t.Fatal(err)
	}
	if wantPC := (publicationsrpc.PublicationChanged{PublicationID: p.ID, ProductID: "prod-1", SellerID: "seller-1", Price: usd(250), Quantity: 10, Status: "active"}); pc != wantPC {
		t.Errorf("payload = %+v, want %+v", pc, wantPC)
	}
	if f.relay.n.Load() == notified {
		t.Error("the relay was not woken")
	}
	t.Run("restocking again writes no event", func(t *testing.T) {
		again, err := f.restock("order-1")
		if err != nil || again != r {
			t.Fatalf("Restock again = %+v, %v, want %+v", again, err, r)
		}
		if n := len(f.outbox(t)); n != events+1 {
			t.Errorf("%d events, want %d", n, events+1)
		}
		if got := f.get(t, p.ID); got.Quantity != 10 || got.Reserved != 0 {
			t.Errorf("quantity %d reserved %d, want 10 and 0", got.Quantity, got.Reserved)
		}
	})
}

// TestSweeperReleasesExpiredReservations runs the real sweeper on the real
// clock: reservations of 1 s are released by it and their units return.
func TestSweeperReleasesExpiredReservations(t *testing.T) {
	f := newFixture(t)
	p := f.create(t, "seller", createReq("Lamp", 100, 5))
	for _, id := range []string{"short-1", "short-2"} {
		if _, err := f.reserve(fromOrders(), id, p.ID, 2, 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.reserve(fromOrders(), "long", p.ID, 1, 600); err != nil {
		t.Fatal(err)
	}
	if got := f.get(t, p.ID); got.Quantity != 0 || got.Reserved != 5 {
		t.Fatalf("before: %+v", got)
	}
	notified := f.relay.n.Load()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		handler.NewSweeper(f.store, f.relay, 50*time.Millisecond).Run(ctx)
	}()
	defer func() { cancel(); <-done }()

	deadline := time.Now().Add(5 * time.Second)
	for {
		got := f.get(t, p.ID)
		if got.Quantity == 4 && got.Reserved == 1 {
			break
		}
		if got.Quantity < 0 || got.Quantity+got.Reserved != 5 {
			t.Fatalf("inconsistent stock while sweeping: %+v", got)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not released after 5 s: quantity %d reserved %d", got.Quantity, got.Reserved)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, id := range []string{"short-1", "short-2"} {
		r, err := f.store.GetReservation(id)
		if err != nil || r.Status != "expired" {
			t.Errorf("%s = %+v, %v, want expired", id, r, err)
		}
		if _, err := f.commit(id); err == nil {
			t.Errorf("commit of expired %s succeeded", id)
		}
	}
	if r, _ := f.store.GetReservation("long"); r.Status != "held" {
		t.Errorf("the 10-minute reservation = %+v, want still held", r)
	}
	if f.relay.n.Load() == notified {
		t.Error("the sweeper did not wake the relay")
	}
}

func TestSweepReturnsHowManyItExpired(t *testing.T) {
	f := newFixture(t)
	p := f.create(t, "seller", createReq("Lamp", 100, 3))
	if _, err := f.reserve(fromOrders(), "r", p.ID, 3, 1); err != nil {
		t.Fatal(err)
	}
	w := handler.NewSweeper(f.store, f.relay, time.Hour)
	if n, err := w.Sweep(); n != 0 || err != nil {
		t.Fatalf("Sweep before expiry = %d, %v", n, err)
	}
	time.Sleep(1100 * time.Millisecond)
	if n, err := w.Sweep(); n != 1 || err != nil {
		t.Fatalf("Sweep after expiry = %d, %v", n, err)
	}
	if got := f.get(t, p.ID); got.Quantity != 3 || got.Reserved != 0 {
		t.Fatalf("%+v", got)
	}
}
