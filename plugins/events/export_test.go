package events

import "time"

// Bucket names for the black-box tests, which inspect and reset relay state.
var (
	OutboxBucket = outboxBucket
	CursorBucket = cursorBucket
	InboxBucket  = inboxBucket
	DeadBucket   = deadBucket
)

// Prune runs one prune of the outbox as of now.
func (r *Relay) Prune(now time.Time) { r.prune(now) }
