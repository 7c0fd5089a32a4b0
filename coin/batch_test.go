package coin

import (
	"crypto/sha512"
	"encoding/binary"
	"testing"

	"filippo.io/edwards25519"
	"github.com/hdevalence/ed25519consensus"
)

// encodings returns the encodings of p that curve decoders may accept: the
// canonical one, y+p where y+p < 2^255, and the sign bit flipped when x = 0.
func encodings(p *edwards25519.Point) [][]byte {
	c := p.Bytes()
	out := [][]byte{c}
	// y + p: only for y < 19. p = 2^255 − 19 as little-endian bytes.
	y := append([]byte(nil), c...)
	sign := y[31] & 0x80
	y[31] &= 0x7f
	small := y[0] < 19
	for i := 1; i < 32; i++ {
		small = small && y[i] == 0
	}
	if small {
		nc := make([]byte, 32)
		nc[0] = y[0] + 0xed
		for i := 1; i < 31; i++ {
			nc[i] = 0xff
		}
		nc[31] = 0x7f | sign
		out = append(out, nc)
	}
	// x = 0 (y = ±1): the sign bit may be set without changing the point.
	if p.Equal(identity) == 1 || new(edwards25519.Point).Add(p, p).Equal(identity) == 1 {
		for _, e := range out {
			if e[31]&0x80 != 0 {
				continue
			}
			flipped := append([]byte(nil), e...)
			flipped[31] |= 0x80
			if q, err := new(edwards25519.Point).SetBytes(flipped); err == nil && q.Equal(p) == 1 {
				out = append(out, flipped)
			}
		}
	}
	return out
}

// batchAccepts runs the merged batch verifier on the given signatures, all
// under keys given as encodings; merge says whether to merge terms by key.
func batchAccepts(keys, msgs, sigs [][]byte, merge bool) bool {
	b := newBatch(len(sigs))
	for i := range sigs {
		a, err := new(edwards25519.Point).SetBytes(keys[i])
		if err != nil {
			return false
		}
		t, ok := prepSig(a, keys[i], msgs[i], sigs[i])
		if !ok {
			return false
		}
		var mk [32]byte
		if merge {
			mk = sha512Sum32(keys[i])
		}
		b.add(t, mk)
	}
	return b.verify()
}

func sha512Sum32(b []byte) [32]byte {
	h := sha512.Sum512(b)
	return [32]byte(h[:32])
}

// TestBatchSmallOrderZIP215 checks the batch verifier against
// ed25519consensus on every pair of small-order A and R encodings with S = 0,
// the ZIP-215 edge cases, alone and batched with a valid signature.
func TestBatchSmallOrderZIP215(t *testing.T) {
	T := torsion(t)
	var encs [][]byte
	for _, p := range T {
		encs = append(encs, encodings(p)...)
	}
	if len(encs) < 10 {
		t.Fatalf("only %d small-order encodings", len(encs))
	}
	msg := []byte("Zcash")
	goodKey, goodMsg, goodSig := signWith(t, 7, []byte("valid"), nil, nil)
	n := 0
	for _, a := range encs {
		for _, r := range encs {
			sig := append(append([]byte(nil), r...), make([]byte, 32)...)
			want := ed25519consensus.Verify(a, msg, sig)
			if got := batchAccepts([][]byte{a}, [][]byte{msg}, [][]byte{sig}, false); got != want {
				t.Errorf("A=%x R=%x: batch %v, ed25519consensus %v", a, r, got, want)
			}
			for _, merge := range []bool{false, true} {
				got := batchAccepts([][]byte{a, goodKey, a}, [][]byte{msg, goodMsg, msg}, [][]byte{sig, goodSig, sig}, merge)
				if got != want {
					t.Errorf("batched A=%x R=%x merge=%v: batch %v, ed25519consensus %v", a, r, merge, got, want)
				}
			}
			n++
		}
	}
	t.Logf("%d small-order cases", n)
}

// signWith signs msg with a key derived from k, adding torsion tA to the
// public key and tR to the commitment (nil for none). The result verifies
// under ZIP-215 whatever the torsion.
func signWith(t testing.TB, k uint64, msg []byte, tA, tR *edwards25519.Point) (key, m, sig []byte) {
	var wide [64]byte
	binary.BigEndian.PutUint64(wide[:], k+1)
	x, _ := edwards25519.NewScalar().SetUniformBytes(wide[:])
	wide[63] = 1
	r, _ := edwards25519.NewScalar().SetUniformBytes(wide[:])
	A := new(edwards25519.Point).ScalarBaseMult(x)
	if tA != nil {
		A.Add(A, tA)
	}
	R := new(edwards25519.Point).ScalarBaseMult(r)
	if tR != nil {
		R.Add(R, tR)
	}
	key, rb := A.Bytes(), R.Bytes()
	s := edwards25519.NewScalar().MultiplyAdd(challenge(rb, key, msg), x, r)
	return key, msg, append(rb, s.Bytes()...)
}

// FuzzBatchDifferential compares the merged batch verifier with
// ed25519consensus on signatures built from the fuzz input: keys and
// commitments with torsion components, non-canonical encodings of R and A,
// non-canonical S, corrupted messages, repeated keys (merged terms).
func FuzzBatchDifferential(f *testing.F) {
	for i := range 64 {
		f.Add([]byte{byte(i), byte(i * 7), byte(i * 13), byte(i >> 2), 1, 2, 3})
	}
	f.Add([]byte{0x3f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	T := torsion(f)
	L := lMinus1.Bytes() // L − 1, little-endian
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		n := 1 + int(data[0]%4)
		var keys, msgs, sigs [][]byte
		want := true
		for i := range n {
			ctl := data[(1+i)%len(data)]
			arg := data[(2+i)%len(data)]
			var tA, tR *edwards25519.Point
			if ctl&1 != 0 {
				tA = T[arg%8]
			}
			if ctl&2 != 0 {
				tR = T[(arg>>3)%8]
			}
			key, msg, sig := signWith(t, uint64(arg>>6)+uint64(ctl&0x40), []byte{byte(i), arg}, tA, tR)
			if ctl&4 != 0 { // R as another encoding, if there is one
				r, _ := new(edwards25519.Point).SetBytes(sig[:32])
				if e := encodings(r); len(e) > 1 {
					copy(sig[:32], e[1])
				}
			}
			if ctl&8 != 0 { // S + L: non-canonical when it still fits
				var carry uint16 = 1 // (L − 1) + 1
				for j := range 32 {
					v := uint16(sig[32+j]) + uint16(L[j]) + carry
					sig[32+j] = byte(v)
					carry = v >> 8
				}
			}
			if ctl&16 != 0 {
				msg = append(msg, 0)
			}
			if ctl&32 != 0 { // A as another encoding, if there is one
				a, _ := new(edwards25519.Point).SetBytes(key)
				if e := encodings(a); len(e) > 1 {
					key = e[1]
				}
			}
			want = want && ed25519consensus.Verify(key, msg, sig)
			keys, msgs, sigs = append(keys, key), append(msgs, msg), append(sigs, sig)
		}
		for _, merge := range []bool{false, true} {
			if got := batchAccepts(keys, msgs, sigs, merge); got != want {
				t.Fatalf("merge=%v: batch %v, ed25519consensus %v", merge, got, want)
			}
		}
	})
}

// TestEncodeAll checks the shared-inversion encoder against Point.Bytes on
// random points, small-order points and their sums.
func TestEncodeAll(t *testing.T) {
	T := torsion(t)
	var pts []*edwards25519.Point
	for i := range 40 {
		var wide [64]byte
		binary.BigEndian.PutUint64(wide[:], uint64(i)+1)
		x, _ := edwards25519.NewScalar().SetUniformBytes(wide[:])
		p := new(edwards25519.Point).ScalarBaseMult(x)
		pts = append(pts, p, new(edwards25519.Point).Add(p, T[i%8]), T[i%8])
	}
	for n := range len(pts) + 1 {
		for i, got := range encodeAll(pts[:n]) {
			if want := pts[i].Bytes(); string(got[:]) != string(want) {
				t.Fatalf("n=%d point %d: %x, want %x", n, i, got, want)
			}
		}
	}
}
