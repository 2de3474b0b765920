package auth

import (
	"container/list"
	"crypto/sha256"
	"sync"
	"time"
)

// DefaultCacheSize is how many verified tokens a Signer remembers.
const DefaultCacheSize = 10000

// verified remembers tokens whose signature and claims checked out, so that
// a client sending the same token on every request costs one Ed25519
// verification per token, not per request (a third of the api's CPU under
// GET /v1/users/me before it). Entries are keyed by a hash of the whole
// token (header, payload and signature: a payload changed under a known
// signature is another key, verified from scratch); they hold the claims
// and the time claims, which are checked again on every hit, so a cached
// token still expires on time. Only valid tokens enter; the cache is a
// bounded LRU.
type verified struct {
	mu    sync.Mutex
	max   int
	order *list.List // front: most recently used; values are *cachedToken
	byKey map[[sha256.Size]byte]*list.Element
}

type cachedToken struct {
	key       [sha256.Size]byte
	claims    Claims
	notBefore time.Time
	expires   time.Time
}

func newVerified(max int) *verified {
	return &verified{max: max, order: list.New(), byKey: map[[sha256.Size]byte]*list.Element{}}
}

func tokenKey(token string) [sha256.Size]byte {
	// A token of usual size is hashed from a copy on the stack: converting
	// it to []byte would allocate one on the heap for every request.
	var buf [1024]byte
	if len(token) <= len(buf) {
		return sha256.Sum256(buf[:copy(buf[:], token)])
	}
	return sha256.Sum256([]byte(token))
}

// get returns the cached claims of token, if cached.
func (v *verified) get(key [sha256.Size]byte) (cachedToken, bool) {
	if v == nil || v.max <= 0 {
		return cachedToken{}, false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.byKey[key]
	if !ok {
		return cachedToken{}, false
	}
	v.order.MoveToFront(e)
	return *e.Value.(*cachedToken), true
}

// put remembers a verified token, evicting the least recently used.
func (v *verified) put(t cachedToken) {
	if v == nil || v.max <= 0 {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if e, ok := v.byKey[t.key]; ok {
		v.order.MoveToFront(e)
		return
	}
	v.byKey[t.key] = v.order.PushFront(&t)
	for v.order.Len() > v.max {
		last := v.order.Back()
		v.order.Remove(last)
		delete(v.byKey, last.Value.(*cachedToken).key)
	}
}

// drop forgets a token (it expired).
func (v *verified) drop(key [sha256.Size]byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e, ok := v.byKey[key]; ok {
		v.order.Remove(e)
		delete(v.byKey, key)
	}
}

// len is the number of cached tokens.
func (v *verified) len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.order.Len()
}
