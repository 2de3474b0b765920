package handler_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/plugins/rpcfake"
	"github.com/marketmesh/marketmesh/services/images/internal/handler"
)

// TestClientMatchesTheHandler checks that every typed client method calls an
// endpoint the handler serves, with the request and response types it takes.
func TestClientMatchesTheHandler(t *testing.T) {
	rc := &rpcfake.Client{}
	c := imagesrpc.NewClient(rc)
	ctx := context.Background()
	calls := map[string]func() error{
		"Get":    func() error { _, err := c.Get(ctx, "id"); return err },
		"List":   func() error { _, err := c.List(ctx, imagesrpc.ListRequest{}); return err },
		"First":  func() error { _, err := c.First(ctx, imagesrpc.FirstRequest{}); return err },
		"Delete": func() error { return c.Delete(ctx, "id") },
	}
	// A method added to the client without an entry here would go unchecked.
	for m := range reflect.TypeOf(c).Methods() {
		if _, ok := calls[m.Name]; !ok {
			t.Errorf("client method %s is not checked: add it to calls", m.Name)
		}
	}
	rpcfake.CheckContract(t, imagesrpc.Service, "Images.", &handler.Images{}, rc, calls)
}
