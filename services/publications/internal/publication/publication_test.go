package publication_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/money"
	"github.com/marketmesh/marketmesh/services/publications/internal/publication"
)

func ptr[T any](v T) *T { return &v }

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

var valid = publication.Draft{
	ProductID: "01HPRODUCT", Title: "  Nikon F3, boxed  ", Price: money.Money{Amount: 45000, Currency: "USD"},
	Quantity: 3, Condition: "used",
}

func TestNew(t *testing.T) {
	with := func(f func(*publication.Draft)) publication.Draft {
		d := valid
		f(&d)
		return d
	}
	tests := []struct {
		name  string
		draft publication.Draft
		field string // "" when valid
	}{
		{"a complete draft is valid", valid, ""},
		{"quantity zero is valid (listed, out of stock)", with(func(d *publication.Draft) { d.Quantity = 0 }), ""},
		{"quantity of a million is valid", with(func(d *publication.Draft) { d.Quantity = 1_000_000 }), ""},
		{"a title of 200 characters is valid", with(func(d *publication.Draft) { d.Title = strings.Repeat("é", 200) }), ""},
		{"condition new is valid", with(func(d *publication.Draft) { d.Condition = "new" }), ""},
		{"a missing product_id is invalid", with(func(d *publication.Draft) { d.ProductID = "" }), "product_id"},
		{"a product_id with a NUL is invalid", with(func(d *publication.Draft) { d.ProductID = "a\x00b" }), "product_id"},
		{"a product_id with a slash is invalid", with(func(d *publication.Draft) { d.ProductID = "a/b" }), "product_id"},
		{"an empty title is invalid", with(func(d *publication.Draft) { d.Title = "" }), "title"},
		{"a blank title is invalid", with(func(d *publication.Draft) { d.Title = "   " }), "title"},
		{"a title of 201 characters is invalid", with(func(d *publication.Draft) { d.Title = strings.Repeat("a", 201) }), "title"},
		{"a title with a control character is invalid", with(func(d *publication.Draft) { d.Title = "a\x07b" }), "title"},
		{"a title that is not UTF-8 is invalid", with(func(d *publication.Draft) { d.Title = "a\xffb" }), "title"},
		{"a zero price is invalid", with(func(d *publication.Draft) { d.Price.Amount = 0 }), "price.amount"},
		{"a negative price is invalid", with(func(d *publication.Draft) { d.Price.Amount = -5 }), "price.amount"},
		{"a lower-case currency is invalid", with(func(d *publication.Draft) { d.Price.Currency = "usd" }), "price.currency"},
		{"a missing currency is invalid", with(func(d *publication.Draft) { d.Price.Currency = "" }), "price.currency"},
		{"a negative quantity is invalid", with(func(d *publication.Draft) { d.Quantity = -1 }), "quantity"},
		{"a quantity over a million is invalid", with(func(d *publication.Draft) { d.Quantity = 1_000_001 }), "quantity"},
		{"an unknown condition is invalid", with(func(d *publication.Draft) { d.Condition = "refurbished" }), "condition"},
		{"an empty condition is invalid", with(func(d *publication.Draft) { d.Condition = "" }), "condition"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := publication.New("p1", "seller", tt.draft, t0)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("New = %v, want valid", err)
				}
				if got.Title != strings.TrimSpace(tt.draft.Title) {
					t.Errorf("title = %q, want it trimmed", got.Title)
				}
				if got.ID != "p1" || got.SellerID != "seller" || got.Status != "active" || got.Reserved != 0 ||
					!got.CreatedAt.Equal(t0) || !got.UpdatedAt.Equal(t0) {
					t.Errorf("publication = %+v, want p1 by seller, active, nothing reserved, created at t0", got)
				}
				return
			}
			if !errors.Is(err, publication.ErrInvalid) {
				t.Fatalf("New = %v, want ErrInvalid", err)
			}
			if !strings.HasPrefix(err.Error(), tt.field) {
				t.Errorf("message %q does not start with the field %q", err, tt.field)
			}
		})
	}
	t.Run("a publication without a seller is invalid", func(t *testing.T) {
		if _, err := publication.New("p1", "", valid, t0); !errors.Is(err, publication.ErrInvalid) {
			t.Fatalf("New = %v, want ErrInvalid", err)
		}
	})
}

func TestPatchCheck(t *testing.T) {
	tests := []struct {
		name  string
		patch publication.Patch
		field string
	}{
		{"no fields is valid", publication.Patch{}, ""},
		{"every field is valid", publication.Patch{Price: &money.Money{Amount: 1, Currency: "EUR"},
			Quantity: ptr[int64](0), Status: ptr("paused")}, ""},
		{"a bad price is invalid", publication.Patch{Price: &money.Money{Amount: 1, Currency: "XXX"}}, "price.currency"},
		{"a negative quantity is invalid", publication.Patch{Quantity: ptr[int64](-1)}, "quantity"},
		{"an unknown status is invalid", publication.Patch{Status: ptr("sold")}, "status"},
		{"an empty status is invalid", publication.Patch{Status: ptr("")}, "status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.patch.Check()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Check = %v, want valid", err)
				}
				return
			}
			if !errors.Is(err, publication.ErrInvalid) || !strings.HasPrefix(err.Error(), tt.field) {
				t.Fatalf("Check = %v, want ErrInvalid naming %s", err, tt.field)
			}
		})
	}
}

func mustNew(t *testing.T) publication.Publication {
	t.Helper()
	p, err := publication.New("p1", "seller", valid, t0)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestApply(t *testing.T) {
	t1 := t0.Add(time.Hour)
	t.Run("every field set changes and the time moves", func(t *testing.T) {
		p := mustNew(t)
		err := p.Apply(publication.Patch{Price: &money.Money{Amount: 1, Currency: "EUR"}, Quantity: ptr[int64](9), Status: ptr("paused")}, t1)
		if err != nil {
			t.Fatal(err)
		}
		if p.Price != (money.Money{Amount: 1, Currency: "EUR"}) || p.Quantity != 9 || p.Status != "paused" || !p.UpdatedAt.Equal(t1) {
			t.Errorf("publication = %+v", p)
		}
	})
	t.Run("an invalid field changes nothing", func(t *testing.T) {
		p := mustNew(t)
		before := p
		if err := p.Apply(publication.Patch{Quantity: ptr[int64](9), Status: ptr("sold")}, t1); !errors.Is(err, publication.ErrInvalid) {
			t.Fatalf("Apply = %v, want ErrInvalid", err)
		}
		if p != before {
			t.Errorf("publication = %+v, want %+v", p, before)
		}
	})
	for _, from := range []string{"active", "paused"} {
		t.Run(from+" may change", func(t *testing.T) {
			p := mustNew(t)
			p.Status = from
			if err := p.Apply(publication.Patch{Status: ptr("closed")}, t1); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("closed may not change, even to closed, and it is a conflict", func(t *testing.T) {
		p := mustNew(t)
		p.Status = "closed"
		err := p.Apply(publication.Patch{Status: ptr("closed")}, t1)
		if !errors.Is(err, publication.ErrClosed) || !errors.Is(err, publication.ErrConflict) {
			t.Fatalf("err = %v, want ErrClosed and ErrConflict", err)
		}
		if errors.Is(err, publication.ErrInvalid) || errors.Is(err, publication.ErrNotFound) {
			t.Fatalf("err = %v matches other kinds", err)
		}
		if !p.UpdatedAt.Equal(t0) {
			t.Errorf("updated_at moved to %v", p.UpdatedAt)
		}
	})
}

func TestCheckOwner(t *testing.T) {
	p := mustNew(t)
	if err := p.CheckOwner("seller"); err != nil {
		t.Fatalf("the seller: %v", err)
	}
	for _, caller := range []string{"mallory", ""} {
		if err := p.CheckOwner(caller); !errors.Is(err, publication.ErrForbidden) || errors.Is(err, publication.ErrConflict) {
			t.Errorf("caller %q: %v, want ErrForbidden only", caller, err)
		}
	}
}

func TestCheckSearch(t *testing.T) {
	tests := []struct {
		name  string
		req   publicationsrpc.SearchRequest
		want  publication.Search // checked fields: Sort, Currency, PageSize
		field string
	}{
		{"no query sorts newest in USD by 20", publicationsrpc.SearchRequest{}, publication.Search{Sort: "newest", Currency: "USD", PageSize: 20}, ""},
		{"a query sorts by relevance", publicationsrpc.SearchRequest{Query: "camera"}, publication.Search{Sort: "relevance", Currency: "USD", PageSize: 20}, ""},
		{"a page size over 100 is cut to 100", publicationsrpc.SearchRequest{PageSize: 500}, publication.Search{Sort: "newest", Currency: "USD", PageSize: 100}, ""},
		{"an explicit sort and currency stay", publicationsrpc.SearchRequest{Sort: "price_desc", Currency: "EUR", PageSize: 7}, publication.Search{Sort: "price_desc", Currency: "EUR", PageSize: 7}, ""},
		{"relevance without a query is invalid", publicationsrpc.SearchRequest{Sort: "relevance"}, publication.Search{}, "sort"},
		{"an unknown sort is invalid", publicationsrpc.SearchRequest{Sort: "cheapest"}, publication.Search{}, "sort"},
		{"an unknown status is invalid", publicationsrpc.SearchRequest{Status: "gone"}, publication.Search{}, "status"},
		{"a bad currency is invalid", publicationsrpc.SearchRequest{Currency: "dollars"}, publication.Search{}, "currency"},
		{"a negative min_price is invalid", publicationsrpc.SearchRequest{MinPrice: ptr[int64](-1)}, publication.Search{}, "min_price"},
		{"min_price above max_price is invalid", publicationsrpc.SearchRequest{MinPrice: ptr[int64](10), MaxPrice: ptr[int64](9)}, publication.Search{}, "min_price"},
		{"a negative page_size is invalid", publicationsrpc.SearchRequest{PageSize: -1}, publication.Search{}, "page_size"},
		{"a bad seller_id is invalid", publicationsrpc.SearchRequest{SellerID: "a b"}, publication.Search{}, "seller_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := publication.CheckSearch(tt.req)
			if tt.field != "" {
				if !errors.Is(err, publication.ErrInvalid) || !strings.HasPrefix(err.Error(), tt.field) {
					t.Fatalf("CheckSearch = %v, want ErrInvalid naming %s", err, tt.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Sort != tt.want.Sort || got.Currency != tt.want.Currency || got.PageSize != tt.want.PageSize {
				t.Errorf("got sort %q currency %q size %d, want %q %q %d", got.Sort, got.Currency, got.PageSize,
					tt.want.Sort, tt.want.Currency, tt.want.PageSize)
			}
		})
	}
}

func TestCheckIDsAllowsAtMostAHundred(t *testing.T) {
	ids := make([]string, 101)
	for i := range ids {
		ids[i] = "p"
	}
	if err := publication.CheckIDs(ids[:100]); err != nil {
		t.Fatalf("100 IDs: %v", err)
	}
	if err := publication.CheckIDs(ids); !errors.Is(err, publication.ErrInvalid) || !strings.HasPrefix(err.Error(), "ids") {
		t.Fatalf("101 IDs: %v, want ErrInvalid naming ids", err)
	}
}

func TestCheckReserve(t *testing.T) {
	ok := publicationsrpc.ReserveRequest{ReservationID: "r1", PublicationID: "p1", Quantity: 1, TTLSeconds: 60}
	tests := []struct {
		name  string
		edit  func(*publicationsrpc.ReserveRequest)
		field string
	}{
		{"a complete request is valid", func(*publicationsrpc.ReserveRequest) {}, ""},
		{"the longest ttl is valid", func(r *publicationsrpc.ReserveRequest) { r.TTLSeconds = 1800 }, ""},
		{"a missing reservation_id is invalid", func(r *publicationsrpc.ReserveRequest) { r.ReservationID = "" }, "reservation_id"},
		{"a missing publication_id is invalid", func(r *publicationsrpc.ReserveRequest) { r.PublicationID = "" }, "publication_id"},
		{"quantity zero is invalid", func(r *publicationsrpc.ReserveRequest) { r.Quantity = 0 }, "quantity"},
		{"ttl zero is invalid", func(r *publicationsrpc.ReserveRequest) { r.TTLSeconds = 0 }, "ttl_seconds"},
		{"a ttl over the maximum is invalid", func(r *publicationsrpc.ReserveRequest) { r.TTLSeconds = 1801 }, "ttl_seconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			tt.edit(&r)
			err := publication.CheckReserve(r, 1800)
			if tt.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, publication.ErrInvalid) || !strings.HasPrefix(err.Error(), tt.field) {
				t.Fatalf("CheckReserve = %v, want ErrInvalid naming %s", err, tt.field)
			}
		})
	}
}

func TestStockHold(t *testing.T) {
	tests := []struct {
		name    string
		stock   publication.Stock
		status  string
		q       int64
		want    publication.Stock
		wantErr error
	}{
		{"holding part of the stock moves it to reserved", publication.Stock{Quantity: 5}, "active", 2, publication.Stock{Quantity: 3, Reserved: 2}, nil},
		{"holding all of the stock leaves zero", publication.Stock{Quantity: 2, Reserved: 1}, "active", 2, publication.Stock{Reserved: 3}, nil},
		{"holding more than available is out of stock", publication.Stock{Quantity: 1}, "active", 2, publication.Stock{Quantity: 1}, publication.ErrOutOfStock},
		{"holding from zero is out of stock", publication.Stock{}, "active", 1, publication.Stock{}, publication.ErrOutOfStock},
		{"a paused publication is not available", publication.Stock{Quantity: 5}, "paused", 1, publication.Stock{Quantity: 5}, publication.ErrNotAvailable},
		{"a closed publication is not available", publication.Stock{Quantity: 5}, "closed", 1, publication.Stock{Quantity: 5}, publication.ErrNotAvailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.stock
			err := s.Hold("p1", tt.status, tt.q)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr != nil && !errors.Is(err, publication.ErrConflict)) {
				t.Fatalf("Hold = %v, want %v (a conflict)", err, tt.wantErr)
			}
			if s != tt.want {
				t.Errorf("stock = %+v, want %+v", s, tt.want)
			}
		})
	}
	t.Run("the out of stock message says how many are available", func(t *testing.T) {
		s := publication.Stock{Quantity: 3}
		if err := s.Hold("p1", "active", 4); err == nil || !strings.Contains(err.Error(), "out of stock: 3 available") {
			t.Fatalf("Hold = %v", err)
		}
	})
}

func TestStockSettle(t *testing.T) {
	tests := []struct {
		name string
		to   string
		want publication.Stock
	}{
		{"committing sells the units", "committed", publication.Stock{Quantity: 1, Reserved: 1}},
		{"releasing returns the units", "released", publication.Stock{Quantity: 3, Reserved: 1}},
		{"expiring returns the units", "expired", publication.Stock{Quantity: 3, Reserved: 1}},
		{"restocking puts sold units back on sale, leaving reserved alone", "restocked", publication.Stock{Quantity: 3, Reserved: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := publication.Stock{Quantity: 1, Reserved: 3}
			if err := s.Settle(tt.to, 2); err != nil {
				t.Fatal(err)
			}
			if s != tt.want {
				t.Errorf("stock = %+v, want %+v", s, tt.want)
			}
		})
	}
	t.Run("settling more than is reserved is an error", func(t *testing.T) {
		s := publication.Stock{Quantity: 1, Reserved: 1}
		if err := s.Settle("released", 2); err == nil {
			t.Fatal("Settle succeeded")
		}
	})
	t.Run("restocking needs nothing reserved: the units were sold", func(t *testing.T) {
		s := publication.Stock{}
		if err := s.Settle("restocked", 2); err != nil || s != (publication.Stock{Quantity: 2}) {
			t.Fatalf("Settle = %v, stock %+v, want 2 available", err, s)
		}
	})
	for _, to := range []string{"held", "lost"} {
		t.Run("settling into "+to+" is an error", func(t *testing.T) {
			s := publication.Stock{Quantity: 1, Reserved: 3}
			if err := s.Settle(to, 2); err == nil {
				t.Fatal("Settle succeeded")
			}
		})
	}
}

func TestReservationStateMachine(t *testing.T) {
	tests := []struct {
		name    string
		from    string
		action  publication.Action
		to      string
		changed bool
		wantErr error
	}{
		{"a held reservation commits", "held", publication.Commit, "committed", true, nil},
		{"a held reservation releases", "held", publication.Release, "released", true, nil},
		{"a held reservation expires", "held", publication.Expire, "expired", true, nil},
		{"a committed reservation commits again with the same answer", "committed", publication.Commit, "committed", false, nil},
		{"a committed reservation cannot be released", "committed", publication.Release, "committed", false, publication.ErrReservationState},
		{"a committed reservation does not expire", "committed", publication.Expire, "committed", false, nil},
		{"a released reservation cannot be committed", "released", publication.Commit, "released", false, publication.ErrReservationState},
		{"a released reservation releases again with the same answer", "released", publication.Release, "released", false, nil},
		{"an expired reservation cannot be committed", "expired", publication.Commit, "expired", false, publication.ErrReservationState},
		{"an expired reservation releases with the same answer", "expired", publication.Release, "expired", false, nil},
		{"a held reservation cannot be restocked", "held", publication.Restock, "held", false, publication.ErrReservationState},
		{"a committed reservation restocks", "committed", publication.Restock, "restocked", true, nil},
		{"a restocked reservation restocks again with the same answer", "restocked", publication.Restock, "restocked", false, nil},
		{"a restocked reservation cannot be committed", "restocked", publication.Commit, "restocked", false, publication.ErrReservationState},
		{"a restocked reservation cannot be released", "restocked", publication.Release, "restocked", false, publication.ErrReservationState},
		{"a restocked reservation does not expire", "restocked", publication.Expire, "restocked", false, nil},
		{"a released reservation cannot be restocked", "released", publication.Restock, "released", false, publication.ErrReservationState},
		{"an expired reservation cannot be restocked", "expired", publication.Restock, "expired", false, publication.ErrReservationState},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			to, changed, err := publication.Transition("r1", tt.from, tt.action)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil && !errors.Is(err, publication.ErrConflict) {
				t.Errorf("err = %v is not a conflict", err)
			}
			if to != tt.to || changed != tt.changed {
				t.Errorf("→ %s (changed %v), want %s (changed %v)", to, changed, tt.to, tt.changed)
			}
		})
	}
	for _, tt := range []struct {
		name, from string
		action     publication.Action
	}{
		{"an unknown status", "lost", publication.Commit},
		{"an unknown action", "committed", "refund"},
	} {
		t.Run(tt.name+" is an internal error, not a conflict", func(t *testing.T) {
			_, _, err := publication.Transition("r1", tt.from, tt.action)
			if err == nil || errors.Is(err, publication.ErrConflict) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestReserveThenSettle(t *testing.T) {
	t1 := t0.Add(time.Minute)
	t.Run("reserving holds the units and returns a held reservation", func(t *testing.T) {
		p := mustNew(t)
		r, err := p.Reserve("r1", 2, time.Minute, t1)
		if err != nil {
			t.Fatal(err)
		}
		want := publication.Reservation{ID: "r1", PublicationID: "p1", Quantity: 2, Status: "held",
			ExpiresAt: t1.Add(time.Minute), CreatedAt: t1, UpdatedAt: t1,
			ProductID: "01HPRODUCT", SellerID: "seller", Title: "Nikon F3, boxed", UnitPrice: money.Money{Amount: 45000, Currency: "USD"}}
		if r != want {
			t.Errorf("reservation = %+v, want %+v", r, want)
		}
		if p.Quantity != 1 || p.Reserved != 2 || !p.UpdatedAt.Equal(t1) {
			t.Errorf("publication = %+v, want 1 available, 2 reserved", p)
		}
	})
	t.Run("reserving from a paused publication changes nothing", func(t *testing.T) {
		p := mustNew(t)
		p.Status = "paused"
		before := p
		if _, err := p.Reserve("r1", 1, time.Minute, t1); !errors.Is(err, publication.ErrNotAvailable) {
			t.Fatalf("Reserve = %v, want ErrNotAvailable", err)
		}
		if p != before {
			t.Errorf("publication = %+v, want %+v", p, before)
		}
	})
	t.Run("releasing returns the units", func(t *testing.T) {
		p := mustNew(t)
		r, err := p.Reserve("r1", 2, time.Minute, t0)
		if err != nil {
			t.Fatal(err)
		}
		changed, err := r.Act(publication.Release, t1)
		if err != nil || !changed || r.Status != "released" || !r.UpdatedAt.Equal(t1) {
			t.Fatalf("Act = %v, %v; reservation %+v", changed, err, r)
		}
		if err := p.Settle(r, t1); err != nil {
			t.Fatal(err)
		}
		if p.Quantity != 3 || p.Reserved != 0 {
			t.Errorf("publication = %+v, want 3 available, none reserved", p)
		}
	})
	t.Run("restocking a committed reservation puts the sold units back", func(t *testing.T) {
		p := mustNew(t)
		r, err := p.Reserve("r1", 2, time.Minute, t0)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []publication.Action{publication.Commit, publication.Restock} {
			if changed, err := r.Act(a, t1); err != nil || !changed {
				t.Fatalf("Act(%s) = %v, %v", a, changed, err)
			}
			if err := p.Settle(r, t1); err != nil {
				t.Fatal(err)
			}
		}
		if r.Status != "restocked" || p.Quantity != 3 || p.Reserved != 0 {
			t.Errorf("reservation %+v, publication %+v, want restocked and 3 available", r, p)
		}
		if changed, err := r.Act(publication.Restock, t1.Add(time.Minute)); err != nil || changed || !r.UpdatedAt.Equal(t1) {
			t.Errorf("Act(restock) again = %v, %v; reservation %+v", changed, err, r)
		}
	})
	t.Run("an action that changes nothing leaves the reservation as it was", func(t *testing.T) {
		r := publication.Reservation{ID: "r1", Status: "committed", UpdatedAt: t0}
		if changed, err := r.Act(publication.Commit, t1); err != nil || changed || !r.UpdatedAt.Equal(t0) {
			t.Fatalf("Act = %v, %v; reservation %+v", changed, err, r)
		}
		if _, err := r.Act(publication.Release, t1); !errors.Is(err, publication.ErrReservationState) || r.Status != "committed" {
			t.Fatalf("Act = %v; reservation %+v", err, r)
		}
	})
	t.Run("a reservation ID reused with other terms is a conflict", func(t *testing.T) {
		r := publication.Reservation{ID: "r1", PublicationID: "p1", Quantity: 2}
		if err := r.CheckTerms("p1", 2); err != nil {
			t.Fatal(err)
		}
		for _, other := range []struct {
			pub string
			q   int64
		}{{"p2", 2}, {"p1", 3}} {
			if err := r.CheckTerms(other.pub, other.q); !errors.Is(err, publication.ErrReservationMismatch) {
				t.Errorf("CheckTerms(%s, %d) = %v, want ErrReservationMismatch", other.pub, other.q, err)
			}
		}
	})
}

func TestCloseForDeletedProduct(t *testing.T) {
	for _, from := range []string{publicationsrpc.StatusActive, publicationsrpc.StatusPaused, publicationsrpc.StatusClosed} {
		t.Run("from "+from, func(t *testing.T) {
			p, err := publication.New("p1", "s1", valid, t0)
			if err != nil {
				t.Fatal(err)
			}
			p.Status, p.Reserved = from, 1
			was := p
			later := t0.Add(time.Hour)
			changed := p.CloseForDeletedProduct(later)
			if changed != (from != publicationsrpc.StatusClosed) {
				t.Fatalf("changed = %v", changed)
			}
			want := was
			if changed {
				want.Status, want.UpdatedAt = publicationsrpc.StatusClosed, later
			}
			if p != want {
				t.Fatalf("got %+v, want %+v (only status and time change; stock stays)", p, want)
			}
			s := publication.Stock{Quantity: p.Quantity, Reserved: p.Reserved}
			if err := s.Hold(p.ID, p.Status, 1); !errors.Is(err, publication.ErrNotAvailable) {
				t.Fatalf("Hold on a closed publication = %v", err)
			}
		})
	}
}
