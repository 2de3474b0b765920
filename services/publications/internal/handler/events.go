package handler

import (
	"context"
	"log/slog"

	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/plugins/events"
	"github.com/marketmesh/marketmesh/services/publications/internal/publication"
	"github.com/marketmesh/marketmesh/services/publications/internal/store"
)

// ProductDeleted returns the handler of productsrpc.TopicProductDeleted: it
// closes every publication of the deleted product (store.CloseProduct)
// inside the consumer's transaction, so the inbox record, the closed
// publications and their publication.changed events commit together; the
// relay is woken once they have. A redelivery is a duplicate in the inbox,
// and a second event for the same product closes nothing more. The
// handler runs inside that transaction, so it generates no ID and reads no
// clock: the publications close at the delivered event's time, and their
// events' IDs derive from its ID (store.StampFor).
//
// An event that can never apply (a payload that does not decode, or
// without a valid product ID) is acknowledged, not retried: retrying would
// hold up every later event of the producer.
func ProductDeleted(s *store.Store, relay Notifier) events.Handler {
	return func(ctx context.Context, tx *bolt.Tx, ev events.Event) error {
		var pd productsrpc.ProductDeleted
		if err := ev.Decode(&pd); err != nil {
			slog.ErrorContext(ctx, "publications: undecodable event dropped", "topic", ev.Topic, "id", ev.ID, "err", err)
			return nil
		}
		if err := publication.CheckID("product_id", pd.ProductID); err != nil {
			slog.ErrorContext(ctx, "publications: event without a valid product dropped", "topic", ev.Topic, "id", ev.ID, "err", err)
			return nil
		}
		closed, err := s.CloseProduct(tx, pd.ProductID, pd.DeletedAt, store.StampFor(ev))
		if err != nil {
			return err
		}
		if len(closed) > 0 {
			tx.OnCommit(relay.Notify)
			slog.InfoContext(ctx, "publications: closed the publications of a deleted product",
				"product_id", pd.ProductID, "count", len(closed), "event", ev.ID)
		}
		return nil
	}
}
