package server_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"go-micro.dev/v4/client"
	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/api/internal/openapi"
	"github.com/marketmesh/marketmesh/api/internal/server"
	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/auth"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/rpcfake"
)

// adminRoutes are the operators' routes, with a valid request each.
var adminRoutes = []req{
	{method: "GET", path: "/v1/admin/events/dead-letters"},
	{method: "POST", path: "/v1/admin/events/dead-letters/products/publications/1/replay"},
	{method: "GET", path: "/v1/admin/notifications/dead-letters"},
	{method: "POST", path: "/v1/admin/notifications/dead-letters/ntf_0123456789abcdef01234567/retry"},
}

func TestAdminRoutesNeedTheAdminRole(t *testing.T) {
	ta := newTestAPI(t)
	issue := func(uid string, roles ...string) string {
		t.Helper()
		tok, _, err := ta.signer.Issue(uid, roles...)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tests := []struct {
		name   string
		bearer string
		status int
		code   string
	}{
		{"no token is 401", "", 401, "unauthenticated"},
		{"a token from another key is 401", func() string {
			tok, _, _ := auth.NewSigner(newKey(t)).Issue(testAdmin, auth.RoleAdmin)
			return tok
		}(), 401, "unauthenticated"},
		{"a user's token without the admin role is 403", issue("01HUSER"), 403, "forbidden"},
		{"a listed admin's token issued without the role is 403: log in again", issue(testAdmin), 403, "forbidden"},
		{"an admin token of a user no longer listed is 403", issue("01HFORMERADMIN", auth.RoleAdmin), 403, "forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range adminRoutes {
				r.bearer = tt.bearer
				rec := ta.do(t, r)
				msg := wantError(t, rec, tt.status, tt.code)
				if tt.status == 403 && !strings.Contains(msg, "admin") {
					t.Errorf("%s %s: message %q does not name the admin role", r.method, r.path, msg)
				}
				if got := rec.Header().Get("WWW-Authenticate"); (tt.status == 401) != (got != "") {
					t.Errorf("%s %s: WWW-Authenticate = %q on a %d", r.method, r.path, got, tt.status)
				}
			}
		})
	}
	if n := len(ta.users.Calls()); n != 0 {
		t.Fatalf("%d calls reached a service without the admin role", n)
	}
	t.Run("an admin's token gets through", func(t *testing.T) {
		for _, r := range adminRoutes {
			r.bearer = ta.adminToken(t)
			if rec := ta.do(t, r); rec.Code != 200 && rec.Code != 204 {
				t.Errorf("%s %s = %d: %s", r.method, r.path, rec.Code, rec.Body)
			}
		}
	})
}

func TestLoginGrantsTheAdminRoleToListedUsersOnly(t *testing.T) {
	ta := newTestAPI(t, func(o *server.Options) { o.Admins = []string{"01HOTHER", testAdmin} })
	for _, tt := range []struct {
		name, uid string
		admin     bool
	}{
		{"a listed user's token carries the admin role", testAdmin, true},
		{"another user's token carries no role", "01HUSER", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ta.users.Answer = func(endpoint string, _ any) (any, error) {
				return &usersrpc.Session{User: usersrpc.User{ID: tt.uid, Email: "ada@example.com"}, RefreshToken: "rt-1"}, nil
			}
			rec := ta.do(t, req{method: "POST", path: "/v1/auth/login", body: `{"email":"ada@example.com","password":"password123"}`})
			if rec.Code != 200 {
				t.Fatalf("login = %d: %s", rec.Code, rec.Body)
			}
			var body struct {
				Token string `json:"token"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			c, err := ta.signer.VerifyClaims(body.Token)
			if err != nil || c.Subject != tt.uid || c.Has(auth.RoleAdmin) != tt.admin {
				t.Fatalf("claims %+v (%v), want subject %s, admin %v", c, err, tt.uid, tt.admin)
			}
			ta.users.Answer = nil
			want := 403
			if tt.admin {
				want = 200
			}
			if rec := ta.do(t, req{method: "GET", path: "/v1/admin/events/dead-letters", bearer: body.Token}); rec.Code != want {
				t.Fatalf("the login's token on the admin list = %d, want %d: %s", rec.Code, want, rec.Body)
			}
		})
	}
}

// deadLetterFakes gives each producing service a fake of its own, for
// answers per service.
func deadLetterFakes(t *testing.T) (*testAPI, map[string]*rpcfake.Client) {
	t.Helper()
	fakes := map[string]*rpcfake.Client{}
	for _, name := range producers {
		fakes[name] = &rpcfake.Client{}
	}
	ta := newTestAPI(t, func(o *server.Options) {
		o.Events = deadLetterClients(func(name string) client.Client { return fakes[name] })
	})
	return ta, fakes
}

// answerDeadLetters makes a fake list items and a down fake fail with 503.
func answerDeadLetters(f *rpcfake.Client, items []events.DeadLetter, down bool) {
	f.Answer = func(endpoint string, _ any) (any, error) {
		if down {
			return nil, merrors.New("go.micro.client", "service unavailable: connection failed", 503)
		}
		if endpoint != events.AdminDeadLettersEndpoint {
			return nil, merrors.InternalServerError("test", "unexpected %s", endpoint)
		}
		return &events.DeadLettersResponse{Items: items}, nil
	}
}

// deadLetterList is the decoded answer of the list route.
type deadLetterList struct {
	Items []struct {
		Service    string          `json:"service"`
		Subscriber string          `json:"subscriber"`
		Seq        uint64          `json:"seq"`
		EventID    string          `json:"event_id"`
		Topic      string          `json:"topic"`
		Attempts   int             `json:"attempts"`
		LastError  string          `json:"last_error"`
		FailedAt   time.Time       `json:"failed_at"`
		Payload    json.RawMessage `json:"payload"`
	} `json:"items"`
	Partial     bool     `json:"partial"`
	Unavailable []string `json:"unavailable"`
}

// checkAgainstSchema checks body against a schema of the OpenAPI document.
func checkAgainstSchema(t *testing.T, name string, body []byte) {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openapi.Document())
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	if err := doc.Components.Schemas[name].Value.VisitJSON(v); err != nil {
		t.Errorf("%s rejects %s: %v", name, body, err)
	}
}

func TestDeadLetterListMergesTheProducingServices(t *testing.T) {
	ta, fakes := deadLetterFakes(t)
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	dead := func(subscriber string, seq uint64, failed time.Time) events.DeadLetter {
		return events.DeadLetter{Subscriber: subscriber, Seq: seq, Attempts: 10, LastError: "refused", Time: failed,
			Event: events.Event{ID: "01HEVENT" + subscriber, Topic: "t.changed", Source: "x", Time: at, Payload: json.RawMessage(`{"n":1}`)}}
	}
	answerDeadLetters(fakes["products"], []events.DeadLetter{dead("marketmesh.publications", 7, at.Add(3*time.Minute)), dead("marketmesh.publications", 9, at.Add(time.Minute))}, false)
	answerDeadLetters(fakes["publications"], []events.DeadLetter{dead("marketmesh.products", 2, at.Add(2*time.Minute))}, false)
	answerDeadLetters(fakes["orders"], nil, false)
	answerDeadLetters(fakes["users"], []events.DeadLetter{}, false)
	admin := ta.adminToken(t)

	t.Run("every producing service is read, and the items are sorted by failed_at", func(t *testing.T) {
		rec := ta.do(t, req{method: "GET", path: "/v1/admin/events/dead-letters", bearer: admin})
		if rec.Code != 200 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		checkAgainstSchema(t, "DeadLetterList", rec.Body.Bytes())
		var out deadLetterList
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, it := range out.Items {
			got = append(got, it.Service+"/"+it.Subscriber+"/"+it.FailedAt.Format("15:04"))
		}
		want := []string{"products/publications/12:01", "publications/products/12:02", "products/publications/12:03"}
		if !slices.Equal(got, want) || out.Partial || out.Unavailable == nil || len(out.Unavailable) != 0 {
			t.Fatalf("items %v partial %v unavailable %v; want %v, whole", got, out.Partial, out.Unavailable, want)
		}
		first := out.Items[0]
		if first.Seq != 9 || first.EventID != "01HEVENTmarketmesh.publications" || first.Topic != "t.changed" || first.Attempts != 10 ||
			first.LastError != "refused" || string(first.Payload) != `{"n":1}` {
			t.Fatalf("first item %+v", first)
		}
		for name, f := range fakes {
			calls := f.Calls()
			if len(calls) != 1 || calls[0].Endpoint != events.AdminDeadLettersEndpoint || calls[0].Service != "marketmesh."+name ||
				calls[0].Req.(*events.DeadLettersRequest).Subscriber != "" {
				t.Errorf("%s: calls %+v, want one listing of every subscriber", name, calls)
			}
		}
	})

	t.Run("service= reads that service only", func(t *testing.T) {
		for _, f := range fakes {
			f.Reset()
		}
		rec := ta.do(t, req{method: "GET", path: "/v1/admin/events/dead-letters?service=publications", bearer: admin})
		var out deadLetterList
		if err := json.Unmarshal(rec.Body.Bytes(), &out); rec.Code != 200 || err != nil {
			t.Fatalf("status %d (%v): %s", rec.Code, err, rec.Body)
		}
		if len(out.Items) != 1 || out.Items[0].Service != "publications" || out.Partial {
			t.Fatalf("answer %+v", out)
		}
		for name, f := range fakes {
			if n := len(f.Calls()); (name == "publications") != (n == 1) {
				t.Errorf("%s got %d calls", name, n)
			}
		}
	})

	t.Run("an empty list is an empty array", func(t *testing.T) {
		rec := ta.do(t, req{method: "GET", path: "/v1/admin/events/dead-letters?service=orders", bearer: admin})
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"items":[]`) || !strings.Contains(rec.Body.String(), `"unavailable":[]`) {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		checkAgainstSchema(t, "DeadLetterList", rec.Body.Bytes())
	})

	for _, tt := range []struct{ name, query string }{
		{"an unknown service is 400", "?service=images"},
		{"a malformed query is 400", "?service=%zz"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			msg := wantError(t, ta.do(t, req{method: "GET", path: "/v1/admin/events/dead-letters" + tt.query, bearer: admin}), 400, "bad_request")
			if tt.query == "?service=images" && !strings.Contains(msg, "orders, products, publications, users") {
				t.Errorf("message %q does not list the services", msg)
			}
		})
	}
}

func TestDeadLetterListIsPartialWhenAServiceIsDown(t *testing.T) {
	ta, fakes := deadLetterFakes(t)
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	answerDeadLetters(fakes["products"], []events.DeadLetter{{Subscriber: "marketmesh.publications", Seq: 1, Attempts: 10, Time: at,
		Event: events.Event{ID: "e1", Topic: "product.deleted", Time: at, Payload: json.RawMessage(`{}`)}}}, false)
	answerDeadLetters(fakes["publications"], nil, false)
	answerDeadLetters(fakes["orders"], nil, true)
	answerDeadLetters(fakes["users"], nil, true)
	admin := ta.adminToken(t)

	rec := ta.do(t, req{method: "GET", path: "/v1/admin/events/dead-letters", bearer: admin})
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	checkAgainstSchema(t, "DeadLetterList", rec.Body.Bytes())
	var out deadLetterList
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if !out.Partial || !slices.Equal(out.Unavailable, []string{"orders", "users"}) || len(out.Items) != 1 {
		t.Fatalf("answer %+v, want the products item, partial, orders and users unavailable", out)
	}

	t.Run("a service asked for by name that is down is 503", func(t *testing.T) {
		wantError(t, ta.do(t, req{method: "GET", path: "/v1/admin/events/dead-letters?service=orders", bearer: admin}), 503, "unavailable")
	})
	t.Run("when no service answers it is 503", func(t *testing.T) {
		for _, f := range fakes {
			answerDeadLetters(f, nil, true)
		}
		msg := wantError(t, ta.do(t, req{method: "GET", path: "/v1/admin/events/dead-letters", bearer: admin}), 503, "unavailable")
		if !strings.Contains(msg, "orders, products, publications, users") {
			t.Errorf("message %q does not name the services", msg)
		}
	})
}

func TestDeadLetterReplay(t *testing.T) {
	ta, fakes := deadLetterFakes(t)
	admin := ta.adminToken(t)
	const path = "/v1/admin/events/dead-letters/products/publications/42/replay"

	t.Run("a replay the subscriber acknowledges is 204", func(t *testing.T) {
		rec := ta.do(t, req{method: "POST", path: path, bearer: admin})
		if rec.Code != 204 || rec.Body.Len() != 0 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		calls := fakes["products"].Calls()
		if len(calls) != 1 || calls[0].Endpoint != events.AdminReplayEndpoint || calls[0].Service != "marketmesh.products" {
			t.Fatalf("calls %+v", calls)
		}
		if r := *calls[0].Req.(*events.ReplayRequest); r != (events.ReplayRequest{Subscriber: "marketmesh.publications", Seq: 42}) {
			t.Fatalf("replay request %+v", r)
		}
	})

	for _, tt := range []struct {
		name   string
		answer error
		status int
		code   string
	}{
		{"an unknown dead letter is 404 dead_letter_not_found", merrors.NotFound(events.CodeDeadLetterNotFound, "no dead letter of marketmesh.publications at seq 42"), 404, "dead_letter_not_found"},
		{"a subscriber that refuses again is 409 replay_refused", merrors.Conflict(events.CodeReplayRefused, "marketmesh.publications refused the event again (500: handling x failed); the dead letter stays"), 409, "replay_refused"},
		{"a subscriber that cannot be reached is 503", merrors.New("events", "marketmesh.publications could not be reached; the dead letter stays", 503), 503, "unavailable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fakes["products"].Answer = func(string, any) (any, error) { return nil, tt.answer }
			msg := wantError(t, ta.do(t, req{method: "POST", path: path, bearer: admin}), tt.status, tt.code)
			if !strings.Contains(msg, "marketmesh.publications") {
				t.Errorf("message %q does not name the subscriber", msg)
			}
		})
	}

	for _, f := range fakes {
		f.Reset()
	}
	for _, tt := range []struct{ name, path, mention string }{
		{"a service that is not a producer is 400", "/v1/admin/events/dead-letters/images/publications/1/replay", "service"},
		{"a sequence of 0 is 400", "/v1/admin/events/dead-letters/products/publications/0/replay", "seq"},
		{"a negative sequence is 400", "/v1/admin/events/dead-letters/products/publications/-1/replay", "seq"},
		{"a sequence that is not a number is 400", "/v1/admin/events/dead-letters/products/publications/abc/replay", "seq"},
		{"a sequence over 64 bits is 400", "/v1/admin/events/dead-letters/products/publications/18446744073709551616/replay", "seq"},
		{"a subscriber with upper case is 400", "/v1/admin/events/dead-letters/products/Publications/1/replay", "subscriber"},
		{"a subscriber with a space is 400", "/v1/admin/events/dead-letters/products/pub%20lications/1/replay", "subscriber"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			msg := wantError(t, ta.do(t, req{method: "POST", path: tt.path, bearer: admin}), http.StatusBadRequest, "bad_request")
			if !strings.Contains(msg, tt.mention) {
				t.Errorf("message %q does not name %s", msg, tt.mention)
			}
		})
	}
	for name, f := range fakes {
		if n := len(f.Calls()); n != 0 {
			t.Errorf("%s got %d calls for bad requests", name, n)
		}
	}
}
