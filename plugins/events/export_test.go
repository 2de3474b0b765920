package events

// Bucket names for the black-box tests, which inspect and reset relay state.
var (
	OutboxBucket = outboxBucket
	CursorBucket = cursorBucket
	InboxBucket  = inboxBucket
)
