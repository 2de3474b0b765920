// Package paging holds the list conventions of the public API (page_size
// default 20, at most 100), once for every service. A service's domain
// package applies them; handlers and stores take the size they are given.
package paging

const (
	// DefaultSize is the page size when the caller names none.
	DefaultSize = 20
	// MaxSize is the largest page a list returns; larger requests are clamped.
	MaxSize = 100
)

// Size returns the page size to use for a requested size n: DefaultSize for
// zero or less, MaxSize for more than MaxSize, n otherwise.
func Size(n int) int {
	switch {
	case n <= 0:
		return DefaultSize
	case n > MaxSize:
		return MaxSize
	}
	return n
}
