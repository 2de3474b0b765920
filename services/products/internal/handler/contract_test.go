package handler_test

import (
	"context"
	"testing"

	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/plugins/rpcfake"
	"github.com/marketmesh/marketmesh/services/products/internal/handler"
)

// TestClientMatchesTheHandler checks that every typed client method calls an
// endpoint the handler serves, with the request and response types it takes.
func TestClientMatchesTheHandler(t *testing.T) {
	rc := &rpcfake.Client{}
	c := productsrpc.NewClient(rc)
	ctx := context.Background()
	calls := map[string]func() error{
		"Create":     func() error { _, err := c.Create(ctx, productsrpc.CreateRequest{}); return err },
		"Get":        func() error { _, err := c.Get(ctx, productsrpc.GetRequest{}); return err },
		"Update":     func() error { _, err := c.Update(ctx, productsrpc.UpdateRequest{}); return err },
		"Delete":     func() error { return c.Delete(ctx, "id") },
		"Search":     func() error { _, err := c.Search(ctx, productsrpc.SearchRequest{}); return err },
		"Categories": func() error { _, err := c.Categories(ctx); return err },
	}
	rpcfake.CheckContract(t, productsrpc.Service, "Products.", &handler.Products{}, rc, calls)
}
