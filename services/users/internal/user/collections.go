package user

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/marketmesh/marketmesh/plugins/paging"
)

// PageSize is the number of items a list of a user's collection returns
// for a requested size n: the mesh-wide convention of plugins/paging
// (default 20, at most 100). Handlers and the store take the size it gives.
func PageSize(n int) int { return paging.Size(n) }

// WishlistEntry is one publication a user saved.
type WishlistEntry struct {
	PublicationID string
	AddedAt       time.Time
}

// CheckPublicationID validates a reference to a publication: at most 64
// bytes of valid UTF-8, without '/', spaces or control characters (NUL
// separates the parts of a store key, and the ID is a path segment).
func CheckPublicationID(id string) error {
	if strings.TrimSpace(id) == "" {
		return invalid("publication_id is required")
	}
	if len(id) > 64 || !utf8.ValidString(id) || strings.ContainsFunc(id, badIDRune) {
		return invalid("publication_id %q is not a valid ID", id)
	}
	return nil
}

func badIDRune(r rune) bool { return r == '/' || unicode.IsSpace(r) || unicode.IsControl(r) }

// Device is a push registration: one app install, known by its token.
type Device struct {
	Token     string
	Platform  string // one of Platforms
	CreatedAt time.Time
}

// NewDevice validates a push device registration made at now.
func NewDevice(token, platform string, now time.Time) (Device, error) {
	if err := CheckDevice(token, platform); err != nil {
		return Device{}, err
	}
	return Device{Token: token, Platform: platform, CreatedAt: now}, nil
}

// Platforms a push device may have.
var Platforms = []string{"ios", "android", "web"}

// CheckDevice validates a push device registration.
func CheckDevice(token, platform string) error {
	if strings.TrimSpace(token) == "" {
		return invalid("token is required")
	}
	if len(token) > MaxToken {
		return invalid("token must be at most %d bytes", MaxToken)
	}
	if strings.ContainsAny(token, "/ \t\r\n") {
		return invalid("token must not contain '/' or whitespace")
	}
	for _, p := range Platforms {
		if platform == p {
			return nil
		}
	}
	return invalid("platform must be one of ios, android, web")
}

// Preferences are a user's notification channels.
type Preferences struct {
	Email bool
	Push  bool
}

// DefaultPreferences apply until the user sets their own: every channel on.
var DefaultPreferences = Preferences{Email: true, Push: true}
