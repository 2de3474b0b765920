// Package clientaddr finds the address of the client behind a request: the
// peer itself, or, when the peer is a proxy this api was told to trust, the
// address that proxy says it forwarded for (X-Forwarded-For).
//
// The algorithm is the usual right-most one: X-Forwarded-For is a list that
// each proxy appends its peer to, so only the entries written by trusted
// proxies can be believed; walking it from the right, every entry that is
// itself a trusted proxy is skipped, and the first one that is not is the
// client. Entries further left were written by the client (or by proxies
// nobody vouches for) and are never used. With no trusted proxies (the
// default), X-Forwarded-For is ignored and the client is the peer.
package clientaddr

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver resolves client addresses behind a set of trusted proxies.
type Resolver struct {
	trusted []netip.Prefix
}

// New returns a Resolver that believes X-Forwarded-For only from peers in
// trusted (none: it never does).
func New(trusted []netip.Prefix) *Resolver {
	return &Resolver{trusted: trusted}
}

// ParseTrusted reads a configured list of trusted proxies: CIDR prefixes
// ("172.16.0.0/12", "fd00::/8") or single addresses ("10.0.0.7"). Empty
// entries (from an empty or trailing-comma env value) are skipped.
func ParseTrusted(entries []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if strings.Contains(e, "/") {
			p, err := netip.ParsePrefix(e)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", e, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(e)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: not an address or CIDR prefix", e)
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Addr returns the client's address; the zero Addr when even the peer's
// address cannot be read (never the case for a real connection).
func (r *Resolver) Addr(req *http.Request) netip.Addr {
	client := parse(req.RemoteAddr)
	if !r.isTrusted(client) {
		return client
	}
	xff := req.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		hops := strings.Split(xff[i], ",")
		for j := len(hops) - 1; j >= 0; j-- {
			hop := parse(strings.TrimSpace(hops[j]))
			if !hop.IsValid() {
				// Not written by a trusted proxy (they write addresses): the
				// nearest hop we could believe is the client.
				return client
			}
			client = hop
			if !r.isTrusted(hop) {
				return client
			}
		}
	}
	// Every hop is a trusted proxy: the left-most one is the client.
	return client
}

func (r *Resolver) isTrusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parse reads "ip", "ip:port" or "[ipv6]:port"; IPv4-mapped IPv6 addresses
// become IPv4 and zones are dropped, so one client has one form.
func parse(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr != nil {
			return netip.Addr{}
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone("")
}

// Key is the address a limit applies to: an IPv4 address, or the /64 an
// IPv6 address belongs to (one host usually holds a whole /64, so keying by
// full IPv6 address would let one client pose as 2^64).
func Key(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}
