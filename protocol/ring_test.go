package protocol

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// testPeers returns n deterministic Ed25519 peer IDs.
func testPeers(t testing.TB, n int) []peer.ID {
	t.Helper()
	rng := rand.NewChaCha8([32]byte{'r', 'i', 'n', 'g'})
	out := make([]peer.ID, n)
	for i := range out {
		_, pub, err := crypto.GenerateEd25519Key(rng)
		if err != nil {
			t.Fatal(err)
		}
		if out[i], err = peer.IDFromPublicKey(pub); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestRingKey(t *testing.T) {
	si := make([]byte, StorageIndexSize)
	for i := range si {
		si[i] = byte(i)
	}
	// The identity peer ID of the all-zero Ed25519 key.
	id := peer.ID(append([]byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}, make([]byte, 32)...))
	got := RingKey(si, id)
	if want := "8f889e5815ce1ddc76bf878de6d29e78e23840b0e5ab0387889e62c0ec7d0ad3"; hex.EncodeToString(got[:]) != want {
		t.Fatalf("got %x", got)
	}
}

func TestRing(t *testing.T) {
	peers := testPeers(t, 200)
	si := bytes.Repeat([]byte{7}, StorageIndexSize)
	ring := Ring(si, peers)
	if len(ring) != len(peers) {
		t.Fatalf("ring has %d peers", len(ring))
	}
	// Sorted by key, and a permutation of the input.
	for i := 1; i < len(ring); i++ {
		a, b := RingKey(si, ring[i-1]), RingKey(si, ring[i])
		if bytes.Compare(a[:], b[:]) >= 0 {
			t.Fatalf("positions %d, %d out of order", i-1, i)
		}
	}
	sorted := slices.Clone(peers)
	slices.Sort(sorted)
	gotSorted := slices.Clone(ring)
	slices.Sort(gotSorted)
	if !slices.Equal(sorted, gotSorted) {
		t.Fatal("not a permutation")
	}
	// Deterministic whatever the input order, and the input is untouched.
	shuffled := slices.Clone(peers)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	before := slices.Clone(shuffled)
	if !slices.Equal(Ring(si, shuffled), ring) {
		t.Fatal("order depends on input order")
	}
	if !slices.Equal(before, shuffled) {
		t.Fatal("input modified")
	}
	// Another storage index gives another order.
	if slices.Equal(Ring(bytes.Repeat([]byte{8}, StorageIndexSize), peers), ring) {
		t.Fatal("same order for another storage index")
	}
}

func TestFirstMEqualsRing(t *testing.T) {
	peers := testPeers(t, 100)
	// A duplicate peer keeps its place on both.
	withDup := append(slices.Clone(peers), peers[5], peers[5])
	for _, ps := range [][]peer.ID{nil, peers[:1], peers[:2], peers, withDup} {
		for trial := range 5 {
			si := bytes.Repeat([]byte{byte(trial)}, StorageIndexSize)
			ring := Ring(si, ps)
			for _, m := range []int{-1, 0, 1, 2, 3, 10, 50, len(ps) - 1, len(ps), len(ps) + 5} {
				got := FirstM(si, ps, m)
				want := ring[:max(0, min(m, len(ring)))]
				if !slices.Equal(got, want) {
					t.Fatalf("n=%d m=%d: FirstM differs from Ring[:m]", len(ps), m)
				}
			}
		}
	}
}

func TestRingTieBreak(t *testing.T) {
	a := ringEntry{id: "a"}
	b := ringEntry{id: "b"}
	if cmpEntry(&a, &b) >= 0 || cmpEntry(&b, &a) <= 0 || cmpEntry(&a, &a) != 0 {
		t.Fatal("equal keys not ordered by peer ID bytes")
	}
}

func BenchmarkRing(b *testing.B) {
	for _, n := range []int{100, 10000} {
		peers := testPeers(b, n)
		si := bytes.Repeat([]byte{9}, StorageIndexSize)
		b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Ring(si, peers)
			}
		})
		b.Run(fmt.Sprintf("first=10/servers=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				FirstM(si, peers, 10)
			}
		})
	}
}
