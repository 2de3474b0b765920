package server_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/money"
)

func TestWishlistAddChecksThePublication(t *testing.T) {
	ta := newTestAPI(t)
	tok := ta.token(t, "u1")
	ta.users.Answer = func(endpoint string, r any) (any, error) {
		switch endpoint {
		case "Publications.Get":
			switch r.(*publicationsrpc.IDRequest).ID {
			case "pub-gone":
				return nil, merrors.NotFound(publicationsrpc.Service, "publication pub-gone not found")
			case "pub-down":
				return nil, merrors.New(publicationsrpc.Service, "publications is unavailable", 503)
			}
			return &publicationsrpc.Publication{ID: "pub-1"}, nil
		case "Users.AddWishlist":
			return &usersrpc.WishlistAdded{Item: usersrpc.WishlistItem{PublicationID: "pub-1"}, Created: true}, nil
		}
		return nil, nil
	}
	tests := []struct {
		name, body string
		status     int
		code       string
		mention    string   // in the error message
		calls      []string // endpoints called, in order
	}{
		{"an existing publication is saved", `{"publication_id":"pub-1"}`, 201, "", "", []string{"Publications.Get", "Users.AddWishlist"}},
		{"a NUL in the ID is 422", `{"publication_id":"pub\u0000-1"}`, 422, "unprocessable_entity", "publication_id", nil},
		{"a control character is 422", `{"publication_id":"pub\u0007"}`, 422, "unprocessable_entity", "publication_id", nil},
		{"a '/' is 422", `{"publication_id":"a/b"}`, 422, "unprocessable_entity", "publication_id", nil},
		{"a space is 422", `{"publication_id":"a b"}`, 422, "unprocessable_entity", "publication_id", nil},
		{"an ID over 64 bytes is 422", `{"publication_id":"` + strings.Repeat("p", 65) + `"}`, 422, "unprocessable_entity", "publication_id", nil},
		{"a blank ID is 422", `{"publication_id":"  "}`, 422, "unprocessable_entity", "publication_id is required", nil},
		{"an unknown publication is 404 and not saved", `{"publication_id":"pub-gone"}`, 404, "not_found", "publication pub-gone not found", []string{"Publications.Get"}},
		{"publications down is 503 and nothing is saved", `{"publication_id":"pub-down"}`, 503, "unavailable", "", []string{"Publications.Get"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ta.users.Reset()
			rec := ta.do(t, req{method: "POST", path: "/v1/users/me/wishlist", body: tt.body, bearer: tok})
			if tt.code == "" {
				if rec.Code != tt.status {
					t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
				}
			} else if msg := wantError(t, rec, tt.status, tt.code); !strings.Contains(msg, tt.mention) {
				t.Errorf("message %q does not mention %q", msg, tt.mention)
			}
			if got := endpoints(ta); !slices.Equal(got, tt.calls) {
				t.Errorf("calls %v, want %v", got, tt.calls)
			}
		})
	}
}

func TestWishlistListMarksGoneLinesNotTheWholeAnswer(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	stored := []usersrpc.WishlistItem{{PublicationID: "pub-1", AddedAt: at}, {PublicationID: "pub-gone", AddedAt: at}, {PublicationID: "bad\x00id", AddedAt: at}}
	fixture := func(down ...string) func(string, any) (any, error) {
		return func(endpoint string, r any) (any, error) {
			if slices.Contains(down, endpoint) {
				return nil, merrors.New("x", endpoint+" is unavailable", 503)
			}
			switch endpoint {
			case "Users.ListWishlist":
				return &usersrpc.WishlistPage{Items: stored}, nil
			case "Publications.GetMany":
				ids := r.(*publicationsrpc.GetManyRequest).IDs
				// As the publications service does: a malformed ID fails the call.
				for _, id := range ids {
					if strings.ContainsRune(id, 0) {
						return nil, merrors.New(publicationsrpc.Service, "ids is not a valid ID", 422)
					}
				}
				return &publicationsrpc.GetManyResponse{Items: []publicationsrpc.Publication{{ID: "pub-1", Title: "Lamp",
					Price: money.Money{Amount: 1999, Currency: "USD"}, Quantity: 2, Status: publicationsrpc.StatusActive}}}, nil
			}
			return nil, nil
		}
	}
	type line struct {
		PublicationID string       `json:"publication_id"`
		Title         string       `json:"title"`
		Price         *money.Money `json:"price"`
		Active        *bool        `json:"active"`
	}
	type page struct {
		Items       []line   `json:"items"`
		Partial     bool     `json:"partial"`
		Unavailable []string `json:"unavailable"`
	}
	list := func(t *testing.T, ta *testAPI) page {
		t.Helper()
		rec := ta.do(t, req{method: "GET", path: "/v1/users/me/wishlist", bearer: ta.token(t, "u1")})
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		var p page
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Items) != len(stored) {
			t.Fatalf("%d lines, want %d: %s", len(p.Items), len(stored), rec.Body)
		}
		return p
	}

	t.Run("a gone or malformed publication is an inactive line", func(t *testing.T) {
		ta := newTestAPI(t)
		ta.users.Answer = fixture()
		p := list(t, ta)
		if p.Partial || len(p.Unavailable) != 0 {
			t.Errorf("partial %v, unavailable %v; want a whole answer", p.Partial, p.Unavailable)
		}
		for i, want := range []bool{true, false, false} {
			l := p.Items[i]
			if l.Active == nil || *l.Active != want {
				t.Errorf("line %s: active %v, want %v", l.PublicationID, l.Active, want)
			}
		}
		if p.Items[0].Title != "Lamp" || p.Items[0].Price == nil {
			t.Errorf("line pub-1 = %+v", p.Items[0])
		}
		for _, c := range ta.users.Calls() {
			if r, ok := c.Req.(*publicationsrpc.GetManyRequest); ok && !slices.Equal(r.IDs, []string{"pub-1", "pub-gone"}) {
				t.Errorf("GetMany asked for %q, want the well-formed IDs only", r.IDs)
			}
		}
	})
	t.Run("publications down is partial, without availability", func(t *testing.T) {
		ta := newTestAPI(t)
		ta.users.Answer = fixture("Publications.GetMany")
		p := list(t, ta)
		if !p.Partial || !slices.Equal(p.Unavailable, []string{"publications"}) {
			t.Errorf("partial %v, unavailable %v", p.Partial, p.Unavailable)
		}
		for _, l := range p.Items {
			if l.Active != nil {
				t.Errorf("line %s: active %v, want it absent", l.PublicationID, *l.Active)
			}
		}
	})
}
