package protocol

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
)

// tagRing is the domain tag of ring positions.
const tagRing = "scrip/v1/ring\x00"

// RingKey returns the position of server id on the ring of storageIndex:
// SHA-256("scrip/v1/ring\x00" || storageIndex || id), id in its binary form.
// Storage indexes are [StorageIndexSize] bytes.
func RingKey(storageIndex []byte, id peer.ID) [32]byte {
	buf := make([]byte, 0, len(tagRing)+len(storageIndex)+len(id))
	return ringKey(appendRingPrefix(buf, storageIndex), id)
}

func appendRingPrefix(buf, storageIndex []byte) []byte {
	return append(append(buf, tagRing...), storageIndex...)
}

// ringKey hashes prefix || id; it may reuse prefix's spare capacity.
func ringKey(prefix []byte, id peer.ID) [32]byte {
	return sha256.Sum256(append(prefix, id...))
}

// ringEntry is one server with its ring key, computed once. head is the
// key's first 8 bytes as a big-endian integer, which settles almost every
// comparison without touching the rest.
type ringEntry struct {
	head uint64
	key  [32]byte
	id   peer.ID
}

func newRingEntry(prefix []byte, id peer.ID) ringEntry {
	k := ringKey(prefix, id)
	return ringEntry{head: binary.BigEndian.Uint64(k[:8]), key: k, id: id}
}

// cmpEntry orders entries by key, then by peer ID bytes (a tie needs a
// SHA-256 collision or the same peer twice).
func cmpEntry(a, b *ringEntry) int {
	if a.head != b.head {
		if a.head < b.head {
			return -1
		}
		return 1
	}
	if c := bytes.Compare(a.key[8:], b.key[8:]); c != 0 {
		return c
	}
	return strings.Compare(string(a.id), string(b.id))
}

// Ring returns peers in ring order for storageIndex: ascending by
// [RingKey], ties broken by peer ID bytes. Uploads walk it placing shares on
// the first eligible servers; downloads walk all of it. A peer listed twice
// appears twice. peers is not modified.
func Ring(storageIndex []byte, peers []peer.ID) []peer.ID {
	entries := make([]ringEntry, len(peers))
	// Sort small (head, index) pairs rather than whole entries; the full key
	// is looked at only when heads are equal.
	order := make([]ringPos, len(peers))
	prefix := appendRingPrefix(make([]byte, 0, 128), storageIndex)
	for i, id := range peers {
		entries[i] = newRingEntry(prefix, id)
		order[i] = ringPos{head: entries[i].head, i: i}
	}
	slices.SortFunc(order, func(a, b ringPos) int {
		switch {
		case a.head < b.head:
			return -1
		case a.head > b.head:
			return 1
		}
		return cmpEntry(&entries[a.i], &entries[b.i])
	})
	out := make([]peer.ID, len(order))
	for k, p := range order {
		out[k] = entries[p.i].id
	}
	return out
}

// ringPos is an entry's sort handle.
type ringPos struct {
	head uint64
	i    int
}

// FirstM returns the first m peers of the ring, equal to
// Ring(storageIndex, peers)[:m] (all of it if m > len(peers)), keeping only
// m candidates at a time.
func FirstM(storageIndex []byte, peers []peer.ID, m int) []peer.ID {
	m = min(m, len(peers))
	if m <= 0 {
		return []peer.ID{}
	}
	// h is a max-heap of the m smallest entries seen so far.
	h := make([]ringEntry, 0, m)
	prefix := appendRingPrefix(make([]byte, 0, 128), storageIndex)
	for _, id := range peers {
		e := newRingEntry(prefix, id)
		switch {
		case len(h) < m:
			h = append(h, e)
			siftUp(h, len(h)-1)
		case cmpEntry(&e, &h[0]) < 0:
			h[0] = e
			siftDown(h, 0)
		}
	}
	slices.SortFunc(h, func(a, b ringEntry) int { return cmpEntry(&a, &b) }) // m is small
	out := make([]peer.ID, len(h))
	for i := range h {
		out[i] = h[i].id
	}
	return out
}

func siftUp(h []ringEntry, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if cmpEntry(&h[i], &h[p]) <= 0 {
			return
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func siftDown(h []ringEntry, i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		c := l
		if r := l + 1; r < len(h) && cmpEntry(&h[r], &h[l]) > 0 {
			c = r
		}
		if cmpEntry(&h[c], &h[i]) <= 0 {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}
