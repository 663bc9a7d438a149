package web

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a per-client-address token bucket. A zero per-minute rate
// means no limit.
type limiter struct {
	perMinute int
	now       func() time.Time

	mu sync.Mutex
	m  map[netip.Addr]*limitEntry
}

type limitEntry struct {
	l    *rate.Limiter
	last time.Time
}

// maxLimiters bounds the tracked addresses; idle ones are dropped first.
const maxLimiters = 50_000

func newLimiter(perMinute int, now func() time.Time) *limiter {
	return &limiter{perMinute: perMinute, now: now, m: map[netip.Addr]*limitEntry{}}
}

// allow reports whether addr may make one more request now.
func (l *limiter) allow(addr netip.Addr) bool {
	if l.perMinute <= 0 {
		return true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.m[addr]
	if !ok {
		if len(l.m) >= maxLimiters {
			for a, e := range l.m {
				if now.Sub(e.last) > 10*time.Minute {
					delete(l.m, a)
				}
			}
			if len(l.m) >= maxLimiters {
				return false
			}
		}
		burst := max(1, l.perMinute/2)
		e = &limitEntry{l: rate.NewLimiter(rate.Limit(float64(l.perMinute)/60), burst)}
		l.m[addr] = e
	}
	e.last = now
	return e.l.AllowN(now, 1)
}

// clientAddr is the address of the client: the TCP peer, or, when the peer
// is a trusted proxy, the rightmost X-Forwarded-For address that is not
// itself a trusted proxy.
func clientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	peer = peer.Unmap()
	if !inPrefixes(peer, trusted) {
		return peer
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return peer // a malformed header: trust nothing in it
		}
		a = a.Unmap()
		if !inPrefixes(a, trusted) {
			return a
		}
	}
	return peer
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
