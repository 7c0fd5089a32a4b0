package files

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAttackSearchLowShares: hostile servers hold the lowest-numbered
// shares, which a reader uses first, and corrupt a segment's blocks. With
// k of 10 and more, the k-subsets that avoid them came last in the
// order Search tried, beyond its 4,096 tries: a handful of corrupt
// shares, far fewer than the n−k the coding tolerates, made a segment
// fail although many good blocks were at hand. Search now samples the
// subsets at random when there are too many to try them all.
func TestAttackSearchLowShares(t *testing.T) {
	for _, p := range [][3]int{{10, 20, 6}, {20, 40, 4}, {32, 64, 3}} {
		k, n, corrupt := p[0], p[1], p[2]
		t.Run(fmt.Sprintf("%d-of-%d/%d-corrupt", k, n, corrupt), func(t *testing.T) {
			data := testData(21, SegmentSize+5)
			c, shares := encodeT(t, data, k, n)
			d, err := NewDecoder(c)
			require.NoError(t, err)
			off, bl := c.BlockRange(0)
			blocks := make([][]byte, n)
			// The reader adds blocks one at a time and searches each
			// time, as Get does.
			var plain []byte
			var bad []int
			for j := range n {
				blocks[j] = bytes.Clone(shares[j][off : off+int64(bl)])
				if j < corrupt {
					blocks[j][j] ^= 1
				}
				if j < k {
					continue
				}
				if plain, bad, err = d.Search(0, blocks); err == nil {
					break
				}
				require.ErrorIs(t, err, ErrDecrypt)
			}
			require.NoError(t, err)
			require.Equal(t, data[:SegmentSize], plain)
			want := make([]int, corrupt)
			for j := range want {
				want[j] = j
			}
			require.Equal(t, want, bad)
		})
	}
}

// TestAttackSearchAmongClaims: a server passes garbage off as every
// share (a streamed header's number is its word until the whole body is
// read). With one block per share number, the garbage took every number
// and no genuine block could be tried; SearchAmong takes several
// candidates per number and finds the genuine ones.
func TestAttackSearchAmongClaims(t *testing.T) {
	data := testData(22, 2*SegmentSize+9)
	c, shares := encodeT(t, data, 3, 10)
	d, err := NewDecoder(c)
	require.NoError(t, err)
	for _, i := range []uint64{0, c.Segments() - 1} {
		off, bl := c.BlockRange(i)
		var cands []Candidate
		for j := range 10 {
			b := bytes.Clone(shares[0][off : off+int64(bl)])
			b[0] ^= byte(j + 1)
			cands = append(cands, Candidate{Num: j, Block: b})
		}
		_, _, err := d.SearchAmong(i, cands)
		require.ErrorIs(t, err, ErrDecrypt)
		for _, j := range []int{8, 4, 6} {
			cands = append(cands, Candidate{Num: j, Block: bytes.Clone(shares[j][off : off+int64(bl)])})
		}
		plain, bad, err := d.SearchAmong(i, cands)
		require.NoError(t, err)
		start := i * SegmentSize
		require.Equal(t, data[start:min(start+SegmentSize, uint64(len(data)))], plain)
		require.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, bad)
	}
	_, _, err = d.SearchAmong(0, []Candidate{{Num: 1, Block: make([]byte, 3)}})
	require.ErrorIs(t, err, ErrShareMismatch)
	_, bl := c.BlockRange(0)
	_, _, err = d.SearchAmong(0, []Candidate{{Num: 1, Block: make([]byte, bl)}, {Num: 1, Block: make([]byte, bl)}, {Num: 2, Block: make([]byte, bl)}})
	require.ErrorIs(t, err, ErrNotEnoughShares)
}
