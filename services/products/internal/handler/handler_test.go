package handler_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	merrors "go-micro.dev/v4/errors"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/plugins/rpcfake"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
	"github.com/marketmesh/marketmesh/services/products/internal/handler"
	"github.com/marketmesh/marketmesh/services/products/internal/store"
)

// fakeServer records what a consumer attaches.
type fakeServer struct {
	handlers []any
	metadata map[string]string
}

func (f *fakeServer) Handle(h any) error { f.handlers = append(f.handlers, h); return nil }
func (f *fakeServer) SetMetadata(k, v string) {
	if f.metadata == nil {
		f.metadata = map[string]string{}
	}
	f.metadata[k] = v
}
func (f *fakeServer) Go(func(context.Context)) {}

// countingNotifier records how often the relay was told about new events.
type countingNotifier struct{ n atomic.Int32 }

func (c *countingNotifier) Notify() { c.n.Add(1) }

type fixture struct {
	h      *handler.Products
	store  *store.Store
	events *events.Events // the consumer's RPC handler, as main attaches it
	srv    *fakeServer
	relay  *countingNotifier
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "products.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c := events.NewConsumer(s.Bolt())
	c.On(publicationsrpc.TopicPublicationChanged, handler.PublicationChanged)
	srv := &fakeServer{}
	if err := c.Attach(srv); err != nil {
		t.Fatal(err)
	}
	ev, ok := srv.handlers[0].(*events.Events)
	if !ok {
		t.Fatalf("the consumer attached %T", srv.handlers[0])
	}
	relay := &countingNotifier{}
	return &fixture{h: handler.New(s, relay), store: s, events: ev, srv: srv, relay: relay}
}

func as(uid string) context.Context { return rpcmeta.WithCaller(context.Background(), uid) }

var anon = context.Background()

// microErr fails unless err is a go-micro error of productsrpc.Service with code, and returns it.
func microErr(t testing.TB, err error, code int32) *merrors.Error {
	t.Helper()
	return rpcfake.RequireCode(t, err, productsrpc.Service, code)
}

func (f *fixture) create(t *testing.T, uid string, req productsrpc.CreateRequest) productsrpc.Product {
	t.Helper()
	var p productsrpc.Product
	if err := f.h.Create(as(uid), &req, &p); err != nil {
		t.Fatalf("Create(%s) = %v", req.Name, err)
	}
	return p
}

func (f *fixture) get(t *testing.T, id string) productsrpc.Product {
	t.Helper()
	var p productsrpc.Product
	if err := f.h.Get(anon, &productsrpc.GetRequest{ID: id}, &p); err != nil {
		t.Fatalf("Get(%s) = %v", id, err)
	}
	return p
}

func (f *fixture) search(t *testing.T, req productsrpc.SearchRequest) productsrpc.SearchResponse {
	t.Helper()
	var rsp productsrpc.SearchResponse
	if err := f.h.Search(anon, &req, &rsp); err != nil {
		t.Fatalf("Search(%+v) = %v", req, err)
	}
	return rsp
}

// deliver hands a publication.changed event to the consumer, as a relay would.
func (f *fixture) deliver(t *testing.T, id string, pc publicationsrpc.PublicationChanged) events.Ack {
	t.Helper()
	payload, err := json.Marshal(pc)
	if err != nil {
		t.Fatal(err)
	}
	ev := events.Event{ID: id, Topic: publicationsrpc.TopicPublicationChanged, Source: publicationsrpc.Service, Time: time.Now(), Payload: payload}
	var ack events.Ack
	if err := f.events.Deliver(fromPublications, &ev, &ack); err != nil {
		t.Fatalf("Deliver(%s) = %v", id, err)
	}
	return ack
}

func TestTheHandlerServesExactlyTheContractsEndpoints(t *testing.T) {
	typ := reflect.TypeOf(&handler.Products{})
	var got []string
	for i := range typ.NumMethod() {
		got = append(got, typ.Method(i).Name)
	}
	want := []string{"Categories", "Create", "Delete", "Get", "Search", "Update"}
	if !slices.Equal(got, want) {
		t.Fatalf("endpoints %v, want %v (productsrpc.Client calls Products.<these>)", got, want)
	}
}

func TestWritesRequireACaller(t *testing.T) {
	f := newFixture(t)
	p := f.create(t, "alice", productsrpc.CreateRequest{Name: "Lamp", Category: "home"})
	name := "Stolen"
	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Create", func(ctx context.Context) error {
			return f.h.Create(ctx, &productsrpc.CreateRequest{Name: "X", Category: "misc"}, &productsrpc.Product{})
		}},
		{"Update", func(ctx context.Context) error {
			return f.h.Update(ctx, &productsrpc.UpdateRequest{ID: p.ID, Name: &name}, &productsrpc.Product{})
		}},
		{"Delete", func(ctx context.Context) error {
			return f.h.Delete(ctx, &productsrpc.IDRequest{ID: p.ID}, &productsrpc.Empty{})
		}},
	}
	for _, c := range calls {
		t.Run(c.name+" without a caller is 401", func(t *testing.T) { microErr(t, c.call(anon), 401) })
		t.Run(c.name+" with an empty caller is 401", func(t *testing.T) { microErr(t, c.call(as("")), 401) })
	}
	if got := f.get(t, p.ID); got.Name != "Lamp" {
		t.Errorf("name = %q after anonymous updates", got.Name)
	}
	if n := len(f.search(t, productsrpc.SearchRequest{}).Items); n != 1 {
		t.Errorf("%d products after anonymous creates and deletes, want 1", n)
	}
}

func TestOnlyTheCreatorMayUpdateOrDelete(t *testing.T) {
	f := newFixture(t)
	p := f.create(t, "alice", productsrpc.CreateRequest{Name: "Lamp", Category: "home"})
	name := "Mallory's lamp"
	t.Run("another user's update is 403", func(t *testing.T) {
		microErr(t, f.h.Update(as("mallory"), &productsrpc.UpdateRequest{ID: p.ID, Name: &name}, &productsrpc.Product{}), 403)
	})
	t.Run("another user's delete is 403", func(t *testing.T) {
		microErr(t, f.h.Delete(as("mallory"), &productsrpc.IDRequest{ID: p.ID}, &productsrpc.Empty{}), 403)
	})
	t.Run("another user's invalid update is still 403", func(t *testing.T) {
		empty := ""
		microErr(t, f.h.Update(as("mallory"), &productsrpc.UpdateRequest{ID: p.ID, Name: &empty}, &productsrpc.Product{}), 403)
	})
	if got := f.get(t, p.ID); got.Name != "Lamp" {
		t.Fatalf("name = %q after a refused update", got.Name)
	}
	t.Run("the creator's update applies", func(t *testing.T) {
		name := "Desk lamp"
		var got productsrpc.Product
		if err := f.h.Update(as("alice"), &productsrpc.UpdateRequest{ID: p.ID, Name: &name}, &got); err != nil {
			t.Fatal(err)
		}
		if got.Name != name || got.Category != "home" || got.CreatorID != "alice" || !got.UpdatedAt.After(p.UpdatedAt) && !got.UpdatedAt.Equal(p.UpdatedAt) {
			t.Fatalf("updated = %+v", got)
		}
	})
	t.Run("the creator's delete applies", func(t *testing.T) {
		if err := f.h.Delete(as("alice"), &productsrpc.IDRequest{ID: p.ID}, &productsrpc.Empty{}); err != nil {
			t.Fatal(err)
		}
		microErr(t, f.h.Get(anon, &productsrpc.GetRequest{ID: p.ID}, &productsrpc.Product{}), 404)
	})
}

func TestUnknownProductsAreNotFound(t *testing.T) {
	f := newFixture(t)
	id := ulid.Make().String()
	name := "X"
	calls := []struct {
		name string
		call func() error
	}{
		{"Get", func() error {
			return f.h.Get(anon, &productsrpc.GetRequest{ID: id, CountView: true}, &productsrpc.Product{})
		}},
		{"Update", func() error {
			return f.h.Update(as("alice"), &productsrpc.UpdateRequest{ID: id, Name: &name}, &productsrpc.Product{})
		}},
		{"Delete", func() error { return f.h.Delete(as("alice"), &productsrpc.IDRequest{ID: id}, &productsrpc.Empty{}) }},
	}
	for _, c := range calls {
		t.Run(c.name+" of an unknown product is 404 naming it", func(t *testing.T) {
			if me := microErr(t, c.call(), 404); !strings.Contains(me.Detail, id) {
				t.Fatalf("detail %q does not name %s", me.Detail, id)
			}
		})
	}
	if n := f.store.PendingViews(); n != 0 {
		t.Errorf("a view of an unknown product was counted (%d pending)", n)
	}
}

func TestInvalidInputIs422NamingTheField(t *testing.T) {
	f := newFixture(t)
	p := f.create(t, "alice", productsrpc.CreateRequest{Name: "Lamp", Category: "home"})
	long, bad, empty := strings.Repeat("x", 201), "a b", ""
	neg, lo, hi := int64(-1), int64(10), int64(5)
	cases := []struct {
		name, field string
		call        func() error
	}{
		{"a create without a name", "name", func() error {
			return f.h.Create(as("alice"), &productsrpc.CreateRequest{Category: "home"}, &productsrpc.Product{})
		}},
		{"a create without a category", "category", func() error {
			return f.h.Create(as("alice"), &productsrpc.CreateRequest{Name: "X"}, &productsrpc.Product{})
		}},
		{"a create with a bad category", "category", func() error {
			return f.h.Create(as("alice"), &productsrpc.CreateRequest{Name: "X", Category: "a b/c!"}, &productsrpc.Product{})
		}},
		{"a create with an overlong attribute value", "attributes", func() error {
			return f.h.Create(as("alice"), &productsrpc.CreateRequest{Name: "X", Category: "a",
				Attributes: map[string]string{"k": strings.Repeat("v", 201)}}, &productsrpc.Product{})
		}},
		{"an update to an overlong name", "name", func() error {
			return f.h.Update(as("alice"), &productsrpc.UpdateRequest{ID: p.ID, Name: &long}, &productsrpc.Product{})
		}},
		{"an update to a bad category", "category", func() error {
			return f.h.Update(as("alice"), &productsrpc.UpdateRequest{ID: p.ID, Category: &bad}, &productsrpc.Product{})
		}},
		{"an update without an ID", "id", func() error {
			return f.h.Update(as("alice"), &productsrpc.UpdateRequest{Name: &long}, &productsrpc.Product{})
		}},
		{"a get without an ID", "id", func() error { return f.h.Get(anon, &productsrpc.GetRequest{ID: empty}, &productsrpc.Product{}) }},
		{"a search with an unknown sort", "sort", func() error {
			return f.h.Search(anon, &productsrpc.SearchRequest{Sort: "cheapest"}, &productsrpc.SearchResponse{})
		}},
		{"a search with a lower-case currency", "currency", func() error {
			return f.h.Search(anon, &productsrpc.SearchRequest{Currency: "usd"}, &productsrpc.SearchResponse{})
		}},
		{"a search with a negative min_price", "min_price", func() error {
			return f.h.Search(anon, &productsrpc.SearchRequest{MinPrice: &neg}, &productsrpc.SearchResponse{})
		}},
		{"a search with min_price above max_price", "min_price", func() error {
			return f.h.Search(anon, &productsrpc.SearchRequest{MinPrice: &lo, MaxPrice: &hi}, &productsrpc.SearchResponse{})
		}},
		{"a search in a bad category", "category", func() error {
			return f.h.Search(anon, &productsrpc.SearchRequest{Category: "a b"}, &productsrpc.SearchResponse{})
		}},
	}
	for _, c := range cases {
		t.Run(c.name+" is 422 naming "+c.field, func(t *testing.T) {
			if me := microErr(t, c.call(), 422); !strings.Contains(me.Detail, c.field) {
				t.Fatalf("detail %q does not name %q", me.Detail, c.field)
			}
		})
	}
	if got := f.get(t, p.ID); got.Name != "Lamp" || got.Category != "home" {
		t.Fatalf("invalid updates changed the product: %+v", got)
	}
}

func TestABadPageTokenIs400(t *testing.T) {
	f := newFixture(t)
	for range 3 {
		f.create(t, "alice", productsrpc.CreateRequest{Name: "Lamp", Category: "home"})
	}
	page := f.search(t, productsrpc.SearchRequest{PageSize: 1})
	if page.NextPageToken == "" {
		t.Fatal("no next page token")
	}
	for name, req := range map[string]productsrpc.SearchRequest{
		"garbage":                        {PageToken: "%%%"},
		"a token for another sort order": {PageToken: page.NextPageToken, Sort: productsrpc.SortPopular},
	} {
		t.Run(name+" is 400", func(t *testing.T) {
			microErr(t, f.h.Search(anon, &req, &productsrpc.SearchResponse{}), 400)
		})
	}
	next := f.search(t, productsrpc.SearchRequest{PageSize: 1, PageToken: page.NextPageToken})
	if len(next.Items) != 1 || next.Items[0].ID == page.Items[0].ID {
		t.Fatalf("second page = %+v", next.Items)
	}
}

func TestCatalogRoundTrip(t *testing.T) {
	f := newFixture(t)
	phone := f.create(t, "alice", productsrpc.CreateRequest{
		Name: "Pixel 9 Pro Smartphone", Description: "Google phone, 256 GB", Category: "Electronics/Phones",
		Brand: "Google", Attributes: map[string]string{"storage": "256GB"},
	})
	f.create(t, "bob", productsrpc.CreateRequest{Name: "Galaxy Phone Case", Category: "electronics/accessories", Brand: "Spigen"})
	if phone.Category != "electronics/phones" || phone.CreatorID != "alice" || phone.Attributes["storage"] != "256GB" ||
		len(phone.ID) != 26 || phone.CreatedAt.IsZero() || phone.LowestPrices == nil || len(phone.LowestPrices) != 0 {
		t.Fatalf("created = %+v", phone)
	}

	res := f.search(t, productsrpc.SearchRequest{Query: "pixel phone"})
	if len(res.Items) != 2 || res.Items[0].ID != phone.ID {
		t.Fatalf("q=pixel phone: %+v", res.Items)
	}
	for _, c := range []struct {
		category string
		want     int
	}{{"electronics", 2}, {"electronics/accessories", 1}, {"Electronics/Phones", 1}, {"books", 0}} {
		if n := len(f.search(t, productsrpc.SearchRequest{Category: c.category}).Items); n != c.want {
			t.Errorf("category=%s: %d items, want %d", c.category, n, c.want)
		}
	}

	for i := 1; i <= 2; i++ {
		var got productsrpc.Product
		if err := f.h.Get(anon, &productsrpc.GetRequest{ID: phone.ID, CountView: true}, &got); err != nil {
			t.Fatal(err)
		}
		if got.ViewCount != int64(i) {
			t.Fatalf("view %d: ViewCount = %d", i, got.ViewCount)
		}
	}
	if got := f.get(t, phone.ID); got.ViewCount != 2 {
		t.Fatalf("a read without CountView shows %d views", got.ViewCount)
	}

	var cats productsrpc.CategoriesResponse
	if err := f.h.Categories(anon, &productsrpc.Empty{}, &cats); err != nil {
		t.Fatal(err)
	}
	want := []productsrpc.Category{{Name: "electronics", Path: "electronics", Count: 2, Children: []productsrpc.Category{
		{Name: "accessories", Path: "electronics/accessories", Count: 1, Children: []productsrpc.Category{}},
		{Name: "phones", Path: "electronics/phones", Count: 1, Children: []productsrpc.Category{}},
	}}}
	if !reflect.DeepEqual(cats.Categories, want) {
		t.Fatalf("Categories = %+v", cats.Categories)
	}
}

func TestPublicationEventsSetPricesOnce(t *testing.T) {
	f := newFixture(t)
	if got := f.srv.metadata[events.SubscribesKey]; got != publicationsrpc.TopicPublicationChanged {
		t.Fatalf("subscribes metadata = %q", got)
	}
	p := f.create(t, "alice", productsrpc.CreateRequest{Name: "Pixel", Category: "phones"})
	usd := func(a int64) money.Money { return money.Money{Amount: a, Currency: "USD"} }
	priced := func(min, max int64) []string {
		var ids []string
		for _, it := range f.search(t, productsrpc.SearchRequest{MinPrice: &min, MaxPrice: &max, Currency: "USD"}).Items {
			ids = append(ids, it.ID)
		}
		return ids
	}
	e1, e2, e3 := ulid.Make().String(), ulid.Make().String(), ulid.Make().String()

	f.deliver(t, e1, publicationsrpc.PublicationChanged{PublicationID: "pub1", ProductID: p.ID, SellerID: "s", Price: usd(99900), Quantity: 3, Status: "active"})
	f.deliver(t, e2, publicationsrpc.PublicationChanged{PublicationID: "pub2", ProductID: p.ID, SellerID: "s", Price: usd(74900), Quantity: 1, Status: "active"})
	if got := f.get(t, p.ID).LowestPrices; !reflect.DeepEqual(got, []money.Money{usd(74900)}) {
		t.Fatalf("LowestPrices = %v, want 749.00 USD", got)
	}
	if got := priced(70000, 80000); !slices.Equal(got, []string{p.ID}) {
		t.Fatalf("price filter 700-800 = %v", got)
	}

	// The cheaper one sells out: the price rises to the other publication's.
	f.deliver(t, e3, publicationsrpc.PublicationChanged{PublicationID: "pub2", ProductID: p.ID, SellerID: "s", Price: usd(74900), Quantity: 0, Status: "active"})
	if got := f.get(t, p.ID).LowestPrices; !reflect.DeepEqual(got, []money.Money{usd(99900)}) {
		t.Fatalf("LowestPrices after a sell-out = %v", got)
	}
	// Redelivering an earlier event is acknowledged as a duplicate and changes nothing.
	if ack := f.deliver(t, e2, publicationsrpc.PublicationChanged{PublicationID: "pub2", ProductID: p.ID, SellerID: "s", Price: usd(74900), Quantity: 1, Status: "active"}); !ack.Duplicate {
		t.Fatal("a redelivered event was not reported as a duplicate")
	}
	if got := f.get(t, p.ID).LowestPrices; !reflect.DeepEqual(got, []money.Money{usd(99900)}) {
		t.Fatalf("LowestPrices after a duplicate = %v", got)
	}
	if got := priced(70000, 80000); len(got) != 0 {
		t.Fatalf("price filter 700-800 after the sell-out = %v", got)
	}

	t.Run("an event for an unknown product is acknowledged and ignored", func(t *testing.T) {
		f.deliver(t, ulid.Make().String(), publicationsrpc.PublicationChanged{PublicationID: "x", ProductID: ulid.Make().String(), Price: usd(1), Quantity: 1, Status: "active"})
	})
	t.Run("an event whose payload does not decode is acknowledged", func(t *testing.T) {
		ev := events.Event{ID: ulid.Make().String(), Topic: publicationsrpc.TopicPublicationChanged, Source: publicationsrpc.Service, Payload: json.RawMessage(`"nope"`)}
		if err := f.events.Deliver(fromPublications, &ev, &events.Ack{}); err != nil {
			t.Fatalf("Deliver = %v", err)
		}
	})
	t.Run("a paused publication has no price", func(t *testing.T) {
		f.deliver(t, ulid.Make().String(), publicationsrpc.PublicationChanged{PublicationID: "pub1", ProductID: p.ID, Price: usd(99900), Quantity: 3, Status: "paused"})
		if got := f.get(t, p.ID).LowestPrices; len(got) != 0 {
			t.Fatalf("LowestPrices = %v", got)
		}
	})
}

// lastEvent returns how many events the products outbox holds and the newest.
func (f *fixture) lastEvent(t *testing.T) (int, events.Event) {
	t.Helper()
	var n int
	var ev events.Event
	err := f.store.Bolt().View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("events.outbox"))
		n = b.Stats().KeyN
		if _, v := b.Cursor().Last(); v != nil {
			return json.Unmarshal(v, &ev)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, ev
}

func TestDeletePublishesProductDeleted(t *testing.T) {
	f := newFixture(t)
	p := f.create(t, "alice", productsrpc.CreateRequest{Name: "Lamp", Category: "home"})
	del := func(uid, id string) error {
		return f.h.Delete(as(uid), &productsrpc.IDRequest{ID: id}, &productsrpc.Empty{})
	}

	t.Run("refused deletes publish nothing (the store tests a failed one)", func(t *testing.T) {
		microErr(t, del("mallory", p.ID), 403)
		microErr(t, del("alice", ulid.Make().String()), 404)
		microErr(t, del("alice", ""), 422)
		if n, _ := f.lastEvent(t); n != 0 || f.relay.n.Load() != 0 {
			t.Fatalf("%d events in the outbox, relay woken %d times", n, f.relay.n.Load())
		}
		f.get(t, p.ID) // still there
	})
	t.Run("the creator's delete publishes product.deleted and wakes the relay", func(t *testing.T) {
		before := time.Now().UTC()
		if err := del("alice", p.ID); err != nil {
			t.Fatal(err)
		}
		n, ev := f.lastEvent(t)
		if n != 1 || ev.Topic != productsrpc.TopicProductDeleted {
			t.Fatalf("%d events in the outbox, the last %+v", n, ev)
		}
		var pd productsrpc.ProductDeleted
		if err := ev.Decode(&pd); err != nil {
			t.Fatal(err)
		}
		if pd.ProductID != p.ID || pd.DeletedAt.Before(before) || pd.DeletedAt.After(time.Now()) {
			t.Fatalf("payload = %+v", pd)
		}
		if n := f.relay.n.Load(); n != 1 {
			t.Fatalf("relay woken %d times, want 1", n)
		}
		microErr(t, f.h.Get(anon, &productsrpc.GetRequest{ID: p.ID}, &productsrpc.Product{}), 404)
	})
}

// fromPublications is the context of a call proven to come from
// publications, the publisher of publication.changed, as the server wrapper
// makes it.
var fromPublications = svcauth.WithPolicy(svcauth.WithCaller(context.Background(), publicationsrpc.Service), svcauth.Mesh)
