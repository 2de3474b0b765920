package handler

import (
	"context"
	"log/slog"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/services/products/internal/product"
	"github.com/marketmesh/marketmesh/services/products/internal/store"
)

// PublicationChanged handles publicationsrpc.TopicPublicationChanged: it
// keeps the product's lowest active price per currency (and the price index)
// in step with its publications, inside the consumer's transaction, so the
// inbox record and the new prices commit together.
//
// Events that can never apply are acknowledged, not retried: retrying would
// hold up every later event of the producer. That covers a product that does
// not exist (deleted, or never ours) and a payload that does not decode.
func PublicationChanged(ctx context.Context, tx *bolt.Tx, ev events.Event) error {
	var pc publicationsrpc.PublicationChanged
	if err := ev.Decode(&pc); err != nil {
		slog.ErrorContext(ctx, "products: undecodable event dropped", "topic", ev.Topic, "id", ev.ID, "err", err)
		return nil
	}
	known, err := store.ApplyPublication(tx, product.PublicationPrice{
		PublicationID: pc.PublicationID,
		ProductID:     pc.ProductID,
		Price:         pc.Price,
		Active:        pc.Status == publicationsrpc.StatusActive && pc.Quantity > 0,
		Seq:           ev.Seq,
		EventID:       ev.ID,
	})
	if err != nil {
		return err
	}
	if !known {
		// A deleted product's publications are closed after the delete
		// (product.deleted): their events are expected, not a warning.
		level := slog.LevelWarn
		if pc.Status == publicationsrpc.StatusClosed {
			level = slog.LevelDebug
		}
		slog.Log(ctx, level, "products: publication event for an unknown product ignored",
			"id", ev.ID, "product_id", pc.ProductID, "publication_id", pc.PublicationID, "status", pc.Status)
	}
	return nil
}
