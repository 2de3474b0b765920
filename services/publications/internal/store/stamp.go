package store

import (
	"crypto/sha256"
	"strconv"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/marketmesh/marketmesh/plugins/events"
)

// Stamp is what a write takes from the command that makes it: the
// command's time (the change's and its events') and the ID of the first
// publication.changed event the write appends. A write that appends more
// than one (an expiry sweep, the close of a deleted product's publications)
// gives the next ones IDs derived from it. Both are decided before the
// store transaction, which generates nothing: a transaction function that
// runs again (db.Batch may run one twice) writes the same events.
type Stamp struct {
	EventID string    // a ULID
	At      time.Time // the command's time
}

// NewStamp stamps a command made at at with a new event ID.
func NewStamp(at time.Time) Stamp { return Stamp{EventID: ulid.Make().String(), At: at} }

// StampFor stamps the write made in answer to a delivered event, inside the
// consumer's transaction: the event's time, and an event ID derived from the
// event's ID, so the same delivery always writes the same events.
func StampFor(ev events.Event) Stamp {
	return Stamp{EventID: derivedEventID(ev.ID, ev.Time, 0), At: ev.Time}
}

// write is one run of a write's transaction function: its stamp and how
// many events it appended so far. Make one at the start of the function, so
// a run starts over from the stamp.
type write struct {
	Stamp
	events int
}

// nextEventID is the ID of the write's next event: the stamp's own for the
// first, then IDs derived from it.
func (w *write) nextEventID() string {
	n := w.events
	w.events++
	if n == 0 {
		return w.EventID
	}
	return derivedEventID(w.EventID, w.At, n)
}

// derivedEventID is the n-th ID derived from base: a ULID of at's
// millisecond whose 80 random bits are a hash of base and n, so the same
// base and n give the same ID and different ones (practically) never meet.
func derivedEventID(base string, at time.Time, n int) string {
	sum := sha256.Sum256([]byte(base + "/" + strconv.Itoa(n)))
	var id ulid.ULID
	copy(id[6:], sum[:10])
	if at.After(time.UnixMilli(0)) {
		_ = id.SetTime(ulid.Timestamp(at)) // fails only after the year 10889: the time part stays 0
	}
	return id.String()
}
