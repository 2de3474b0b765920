// Package budget shares a fixed number of bytes between concurrent work:
// the images service reserves what decoding an upload will allocate before
// it starts, so that its decodes together never hold more than the total,
// however many uploads arrive at once.
package budget

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// Errors of Reserve.
var (
	// ErrBusy: the bytes did not become free within the budget's wait.
	ErrBusy = errors.New("busy")
	// ErrTooLarge: more bytes than the whole budget, which would never fit.
	ErrTooLarge = errors.New("larger than the whole budget")
)

// Budget is a number of bytes shared by concurrent reservations, granted
// first come, first served (a large reservation is not overtaken by
// smaller ones behind it). Safe for concurrent use.
type Budget struct {
	total int64
	wait  time.Duration
	sem   *semaphore.Weighted

	mu       sync.Mutex
	reserved int64 // now
	peak     int64 // ever
	burst    int64 // most at once since the budget was last idle
	idle     struct {
		quiet   time.Duration
		big     int64
		fn      func()
		pending bool // a timer is set
	}
}

// New returns a budget of total bytes whose reservations wait at most wait
// for their bytes (wait > 0).
func New(total int64, wait time.Duration) *Budget {
	return &Budget{total: total, wait: wait, sem: semaphore.NewWeighted(total)}
}

// WhenIdle arranges for fn to run (on its own goroutine) quiet after the
// budget empties following a burst in which at least big bytes were
// reserved at once, if it is empty then: the images service gives a
// burst's memory back to the system (debug.FreeOSMemory) once the burst is
// over, not after every upload. Call it before the budget is used.
func (b *Budget) WhenIdle(quiet time.Duration, big int64, fn func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.idle.quiet, b.idle.big, b.idle.fn = quiet, big, fn
}

// Total is the number of bytes shared.
func (b *Budget) Total() int64 { return b.total }

// Wait is the longest a reservation waits for its bytes.
func (b *Budget) Wait() time.Duration { return b.wait }

// Reserved is the number of bytes reserved now.
func (b *Budget) Reserved() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reserved
}

// Peak is the most bytes ever reserved at once.
func (b *Budget) Peak() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peak
}

// Reserve takes n bytes, waiting for them while others hold them, and
// returns the function that gives them back (idempotent). It fails with
// ErrBusy when they are not free within the budget's wait, with ctx's error
// when ctx ends first (a client that gives up leaves the line at once), and
// with ErrTooLarge when n exceeds the total.
func (b *Budget) Reserve(ctx context.Context, n int64) (release func(), err error) {
	if n > b.total {
		return nil, fmt.Errorf("budget: %d bytes of %d: %w", n, b.total, ErrTooLarge)
	}
	if !b.sem.TryAcquire(n) {
		wctx, cancel := context.WithTimeout(ctx, b.wait)
		err := b.sem.Acquire(wctx, n)
		cancel()
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil, ctx.Err()
		default:
			return nil, ErrBusy
		}
	}
	b.mu.Lock()
	b.reserved += n
	b.peak, b.burst = max(b.peak, b.reserved), max(b.burst, b.reserved)
	b.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { b.release(n) }) }, nil
}

func (b *Budget) release(n int64) {
	b.mu.Lock()
	b.reserved -= n
	if b.reserved == 0 && b.idle.fn != nil && b.burst >= b.idle.big && !b.idle.pending {
		b.idle.pending = true
		time.AfterFunc(b.idle.quiet, b.quiet)
	}
	b.mu.Unlock()
	b.sem.Release(n)
}

// quiet runs the idle function if nothing was reserved since the timer was
// set; otherwise the release that empties the budget next sets a new one.
func (b *Budget) quiet() {
	b.mu.Lock()
	b.idle.pending = false
	run := b.reserved == 0
	if run {
		b.burst = 0
	}
	fn := b.idle.fn
	b.mu.Unlock()
	if run {
		fn()
	}
}
