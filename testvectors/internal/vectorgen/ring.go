package vectorgen

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The ring vectors are computed here from the definition in
// SPEC.md §8 (permuted ring), independently of protocol.Ring; the
// conformance test runs protocol.Ring, protocol.FirstM and protocol.RingKey
// on them.

const (
	// tagRing is the domain tag of ring positions.
	tagRing = "scrip/v1/ring\x00"
	// fullRingMax is the largest peer count whose ring a case lists whole;
	// larger rings list their first ringPrefix servers.
	fullRingMax = 100
	ringPrefix  = 20
	// specRingKey is the vector of SPEC.md §8: storage index
	// 000102…0f and the peer ID of the all-zero Ed25519 key.
	specRingKey = "8f889e5815ce1ddc76bf878de6d29e78e23840b0e5ab0387889e62c0ec7d0ad3"
)

type ringGroup struct {
	Peers []ringPeer `json:"peers" desc:"the servers, in input order; a case uses the first peerCount of them"`
	Tests []ringTest `json:"tests"`
}

type ringPeer struct {
	ID     string   `json:"id" desc:"the peer ID as libp2p writes it (base58btc of the multihash)"`
	Binary hexBytes `json:"binary" desc:"the peer ID's binary form, the bytes hashed into ring keys: the identity multihash 00 24 of the protobuf-encoded Ed25519 public key 08 01 12 20 || key"`
}

type ringEntry struct {
	ID      string   `json:"id" desc:"the server's peer ID, as in the group's peers"`
	RingKey hexBytes `json:"ringKey" hex:"32" desc:"SHA-256(\"scrip/v1/ring\\x00\" || storageIndex || binary peer ID)"`
}

type ringTest struct {
	testCase
	StorageIndex hexBytes    `json:"storageIndex" hex:"16" desc:"the storage index"`
	PeerCount    int         `json:"peerCount" desc:"the case's servers are the first peerCount of the group's peers, in that order"`
	Ring         []ringEntry `json:"ring" desc:"the expected ring, in order, with each server's ring key: all of it when peerCount is at most 100, else its first 20 servers"`
	RingDigest   hexBytes    `json:"ringDigest" hex:"32" desc:"SHA-256 of the binary peer IDs of the whole ring concatenated in ring order (every ID here is 38 bytes)"`
	M            *int        `json:"m,omitempty" desc:"for FirstM cases: how many servers to take from the start of the ring"`
	FirstM       *[]string   `json:"firstM,omitempty" desc:"for FirstM cases: the first m servers of the ring (all of them when m exceeds peerCount), by peer ID"`
}

// ringPeerID returns the libp2p peer ID of an Ed25519 public key.
func ringPeerID(pub ed25519.PublicKey) (peer.ID, error) {
	k, err := crypto.UnmarshalEd25519PublicKey(pub)
	if err != nil {
		return "", err
	}
	return peer.IDFromPublicKey(k)
}

// ringOrder returns the ring of ids for storage index si by the definition:
// ascending by ring key, ties by peer ID bytes; with each one's ring key.
func ringOrder(si []byte, ids []peer.ID) ([]peer.ID, [][32]byte) {
	type entry struct {
		key [32]byte
		id  peer.ID
	}
	es := make([]entry, len(ids))
	for i, id := range ids {
		es[i] = entry{sha256.Sum256(cat([]byte(tagRing), si, []byte(id))), id}
	}
	slices.SortStableFunc(es, func(a, b entry) int {
		if c := bytes.Compare(a.key[:], b.key[:]); c != 0 {
			return c
		}
		return bytes.Compare([]byte(a.id), []byte(b.id))
	})
	out, keys := make([]peer.ID, len(es)), make([][32]byte, len(es))
	for i, e := range es {
		out[i], keys[i] = e.id, e.key
	}
	return out, keys
}

// ringCase is one case before it is computed: m < 0 means no FirstM.
type ringCase struct {
	comment string
	si      []byte
	n, m    int
	flags   []string
}

func ringCaseTest(b *builder, ids []peer.ID, rc ringCase) ringTest {
	ring, keys := ringOrder(rc.si, ids[:rc.n])
	h := sha256.New()
	for _, id := range ring {
		h.Write([]byte(id))
	}
	flags := slices.Clone(rc.flags)
	shown := len(ring)
	if shown > fullRingMax {
		shown = ringPrefix
		flags = append(flags, "LargeRing")
	} else {
		flags = append(flags, "FullRing")
	}
	t := ringTest{StorageIndex: rc.si, PeerCount: rc.n, RingDigest: h.Sum(nil)}
	for i := range shown {
		t.Ring = append(t.Ring, ringEntry{ring[i].String(), keys[i][:]})
	}
	if rc.m >= 0 {
		flags = append(flags, "FirstM")
		m := rc.m
		first := make([]string, 0, min(m, len(ring)))
		for _, id := range ring[:min(m, len(ring))] {
			first = append(first, id.String())
		}
		t.M, t.FirstM = &m, &first
	}
	t.testCase = b.valid(rc.comment, flags...)
	return t
}

func ringFile() (*file, error) {
	g := newRNG("ring")
	b := &builder{}
	peersOf := func(ids []peer.ID) []ringPeer {
		out := make([]ringPeer, len(ids))
		for i, id := range ids {
			out[i] = ringPeer{ID: id.String(), Binary: []byte(id)}
		}
		return out
	}

	// The vector of SPEC.md §8.
	zero, err := ringPeerID(make(ed25519.PublicKey, ed25519.PublicKeySize))
	if err != nil {
		return nil, err
	}
	specSI := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	if _, keys := ringOrder(specSI, []peer.ID{zero}); hex.EncodeToString(keys[0][:]) != specRingKey {
		return nil, fmt.Errorf("ring: the specification's vector comes to %x", keys[0])
	}
	spec := ringGroup{Peers: peersOf([]peer.ID{zero})}
	spec.Tests = append(spec.Tests, ringCaseTest(b, []peer.ID{zero}, ringCase{
		comment: "storage index 000102…0f and the peer ID of the all-zero Ed25519 key (SPEC.md §8)",
		si:      specSI, n: 1, m: -1, flags: []string{"SpecExample", "SinglePeer"},
	}))

	// 1,000 servers with seeded Ed25519 keys; cases use prefixes of them.
	ids := make([]peer.ID, 1000)
	for i := range ids {
		if ids[i], err = ringPeerID(g.edKey().Public().(ed25519.PublicKey)); err != nil {
			return nil, err
		}
		if len(ids[i]) != 38 {
			return nil, fmt.Errorf("ring: peer ID of %d bytes", len(ids[i]))
		}
	}
	si := func() []byte { return g.bytes(16) }
	zeroSI, onesSI := make([]byte, 16), bytes.Repeat([]byte{0xff}, 16)
	var cases []ringCase
	for _, n := range []int{1, 2, 3, 5, 10, 20, 50, 100, 101, 256, 500, 1000} {
		var flags []string
		servers := fmt.Sprintf("%d servers", n)
		if n == 1 {
			flags, servers = []string{"SinglePeer"}, "1 server"
		}
		cases = append(cases, ringCase{comment: servers + ", a random storage index", si: si(), n: n, m: -1, flags: flags})
		if n <= 10 || n == 1000 {
			cases = append(cases, ringCase{comment: servers + ", a second random storage index", si: si(), n: n, m: -1, flags: flags})
		}
		if n == 2 || n == 10 || n == 100 {
			cases = append(cases,
				ringCase{comment: servers + ", the all-zero storage index", si: zeroSI, n: n, m: -1, flags: []string{"EdgeIndex"}},
				ringCase{comment: servers + ", the all-0xff storage index", si: onesSI, n: n, m: -1, flags: []string{"EdgeIndex"}})
		}
	}
	for _, fm := range []struct{ n, m int }{{10, 1}, {10, 3}, {10, 10}, {10, 15}, {100, 7}, {1000, 1}, {1000, 10}, {1000, 20}} {
		cases = append(cases, ringCase{comment: fmt.Sprintf("the first %d of the ring of %d servers", fm.m, fm.n), si: si(), n: fm.n, m: fm.m})
	}
	seeded := ringGroup{Peers: peersOf(ids)}
	for _, rc := range cases {
		seeded.Tests = append(seeded.Tests, ringCaseTest(b, ids, rc))
	}

	// A server listed more than once appears that many times.
	dupIDs := []peer.ID{ids[0], ids[1], ids[2], ids[0], ids[3], ids[0], ids[2]}
	dup := ringGroup{Peers: peersOf(dupIDs)}
	for _, rc := range []ringCase{
		{comment: "7 entries of 4 servers, one listed three times and one twice", si: si(), n: 7, m: -1},
		{comment: "the same entries, another storage index", si: si(), n: 7, m: -1},
		{comment: "the same entries: the first 4 of the ring", si: si(), n: 7, m: 4},
		{comment: "one server listed twice", si: si(), n: 4, m: -1},
	} {
		rc.flags = []string{"DuplicatePeer"}
		dup.Tests = append(dup.Tests, ringCaseTest(b, dupIDs, rc))
	}

	return &file{
		name:      "ring",
		algorithm: "scrip/v1 permuted ring",
		header: []string{
			"Rings of protocol.Ring(storageIndex, peers) and protocol.FirstM(storageIndex, peers, m), with each server's protocol.RingKey(storageIndex, peer).",
			"ring_key(si, server) = SHA-256(\"scrip/v1/ring\\x00\" || si || server's binary peer ID); the ring is the servers sorted ascending by ring key (bytewise), ties broken by the binary peer IDs, a server listed twice appearing twice.",
			"A case uses the first peerCount of its group's peers. It lists the ring whole for at most 100 servers and its first 20 for more; ringDigest = SHA-256 of the binary peer IDs of the whole ring concatenated in ring order, in every case.",
			"Peer IDs are those of Ed25519 keys drawn from the seeded generator (libp2p's identity multihash form, 38 bytes); storage indexes are 16 bytes.",
			"Specification: SPEC.md §8, permuted ring.",
		},
		groups: []ringGroup{spec, seeded, dup},
		b:      b,
	}, nil
}
