package handler

import (
	"context"
	"errors"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/plugins/validate"
	"github.com/marketmesh/marketmesh/services/publications/internal/publication"
)

// ProductChecker says whether a product exists. Create needs it; tests
// give a fake, the service gives Products(productsrpc client).
type ProductChecker interface {
	// ProductExists is false (with no error) when the product is unknown,
	// and an error when the question could not be answered.
	ProductExists(ctx context.Context, id string) (bool, error)
}

// Products checks products with the products service.
func Products(c *productsrpc.Client) ProductChecker { return productsClient{c: c} }

type productsClient struct{ c *productsrpc.Client }

// ProductExists is a Get: a 404 means no such product; any other error
// (503 from the client stack when products is down, a timeout...) means
// "cannot tell".
func (p productsClient) ProductExists(ctx context.Context, id string) (bool, error) {
	_, err := p.c.Get(ctx, productsrpc.GetRequest{ID: id})
	if err == nil {
		return true, nil
	}
	var me *merrors.Error
	if errors.As(err, &me) && me.Code == 404 {
		return false, nil
	}
	return false, err
}

// checkProduct turns the checker's answer into a domain error.
func checkProduct(ctx context.Context, pc ProductChecker, productID string) error {
	ok, err := pc.ProductExists(ctx, productID)
	if err != nil {
		detail := err.Error()
		var me *merrors.Error
		if errors.As(err, &me) && me.Detail != "" {
			detail = me.Detail
		}
		return validate.Kind(errUnavailable, "cannot check product_id %s: %s", productID, detail)
	}
	if !ok {
		return publication.UnknownProduct(productID)
	}
	return nil
}
