package order

import (
	"slices"
	"time"

	"github.com/marketmesh/marketmesh/contracts/ordersrpc"
)

// Cart is a buyer's cart: lines in the order they were first added.
type Cart struct {
	Items     []ordersrpc.CartItem `json:"items"`
	UpdatedAt time.Time            `json:"updated_at"`
}

// Set adds a line or sets its quantity; quantity 0 removes it. A cart holds
// at most MaxItems lines.
func (c *Cart) Set(publicationID string, quantity int64, now time.Time) error {
	if err := CheckPublicationID("publication_id", publicationID); err != nil {
		return err
	}
	if err := CheckQuantity("quantity", quantity, true); err != nil {
		return err
	}
	i := slices.IndexFunc(c.Items, func(it ordersrpc.CartItem) bool { return it.PublicationID == publicationID })
	switch {
	case quantity == 0 && i >= 0:
		c.Items = slices.Delete(c.Items, i, i+1)
	case quantity == 0:
		return nil
	case i >= 0:
		c.Items[i].Quantity = quantity
	case len(c.Items) >= ordersrpc.MaxItems:
		return Conflict("the cart is full: at most %d lines", ordersrpc.MaxItems)
	default:
		c.Items = append(c.Items, ordersrpc.CartItem{PublicationID: publicationID, Quantity: quantity, AddedAt: now})
	}
	c.UpdatedAt = now
	return nil
}

// Remove drops a line; removing a line that is not there is not an error.
func (c *Cart) Remove(publicationID string, now time.Time) error {
	if err := CheckPublicationID("publication_id", publicationID); err != nil {
		return err
	}
	c.Items = slices.DeleteFunc(c.Items, func(it ordersrpc.CartItem) bool { return it.PublicationID == publicationID })
	c.UpdatedAt = now
	return nil
}

// Bought removes the lines an order paid for.
func (c *Cart) Bought(o *Order, now time.Time) {
	c.Items = slices.DeleteFunc(c.Items, func(it ordersrpc.CartItem) bool {
		return slices.ContainsFunc(o.Lines, func(l Line) bool { return l.PublicationID == it.PublicationID })
	})
	c.UpdatedAt = now
}

// Draft returns the items of the cart for checkout.
func (c *Cart) Draft() ([]ordersrpc.Item, error) {
	if len(c.Items) == 0 {
		return nil, invalid("the cart is empty: add items with POST /v1/cart/items first")
	}
	items := make([]ordersrpc.Item, 0, len(c.Items))
	for _, it := range c.Items {
		items = append(items, ordersrpc.Item{PublicationID: it.PublicationID, Quantity: it.Quantity})
	}
	return items, nil
}

// RPC converts to the contract type.
func (c *Cart) RPC() ordersrpc.Cart {
	items := c.Items
	if items == nil {
		items = []ordersrpc.CartItem{}
	}
	return ordersrpc.Cart{Items: items, UpdatedAt: c.UpdatedAt}
}
