package handler

import "time"

// SetNow replaces the handler's clock.
func SetNow(h *Publications, now func() time.Time) { h.now = now }
