package handler_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/rpcfake"
	"github.com/marketmesh/marketmesh/services/publications/internal/handler"
)

// TestClientMatchesTheHandler checks that every typed client method calls an
// endpoint the handler serves, with the request and response types it takes.
func TestClientMatchesTheHandler(t *testing.T) {
	rc := &rpcfake.Client{}
	c := publicationsrpc.NewClient(rc)
	ctx := context.Background()
	calls := map[string]func() error{
		"Create":  func() error { _, err := c.Create(ctx, publicationsrpc.CreateRequest{}); return err },
		"Get":     func() error { _, err := c.Get(ctx, "id"); return err },
		"GetMany": func() error { _, err := c.GetMany(ctx, []string{"id"}); return err },
		"Update":  func() error { _, err := c.Update(ctx, publicationsrpc.UpdateRequest{}); return err },
		"Search":  func() error { _, err := c.Search(ctx, publicationsrpc.SearchRequest{}); return err },
		"Count":   func() error { _, err := c.Count(ctx, publicationsrpc.CountRequest{}); return err },
		"Reserve": func() error { _, err := c.Reserve(ctx, publicationsrpc.ReserveRequest{}); return err },
		"Commit":  func() error { _, err := c.Commit(ctx, "r"); return err },
		"Release": func() error { _, err := c.Release(ctx, "r"); return err },
		"Restock": func() error { _, err := c.Restock(ctx, "r"); return err },
	}
	h := reflect.TypeOf(&handler.Publications{})
	rpcfake.CheckContract(t, publicationsrpc.Service, "Publications.", &handler.Publications{}, rc, calls)
	t.Run("every handler method is an endpoint the client calls", func(t *testing.T) {
		for i := range h.NumMethod() {
			if _, ok := calls[h.Method(i).Name]; !ok {
				t.Errorf("handler method %s has no client method", h.Method(i).Name)
			}
		}
	})
}
