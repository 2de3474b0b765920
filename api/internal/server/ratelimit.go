package server

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// loginLimiter slows password guessing: a token bucket per client IP and one
// per target email, each refilled per minute. Buckets idle for ten minutes
// are forgotten so memory stays bounded by recent traffic.
type loginLimiter struct {
	perIP, perEmail int

	mu      sync.Mutex
	buckets map[string]*bucket
	calls   int
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLoginLimiter(perIPPerMinute, perEmailPerMinute int) *loginLimiter {
	return &loginLimiter{perIP: perIPPerMinute, perEmail: perEmailPerMinute, buckets: map[string]*bucket{}}
}

// allow takes a token from both buckets; when refused it returns how long to wait.
func (l *loginLimiter) allow(r *http.Request, email string) (bool, time.Duration) {
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.calls++; l.calls%1000 == 0 {
		for k, b := range l.buckets {
			if now.Sub(b.seen) > 10*time.Minute {
				delete(l.buckets, k)
			}
		}
	}
	keys := []struct {
		key   string
		limit int
	}{{"ip:" + ip, l.perIP}, {"email:" + strings.ToLower(strings.TrimSpace(email)), l.perEmail}}
	var wait time.Duration
	reserved := make([]*rate.Reservation, 0, len(keys))
	for _, k := range keys {
		b, ok := l.buckets[k.key]
		if !ok {
			b = &bucket{lim: rate.NewLimiter(rate.Limit(float64(k.limit)/60), k.limit)}
			l.buckets[k.key] = b
		}
		b.seen = now
		res := b.lim.ReserveN(now, 1)
		reserved = append(reserved, res)
		wait = max(wait, res.DelayFrom(now))
	}
	if wait > 0 {
		// All or nothing: a refused attempt takes no token from any bucket.
		for _, res := range reserved {
			res.CancelAt(now)
		}
	}
	return wait == 0, wait
}

func retryAfter(d time.Duration) string {
	return strconv.Itoa(int(math.Ceil(d.Seconds())))
}
