package svcauth

import (
	"context"
	"slices"
	"strings"

	merrors "go-micro.dev/v4/errors"
)

// The mesh's services, as their certificates name them.
const (
	API           = "marketmesh.api"
	Users         = "marketmesh.users"
	Products      = "marketmesh.products"
	Publications  = "marketmesh.publications"
	Images        = "marketmesh.images"
	Orders        = "marketmesh.orders"
	Notifications = "marketmesh.notifications"
)

// HTTPEndpoint is the endpoint name of a service's plain HTTP endpoint (the
// images blob endpoint) in the call table.
const HTTPEndpoint = "HTTP"

// Rule lets Callers call the endpoints Endpoint matches: one endpoint
// ("Users.Recipient"), every endpoint of a handler ("EventsAdmin.*"), or
// every endpoint ("*").
type Rule struct {
	Endpoint string
	Callers  []string
}

func (r Rule) matches(endpoint string) bool {
	switch {
	case r.Endpoint == "*":
		return true
	case strings.HasSuffix(r.Endpoint, ".*"):
		return strings.HasPrefix(endpoint, strings.TrimSuffix(r.Endpoint, "*"))
	}
	return r.Endpoint == endpoint
}

// Policy is who may call whom. A call is allowed when the first rule of the
// callee that matches the endpoint names the caller; a callee or endpoint
// with no rule refuses every caller.
type Policy struct {
	Calls map[string][]Rule
	// ActForUsers are the services whose calls may carry an end user's
	// identity (rpcmeta.Caller); from anyone else it is dropped.
	ActForUsers []string
	// Topics maps an event topic prefix ("order.") to the one service that
	// publishes it: Events.Deliver accepts a topic only from its publisher.
	Topics map[string]string

	allowAll bool
}

// Mesh is marketmesh's call table: least privilege, enforced by every
// server (plugins/service) on every call, and mirrored into Consul
// intentions at setup so the Consul UI shows the call graph.
var Mesh = Policy{
	Calls: map[string][]Rule{
		Users: {
			// Contact details and device tokens are for notifications only.
			{"Users.Recipient", []string{Notifications}},
			{"Users.RemoveDeviceToken", []string{Notifications}},
			{"EventsAdmin.*", []string{API}},
			{"Users.*", []string{API}},
		},
		Products: {
			{"Events.Deliver", []string{Publications}}, // publication.changed
			{"EventsAdmin.*", []string{API}},
			{"Products.*", []string{API, Publications}},
		},
		Publications: {
			// Only the checkout saga moves stock.
			{"Publications.Reserve", []string{Orders}},
			{"Publications.Commit", []string{Orders}},
			{"Publications.Release", []string{Orders}},
			{"Publications.Restock", []string{Orders}},
			{"Events.Deliver", []string{Products}}, // product.deleted
			{"EventsAdmin.*", []string{API}},
			{"Publications.*", []string{API, Orders}},
		},
		Images: {
			{"Images.*", []string{API}},
			{HTTPEndpoint, []string{API}}, // the blob endpoint
		},
		Orders: {
			{"EventsAdmin.*", []string{API}},
			{"Orders.*", []string{API}},
		},
		Notifications: {
			{"Events.Deliver", []string{Users, Orders}}, // user.registered, order.*
			{"Notifications.*", []string{API}},
		},
	},
	ActForUsers: []string{API},
	Topics: map[string]string{
		"user.":        Users,
		"product.":     Products,
		"publication.": Publications,
		"order.":       Orders,
	},
}

// AllowAll lets every proven service call everything and publish any topic
// (tests of the plugins, whose services have made-up names). Calls still
// need a certificate from the mesh CA.
func AllowAll() Policy { return Policy{allowAll: true} }

// Allow returns nil when caller may call callee's endpoint, else a 403
// go-micro error from callee naming both.
func (p Policy) Allow(caller, callee, endpoint string) error {
	if caller == "" {
		return merrors.Forbidden(callee, "%s requires a service certificate from the mesh CA", endpoint)
	}
	if p.allowAll {
		return nil
	}
	for _, r := range p.Calls[callee] {
		if r.matches(endpoint) {
			if slices.Contains(r.Callers, caller) {
				return nil
			}
			return merrors.Forbidden(callee, "%s may not call %s", caller, endpoint)
		}
	}
	return merrors.Forbidden(callee, "%s may not call %s", caller, endpoint)
}

// MayActForUsers reports whether caller's calls may carry an end user's identity.
func (p Policy) MayActForUsers(caller string) bool {
	return caller != "" && (p.allowAll || slices.Contains(p.ActForUsers, caller))
}

// Publisher returns the service that publishes topic, or "".
func (p Policy) Publisher(topic string) string {
	for prefix, svc := range p.Topics {
		if strings.HasPrefix(topic, prefix) {
			return svc
		}
	}
	return ""
}

// Callers lists, sorted, the services the table lets call callee on some
// endpoint: the service-level summary written to Consul intentions.
func (p Policy) Callers(callee string) []string {
	var out []string
	for _, r := range p.Calls[callee] {
		for _, c := range r.Callers {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	slices.Sort(out)
	return out
}

type policyKey struct{}

// WithPolicy returns ctx carrying the policy the server enforces (the server
// wrapper sets it, for checks that need the request body, like MayPublish).
func WithPolicy(ctx context.Context, p Policy) context.Context {
	return context.WithValue(ctx, policyKey{}, p)
}

// MayPublish returns nil when the proven caller of ctx is the publisher of
// topic and names itself as the event's source, else a 403 go-micro error
// from id.
func MayPublish(ctx context.Context, id, source, topic string) error {
	caller := Caller(ctx)
	p, ok := ctx.Value(policyKey{}).(Policy)
	switch {
	case caller == "":
		return merrors.Forbidden(id, "events require a service certificate from the mesh CA")
	case caller != source:
		return merrors.Forbidden(id, "%s may not deliver events of %s", caller, source)
	case !ok:
		return merrors.Forbidden(id, "no call policy for events")
	case p.allowAll:
		return nil
	}
	if pub := p.Publisher(topic); pub != caller {
		return merrors.Forbidden(id, "%s may not publish %s", caller, topic)
	}
	return nil
}
