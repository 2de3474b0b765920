package handler

import (
	"context"
	"log/slog"
	"time"

	"github.com/marketmesh/marketmesh/services/publications/internal/store"
)

// sweepBatch is how many reservations one sweep transaction expires.
const sweepBatch = 500

// Sweeper releases held reservations whose time is up (status expired,
// units back to the publication), every interval. It is a separate type,
// not a handler method, so it is not an RPC endpoint.
type Sweeper struct {
	store *store.Store
	relay Notifier
	every time.Duration
	now   func() time.Time
}

// NewSweeper returns a sweeper running every interval.
func NewSweeper(s *store.Store, relay Notifier, every time.Duration) *Sweeper {
	return &Sweeper{store: s, relay: relay, every: every, now: func() time.Time { return time.Now().UTC() }}
}

// Run sweeps until ctx ends (run it with svc.Go).
func (w *Sweeper) Run(ctx context.Context) {
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		if n, err := w.Sweep(); err != nil {
			slog.Error("publications: expiry sweep", "err", err)
		} else if n > 0 {
			slog.Info("publications: expired reservations", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep expires every reservation due now, in batches, and returns how many.
func (w *Sweeper) Sweep() (int, error) {
	total := 0
	for {
		n, err := w.store.ExpireDue(store.NewStamp(w.now()), sweepBatch)
		total += n
		if n > 0 {
			w.relay.Notify()
		}
		if err != nil || n < sweepBatch {
			return total, err
		}
	}
}
