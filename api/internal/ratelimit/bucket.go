package ratelimit

import (
	"container/list"
	"time"
)

// rule is a token bucket's shape: burst tokens, refilled at rate per second.
type rule struct {
	rate  float64
	burst float64
}

// per is n tokens per period, all of them available at once.
func per(n int, period time.Duration) rule {
	return rule{rate: float64(n) / period.Seconds(), burst: float64(n)}
}

// bucket is one key's token count; the rule lives with the table, not in
// every bucket.
type bucket struct {
	tokens float64
	last   time.Time
}

func (r rule) fresh(now time.Time) bucket { return bucket{tokens: r.burst, last: now} }

// fill adds the tokens earned since the bucket was last seen.
func (r rule) fill(b *bucket, now time.Time) {
	if now.After(b.last) {
		b.tokens = min(r.burst, b.tokens+now.Sub(b.last).Seconds()*r.rate)
		b.last = now
	}
}

// wait is how long until the (filled) bucket holds a whole token.
func (r rule) wait(b *bucket) time.Duration {
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) / r.rate * float64(time.Second))
}

// full reports whether the bucket is as good as absent: it knows nothing
// that a fresh one would not.
func (r rule) full(b *bucket, now time.Time) bool {
	r.fill(b, now)
	return b.tokens >= r.burst
}

func (r rule) refund(b *bucket) { b.tokens = min(r.burst, b.tokens+1) }

// table maps keys to state, bounded: at most max entries, the least
// recently used evicted first; entries that carry no information any more
// (idle) are dropped from the old end as new ones come in, so the table
// follows recent traffic rather than filling up and staying full. Not safe
// for concurrent use: the limiter's mutex guards it.
type table[K comparable, V any] struct {
	max  int
	ll   *list.List // of *entry[K, V], most recently used at the front
	m    map[K]*list.Element
	idle func(v *V, now time.Time) bool
}

type entry[K comparable, V any] struct {
	key K
	val V
}

// sweepBatch bounds the idle entries dropped per insertion (amortized O(1)).
const sweepBatch = 8

func newTable[K comparable, V any](max int, idle func(*V, time.Time) bool) *table[K, V] {
	return &table[K, V]{max: max, ll: list.New(), m: map[K]*list.Element{}, idle: idle}
}

// get returns k's state, creating it with fresh when absent, and marks it used.
func (t *table[K, V]) get(k K, now time.Time, fresh func() V) *V {
	if el, ok := t.m[k]; ok {
		t.ll.MoveToFront(el)
		return &el.Value.(*entry[K, V]).val
	}
	for range sweepBatch {
		back := t.ll.Back()
		if back == nil || !t.idle(&back.Value.(*entry[K, V]).val, now) {
			break
		}
		t.remove(back)
	}
	for t.ll.Len() >= t.max {
		t.remove(t.ll.Back())
	}
	e := &entry[K, V]{key: k, val: fresh()}
	t.m[k] = t.ll.PushFront(e)
	return &e.val
}

// peek returns k's state without creating it or marking it used.
func (t *table[K, V]) peek(k K) (*V, bool) {
	el, ok := t.m[k]
	if !ok {
		return nil, false
	}
	return &el.Value.(*entry[K, V]).val, true
}

func (t *table[K, V]) delete(k K) {
	if el, ok := t.m[k]; ok {
		t.remove(el)
	}
}

func (t *table[K, V]) remove(el *list.Element) {
	delete(t.m, el.Value.(*entry[K, V]).key)
	t.ll.Remove(el)
}

func (t *table[K, V]) len() int { return t.ll.Len() }
