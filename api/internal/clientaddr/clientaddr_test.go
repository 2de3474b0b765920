package clientaddr_test

import (
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/marketmesh/marketmesh/api/internal/clientaddr"
)

func TestTheClientAddressBehindTrustedProxies(t *testing.T) {
	trusted, err := clientaddr.ParseTrusted([]string{"172.18.0.0/16", " 10.0.0.7 ", "", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	behind := clientaddr.New(trusted)
	nobody := clientaddr.New(nil)
	tests := []struct {
		name     string
		resolver *clientaddr.Resolver
		remote   string
		xff      []string
		want     string
	}{
		{"with no trusted proxies the peer is the client", nobody, "198.51.100.7:4000", nil, "198.51.100.7"},
		{"with no trusted proxies X-Forwarded-For is ignored", nobody, "172.18.0.1:4000", []string{"203.0.113.9"}, "172.18.0.1"},
		{"an untrusted peer cannot name another client", behind, "198.51.100.7:4000", []string{"203.0.113.9"}, "198.51.100.7"},
		{"a trusted proxy's peer is the client", behind, "172.18.0.1:4000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"addresses the client made up left of the proxy's entry are ignored", behind, "172.18.0.1:4000", []string{"1.2.3.4, 5.6.7.8, 203.0.113.9"}, "203.0.113.9"},
		{"a chain of trusted proxies is walked from the right", behind, "172.18.0.1:4000", []string{"1.2.3.4, 203.0.113.9, 10.0.0.7, 172.18.0.5"}, "203.0.113.9"},
		{"repeated headers form one list, the last header nearest", behind, "172.18.0.1:4000", []string{"1.2.3.4", "203.0.113.9, 10.0.0.7"}, "203.0.113.9"},
		{"a trusted proxy without X-Forwarded-For is the client", behind, "172.18.0.1:4000", nil, "172.18.0.1"},
		{"when every hop is trusted the left-most is the client", behind, "172.18.0.1:4000", []string{"10.0.0.7, 172.18.0.9"}, "10.0.0.7"},
		{"garbage stops the walk at the last believable hop", behind, "172.18.0.1:4000", []string{"203.0.113.9, not-an-ip, 10.0.0.7"}, "10.0.0.7"},
		{"an entry with a port is read", behind, "172.18.0.1:4000", []string{"203.0.113.9:5555"}, "203.0.113.9"},
		{"IPv6 entries are read", behind, "[fd00::1]:4000", []string{"2001:db8::1"}, "2001:db8::1"},
		{"an IPv4-mapped peer matches IPv4 prefixes", behind, "[::ffff:172.18.0.1]:4000", []string{"203.0.113.9"}, "203.0.113.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := tt.resolver.Addr(r); got != netip.MustParseAddr(tt.want) {
				t.Errorf("Addr = %v, want %s", got, tt.want)
			}
		})
	}
}

func TestParseTrustedRefusesNonsense(t *testing.T) {
	for _, bad := range []string{"172.18.0.0/33", "docker", "10.0.0.1/abc"} {
		if _, err := clientaddr.ParseTrusted([]string{bad}); err == nil {
			t.Errorf("ParseTrusted(%q) accepted it", bad)
		}
	}
	got, err := clientaddr.ParseTrusted([]string{"172.18.3.4/16", "2001:db8::1"})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != netip.MustParsePrefix("172.18.0.0/16") || got[1] != netip.MustParsePrefix("2001:db8::1/128") {
		t.Errorf("ParseTrusted = %v", got)
	}
}

func TestAnIPv6ClientIsLimitedByItsSlash64(t *testing.T) {
	a := clientaddr.Key(netip.MustParseAddr("2001:db8:1:2:aaaa::1"))
	b := clientaddr.Key(netip.MustParseAddr("2001:db8:1:2:bbbb::9"))
	c := clientaddr.Key(netip.MustParseAddr("2001:db8:1:3::1"))
	if a != b || a == c {
		t.Errorf("keys %v %v %v: want the first two equal, the third apart", a, b, c)
	}
	if v4 := netip.MustParseAddr("198.51.100.7"); clientaddr.Key(v4) != v4 {
		t.Errorf("an IPv4 key changed")
	}
}
