package protocol

import (
	"net/netip"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// streamGuard keeps a stream handler's defences against peers that hold
// streams without using them. The resource manager bounds a protocol's
// streams from all peers and from one peer, but a peer ID costs nothing:
// identities made up at one address could hold every stream of the
// protocol with requests that never arrive. So the guard bounds the
// streams per IP address, and resets streams whose requests stall while
// the protocol is crowded.
type streamGuard struct {
	ipStreams int
	grace     time.Duration
	rate      int

	mu    sync.Mutex
	perIP map[netip.Prefix]int

	evict   sync.Mutex // one eviction at a time, so that just enough go
	evicted int        // streams reset by eviction whose handlers have not returned; guarded by evict
}

func newStreamGuard(c handlerConfig) *streamGuard {
	return &streamGuard{ipStreams: c.ipStreams, grace: c.stallGrace, rate: c.stallRate, perIP: make(map[netip.Prefix]int)}
}

// ipKey returns the address block a peer at addr is counted in: its IPv4
// address or its IPv6 /56; false for a loopback address or one that is
// not IP.
func ipKey(addr ma.Multiaddr) (netip.Prefix, bool) {
	ip, err := manet.ToIP(addr)
	if err != nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	if a.IsLoopback() {
		return netip.Prefix{}, false
	}
	bits := 32
	if a.Is6() {
		bits = 56
	}
	p, err := a.Prefix(bits)
	return p, err == nil
}

// enter counts a stream from a peer at addr against the address's limit;
// false means it is over it. leave ends the count.
func (g *streamGuard) enter(addr ma.Multiaddr) (leave func(), ok bool) {
	if g.ipStreams <= 0 {
		return func() {}, true
	}
	key, ok := ipKey(addr)
	if !ok {
		return func() {}, true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.perIP[key] >= g.ipStreams {
		return nil, false
	}
	g.perIP[key]++
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.perIP[key]--; g.perIP[key] <= 0 {
			delete(g.perIP, key)
		}
	}, true
}

// crowded reports whether s's protocol has three quarters or more of the
// inbound streams its resource-manager limit allows, not counting gone
// streams still counted there. It needs go-libp2p's resource manager;
// with another, it reports false.
func crowded(s network.Stream, gone int) bool {
	ms, ok := s.Scope().(interface{ ProtocolScope() network.ProtocolScope })
	if !ok {
		return false
	}
	ps := ms.ProtocolScope()
	if ps == nil {
		return false
	}
	l, ok := ps.(interface{ Limit() rcmgr.Limit })
	if !ok {
		return false
	}
	limit := l.Limit().GetStreamLimit(network.DirInbound)
	return limit > 0 && ps.Stat().NumStreamsInbound-gone >= limit-limit/4
}

// readWatch watches one stream while its request arrives.
type readWatch struct {
	g     *streamGuard
	s     network.Stream
	start time.Time

	mu       sync.Mutex
	timer    *time.Timer
	deadline time.Time // stalled after this time
	done     bool
	evicted  bool
}

// watch starts watching s, opened at start, for a stalled request. The
// caller tells it the request's length (sized) and when the request has
// arrived (stop).
func (g *streamGuard) watch(s network.Stream, start time.Time) *readWatch {
	w := &readWatch{g: g, s: s, start: start}
	if g.grace <= 0 {
		w.done = true
		return w
	}
	w.deadline = start.Add(g.grace)
	w.timer = time.AfterFunc(g.grace, w.fire)
	return w
}

// sized gives the stream the time its request's n bytes take at the
// guard's rate.
func (w *readWatch) sized(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	w.deadline = w.start.Add(w.g.grace + time.Duration(n)*time.Second/time.Duration(w.g.rate))
	w.timer.Reset(time.Until(w.deadline))
}

func (w *readWatch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.done = true
		w.timer.Stop()
	}
}

// exit is called when the stream's handler returns: the stream no
// longer counts as crowding its protocol.
func (w *readWatch) exit() {
	w.mu.Lock()
	evicted := w.evicted
	w.mu.Unlock()
	if evicted {
		w.g.evict.Lock()
		w.g.evicted--
		w.g.evict.Unlock()
	}
}

// fire resets the stream if its request has stalled and the protocol is
// crowded; otherwise it looks again later.
func (w *readWatch) fire() {
	w.g.evict.Lock()
	defer w.g.evict.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	if wait := time.Until(w.deadline); wait > 0 {
		w.timer.Reset(wait)
		return
	}
	// The resource manager counts a stream until its handler returns.
	if crowded(w.s, w.g.evicted) {
		w.done, w.evicted = true, true
		w.g.evicted++
		w.s.ResetWithError(network.StreamResourceLimitExceeded)
		return
	}
	w.timer.Reset(w.g.grace)
}
