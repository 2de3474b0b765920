package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"go-micro.dev/v4/client"
	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/plugins/rpcclient"
	"github.com/marketmesh/marketmesh/plugins/svcauth"
)

// The dead-letter administration RPC. Each producing service serves it next
// to its relay (svc.Handle(events.NewAdmin(relay))); the api calls it for
// operators holding the admin role, and only the api may: the caller must
// prove it is AdminCaller with its mesh credential (plugins/svcauth).

// AdminCaller is the one service allowed to call EventsAdmin.
const AdminCaller = "marketmesh.api"

// Endpoints of the EventsAdmin handler.
const (
	AdminDeadLettersEndpoint = "EventsAdmin.DeadLetters"
	AdminReplayEndpoint      = "EventsAdmin.Replay"
)

// Machine codes of EventsAdmin errors (the go-micro error Id), which the api
// passes on as its error document's code.
const (
	// CodeDeadLetterNotFound (404): no dead letter of that subscriber at
	// that sequence (never one, or already replayed).
	CodeDeadLetterNotFound = "dead_letter_not_found"
	// CodeReplayRefused (409): the subscriber answered the replay with an
	// error again; the dead letter stays.
	CodeReplayRefused = "replay_refused"
)

// adminID is the go-micro error Id of the other EventsAdmin errors.
const adminID = "events"

// replayTimeout bounds one Replay call as the api makes it: the producer
// makes its own delivery call inside it, with its own attempt deadline
// (request_timeout), so the caller must wait longer than that.
const replayTimeout = 5 * time.Second

// DeadLettersRequest asks for the dead letters of Subscriber (a registry
// name, "marketmesh.orders"), or of every subscriber when it is empty.
type DeadLettersRequest struct {
	Subscriber string `json:"subscriber"`
}

// DeadLettersResponse lists dead letters by subscriber, then outbox order.
type DeadLettersResponse struct {
	Items []DeadLetter `json:"items"`
}

// ReplayRequest names one dead letter: its subscriber and outbox sequence.
type ReplayRequest struct {
	Subscriber string `json:"subscriber"`
	Seq        uint64 `json:"seq"`
}

// ReplayResponse carries nothing: a nil error means the subscriber
// acknowledged the event and the dead letter is gone.
type ReplayResponse struct{}

// EventsAdmin is the RPC handler; its type name makes the endpoints
// "EventsAdmin.DeadLetters" and "EventsAdmin.Replay".
type EventsAdmin struct{ relay *Relay }

// NewAdmin returns the dead-letter handler over relay, to register with
// svc.Handle.
func NewAdmin(relay *Relay) *EventsAdmin { return &EventsAdmin{relay: relay} }

// DeadLetters lists the relay's dead letters (AdminCaller only).
func (a *EventsAdmin) DeadLetters(ctx context.Context, req *DeadLettersRequest, rsp *DeadLettersResponse) error {
	if err := svcauth.Require(ctx, adminID, AdminDeadLettersEndpoint, AdminCaller); err != nil {
		return err
	}
	items, err := a.relay.DeadLetters(req.Subscriber)
	if err != nil {
		slog.ErrorContext(ctx, "events: list dead letters", "err", err)
		return merrors.InternalServerError(adminID, "internal error")
	}
	if items == nil {
		items = []DeadLetter{}
	}
	rsp.Items = items
	return nil
}

// Replay delivers one dead letter to its subscriber again and removes it
// once acknowledged (AdminCaller only). Errors: 400 without a subscriber or
// sequence; 404 CodeDeadLetterNotFound; 409 CodeReplayRefused when the
// subscriber answers with an error again (its answer is in the message);
// 503 when it cannot be reached. The dead letter stays on every error.
func (a *EventsAdmin) Replay(ctx context.Context, req *ReplayRequest, _ *ReplayResponse) error {
	if err := svcauth.Require(ctx, adminID, AdminReplayEndpoint, AdminCaller); err != nil {
		return err
	}
	if req.Subscriber == "" || req.Seq == 0 {
		return merrors.BadRequest(adminID, "subscriber and seq (from 1) are required")
	}
	err := a.relay.Replay(ctx, req.Subscriber, req.Seq)
	var answer *merrors.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNoDeadLetter):
		return merrors.NotFound(CodeDeadLetterNotFound, "no dead letter of %s at seq %d", req.Subscriber, req.Seq)
	case errors.As(err, &answer) && refusal503(err):
		// The relay's client stack reports an unreachable subscriber as 503.
		slog.WarnContext(ctx, "events: replay: subscriber unreachable", "subscriber", req.Subscriber, "seq", req.Seq, "err", err)
		return merrors.New(adminID, fmt.Sprintf("%s could not be reached; the dead letter stays", req.Subscriber), http.StatusServiceUnavailable)
	case answer != nil: // the subscriber's own answer
		return merrors.Conflict(CodeReplayRefused, "%s refused the event again (%d: %s); the dead letter stays",
			req.Subscriber, answer.Code, answer.Detail)
	default:
		slog.ErrorContext(ctx, "events: replay", "subscriber", req.Subscriber, "seq", req.Seq, "err", err)
		return merrors.InternalServerError(adminID, "internal error")
	}
}

// AdminClient calls one producing service's EventsAdmin handler. Build it
// over a client stack that signs calls as AdminCaller (rpcclient.Sign).
type AdminClient struct {
	c       client.Client
	service string
}

// NewAdminClient returns a client for the EventsAdmin handler of service
// (its registry name, "marketmesh.orders").
func NewAdminClient(c client.Client, service string) *AdminClient {
	return &AdminClient{c: c, service: service}
}

// Service is the registry name of the producing service this client calls.
func (c *AdminClient) Service() string { return c.service }

// DeadLetters lists the dead letters of subscriber, or of every subscriber
// when it is empty.
func (c *AdminClient) DeadLetters(ctx context.Context, subscriber string) ([]DeadLetter, error) {
	rsp, err := rpcclient.Call[DeadLettersResponse](ctx, c.c, c.service, AdminDeadLettersEndpoint,
		&DeadLettersRequest{Subscriber: subscriber}, rpcclient.Read())
	if err != nil {
		return nil, err
	}
	return rsp.Items, nil
}

// Replay delivers subscriber's dead letter at seq again; see EventsAdmin.Replay
// for the errors. It is not retried: the caller decides.
func (c *AdminClient) Replay(ctx context.Context, subscriber string, seq uint64) error {
	_, err := rpcclient.Call[ReplayResponse](ctx, c.c, c.service, AdminReplayEndpoint,
		&ReplayRequest{Subscriber: subscriber, Seq: seq}, rpcclient.Timeout(replayTimeout))
	return err
}
