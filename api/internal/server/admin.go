package server

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/marketmesh/marketmesh/api/internal/fanout"
	"github.com/marketmesh/marketmesh/plugins/apierror"
	"github.com/marketmesh/marketmesh/plugins/auth"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/plugins/service"
)

// The operators' routes under /v1/admin: the event dead letters of the
// producing services (plugins/events), listed and replayed through each
// service's EventsAdmin handler. Only callers with the admin role reach them.

// The events plugin's machine codes keep their names in error documents.
func init() {
	apierror.RegisterCode(events.CodeDeadLetterNotFound, events.CodeReplayRefused)
}

// deadLetterPartTimeout bounds each service's part of the dead-letter list.
// No page waits on this read, so it is longer than the storefront's
// PartTimeout: a service is reported unavailable only when the RPC stack
// itself gives up on it.
const deadLetterPartTimeout = 3 * time.Second

type rolesKey struct{}

// withRoles returns ctx carrying the verified token's roles.
func withRoles(ctx context.Context, roles []string) context.Context {
	return context.WithValue(ctx, rolesKey{}, roles)
}

// hasRole reports whether the verified token of the request held role.
func hasRole(ctx context.Context, role string) bool {
	roles, _ := ctx.Value(rolesKey{}).([]string)
	return slices.Contains(roles, role)
}

// rolesOf returns the roles a user is granted at login.
func (a *API) rolesOf(userID string) []string {
	if a.admins[userID] {
		return []string{auth.RoleAdmin}
	}
	return nil
}

// requireAdmin lets through only callers whose token holds the admin role
// and who are still listed in Options.Admins: removing an ID from the
// configuration (and restarting the api) takes the role away from tokens
// already issued. Without a token it is 401, without the role 403.
func (a *API) requireAdmin(next handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		uid := rpcmeta.Caller(r.Context())
		if uid == "" { // a route table mistake: admin routes need auth
			w.Header().Set("WWW-Authenticate", `Bearer realm="marketmesh"`)
			return apierror.New(http.StatusUnauthorized, "missing bearer token: send Authorization: Bearer <token> from /v1/auth/login")
		}
		if !hasRole(r.Context(), auth.RoleAdmin) || !a.admins[uid] {
			return apierror.New(http.StatusForbidden, "this route is for operators: it needs the admin role")
		}
		return next(w, r)
	}
}

// deadLetterView is one dead letter as operators see it.
type deadLetterView struct {
	Service    string          `json:"service"`    // the producing service (short name)
	Subscriber string          `json:"subscriber"` // the service that refused it (short name)
	Seq        uint64          `json:"seq"`        // the event's sequence in the producer's outbox
	EventID    string          `json:"event_id"`
	Topic      string          `json:"topic"`
	Attempts   int             `json:"attempts"`
	LastError  string          `json:"last_error"`
	FailedAt   time.Time       `json:"failed_at"` // when it became a dead letter
	Payload    json.RawMessage `json:"payload"`
}

// deadLetterList is GET /v1/admin/events/dead-letters.
type deadLetterList struct {
	Items       []deadLetterView `json:"items"`
	Partial     bool             `json:"partial"`
	Unavailable []string         `json:"unavailable"`
}

// eventServices lists the producing services the admin routes know, sorted.
func (a *API) eventServices() []string {
	names := make([]string, 0, len(a.events))
	for name := range a.events {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// eventService returns the dead-letter client of the producing service
// named name, or a 400 naming the field and the choices.
func (a *API) eventService(field, name string) (*events.AdminClient, error) {
	if c := a.events[name]; c != nil {
		return c, nil
	}
	return nil, apierror.New(http.StatusBadRequest, field+" must be one of "+strings.Join(a.eventServices(), ", ")+", not "+strconv.Quote(quote(name)))
}

// listDeadLetters reads the dead letters of one producing service (?service=;
// it is then the core part: down is 503) or of all of them in parallel, each
// an optional part: a service that does not answer is listed in
// unavailable, and only when none answers is it 503. Items are sorted by
// failed_at.
func (a *API) listDeadLetters(w http.ResponseWriter, r *http.Request) error {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return apierror.New(http.StatusBadRequest, "malformed query string: "+err.Error())
	}
	names := a.eventServices()
	one := q.Get("service")
	if one != "" {
		if _, err := a.eventService("service", one); err != nil {
			return err
		}
		names = []string{one}
	}
	found := make([][]events.DeadLetter, len(names))
	parts := fanout.New(r.Context())
	for i, name := range names {
		read := func(ctx context.Context) error {
			items, err := a.events[name].DeadLetters(ctx, "")
			if err == nil {
				found[i] = items
			}
			return err
		}
		if one != "" {
			parts.Core(name, read)
		} else {
			parts.Optional(name, deadLetterPartTimeout, read)
		}
	}
	if err := parts.Wait(); err != nil {
		return err
	}
	out := deadLetterList{Items: []deadLetterView{}}
	out.Partial, out.Unavailable = parts.Missing()
	if len(names) > 0 && len(out.Unavailable) == len(names) {
		return apierror.New(http.StatusServiceUnavailable, "no producing service answered: "+strings.Join(out.Unavailable, ", "))
	}
	out.Unavailable = nonNil(out.Unavailable)
	for i, name := range names {
		for _, dl := range found[i] {
			out.Items = append(out.Items, deadLetterView{
				Service: name, Subscriber: strings.TrimPrefix(dl.Subscriber, service.Prefix), Seq: dl.Seq,
				EventID: dl.Event.ID, Topic: dl.Event.Topic, Attempts: dl.Attempts, LastError: dl.LastError,
				FailedAt: dl.Time, Payload: dl.Event.Payload,
			})
		}
	}
	slices.SortFunc(out.Items, func(x, y deadLetterView) int {
		return cmp.Or(x.FailedAt.Compare(y.FailedAt), cmp.Compare(x.Service, y.Service),
			cmp.Compare(x.Subscriber, y.Subscriber), cmp.Compare(x.Seq, y.Seq))
	})
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
	return nil
}

// subscriberName is the shape of a subscriber's short service name.
var subscriberName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// replayDeadLetter delivers one dead letter to its subscriber again: 204
// once the subscriber acknowledged it (the dead letter is gone), 404
// dead_letter_not_found, 409 replay_refused when the subscriber refuses it
// again, 503 when the producer or the subscriber cannot be reached.
func (a *API) replayDeadLetter(w http.ResponseWriter, r *http.Request) error {
	c, err := a.eventService("service", r.PathValue("service"))
	if err != nil {
		return err
	}
	subscriber := r.PathValue("subscriber")
	if !subscriberName.MatchString(subscriber) {
		return apierror.New(http.StatusBadRequest, "subscriber must be a service name such as publications, not "+strconv.Quote(quote(subscriber)))
	}
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		return apierror.New(http.StatusBadRequest, "seq must be a positive integer, not "+strconv.Quote(quote(r.PathValue("seq"))))
	}
	if err := c.Replay(r.Context(), service.FullName(subscriber), seq); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
