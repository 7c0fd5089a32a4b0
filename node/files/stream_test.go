package files

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEncoderPieces rebuilds every share from what an Encoder hands out a
// segment at a time (blocks at their BlockRange, the header last) and
// from a Coder fed the sealed segments again, and checks both against
// Encode's shares with the same key.
func TestEncoderPieces(t *testing.T) {
	for _, size := range []int{0, 1, SegmentSize - 16, SegmentSize, SegmentSize + 1, 3*SegmentSize + 77} {
		for _, p := range [][2]int{{3, 10}, {1, 1}, {2, 5}} {
			t.Run(fmt.Sprintf("%d/%d-of-%d", size, p[0], p[1]), func(t *testing.T) {
				k, n := p[0], p[1]
				data := testData(uint64(size), size)
				key := testKey(uint64(size))
				want, wantShares, err := encode(bytes.NewReader(data), k, n, key)
				require.NoError(t, err)
				require.Equal(t, want.ShareSize(), ShareSize(k, n, uint64(size)))

				e, err := newEncoder(key, k, n)
				require.NoError(t, err)
				require.Equal(t, want.StorageIndex(), e.StorageIndex())
				require.Nil(t, e.Capability())
				require.Nil(t, e.Header(0))
				coder, err := NewCoder(k, n)
				require.NoError(t, err)
				got := make([][]byte, n)
				again := make([][]byte, n)
				for j := range got {
					got[j] = make([]byte, want.ShareSize())
					again[j] = make([]byte, want.ShareSize())
				}
				c, err := e.SealFrom(bytes.NewReader(data), func(i uint64, sealed []byte, blocks [][]byte) error {
					off, bl := want.BlockRange(i)
					recoded, err := coder.Blocks(sealed)
					require.NoError(t, err)
					for j := range n {
						require.Len(t, blocks[j], bl)
						copy(got[j][off:], blocks[j])
						copy(again[j][off:], recoded[j])
					}
					return nil
				})
				require.NoError(t, err)
				require.Equal(t, *want, *c)
				require.Equal(t, uint64(size), e.Size())
				_, _, err = e.Seal(nil, true)
				require.Error(t, err, "nothing after the last segment")
				for j := range n {
					require.Len(t, e.Header(j), c.HeaderSize())
					copy(got[j], e.Header(j))
					copy(again[j], e.Header(j))
					require.Equal(t, wantShares[j], got[j], "share %d", j)
					require.Equal(t, wantShares[j], again[j], "share %d coded again", j)
					h := NewShareHash(j)
					h.Write(got[j][c.HeaderSize():])
					require.Equal(t, e.ShareHash(j), [32]byte(h.Sum(nil)))
				}
				// The blocks tile the body exactly.
				end, _ := c.BlockRange(0)
				for i := range c.Segments() {
					off, bl := c.BlockRange(i)
					require.Equal(t, end, off)
					end = off + int64(bl)
				}
				require.Equal(t, c.ShareSize(), end)
			})
		}
	}
}

func TestEncoderSealErrors(t *testing.T) {
	e, err := NewEncoder(3, 10)
	require.NoError(t, err)
	_, _, err = e.Seal(make([]byte, 10), false)
	require.Error(t, err, "a short segment that is not the last")
	_, _, err = e.Seal(make([]byte, SegmentSize+1), true)
	require.Error(t, err, "a segment too long")
	_, _, err = e.Seal(make([]byte, SegmentSize), false)
	require.NoError(t, err)
	_, _, err = e.Seal(nil, true)
	require.Error(t, err, "an empty last segment after others")
	_, err = NewEncoder(4, 3)
	require.ErrorIs(t, err, ErrParams)
	_, err = NewCoder(0, 3)
	require.ErrorIs(t, err, ErrParams)
	c, err := NewCoder(3, 10)
	require.NoError(t, err)
	_, err = c.Blocks(make([]byte, 15))
	require.Error(t, err)
}

// streamDecode decodes a file as a streaming reader does: the header of
// each share checked from its first bytes, then block by block, each body
// hashed as it goes.
func streamDecode(t *testing.T, c *Capability, shares map[int][]byte) []byte {
	t.Helper()
	d, err := NewDecoder(c)
	require.NoError(t, err)
	hashes := make(map[int][32]byte)
	hashers := make(map[int]interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
	})
	for j, s := range shares {
		h, err := c.CheckHeader(s[:c.HeaderSize()])
		require.NoError(t, err)
		require.Equal(t, j, h.Number)
		require.Nil(t, h.Body)
		hashes[j] = h.Hashes[j]
		hashers[j] = NewShareHash(j)
	}
	var out bytes.Buffer
	blocks := make([][]byte, c.N)
	for i := range c.Segments() {
		off, bl := c.BlockRange(i)
		for j, s := range shares {
			blocks[j] = s[off : off+int64(bl)]
			hashers[j].Write(blocks[j])
		}
		plain, err := d.Segment(i, blocks)
		require.NoError(t, err)
		out.Write(plain)
	}
	for j := range shares {
		require.Equal(t, hashes[j], [32]byte(hashers[j].Sum(nil)))
	}
	return out.Bytes()
}

func TestDecoderStreaming(t *testing.T) {
	data := testData(11, 5*SegmentSize+1234)
	c, shares := encodeT(t, data, 3, 10)
	require.EqualValues(t, 6, c.Segments())
	require.Equal(t, data, streamDecode(t, c, map[int][]byte{0: shares[0], 1: shares[1], 2: shares[2]}))
	require.Equal(t, data, streamDecode(t, c, map[int][]byte{9: shares[9], 4: shares[4], 1: shares[1]}))
	require.Equal(t, data, streamDecode(t, c, map[int][]byte{1: shares[1], 5: shares[5], 7: shares[7], 8: shares[8]}))

	d, err := NewDecoder(c)
	require.NoError(t, err)
	blocks := make([][]byte, 10)
	off, bl := c.BlockRange(0)
	blocks[3] = shares[3][off : off+int64(bl)]
	_, err = d.Segment(0, blocks)
	require.ErrorIs(t, err, ErrNotEnoughShares)
	blocks[4] = shares[4][off : off+int64(bl)-1]
	blocks[5] = shares[5][off : off+int64(bl)]
	_, err = d.Segment(0, blocks)
	require.ErrorIs(t, err, ErrShareMismatch, "a block of the wrong length")
	_, err = d.Segment(6, blocks)
	require.Error(t, err, "no such segment")
	_, err = NewDecoder(&Capability{K: 4, N: 3})
	require.ErrorIs(t, err, ErrCapability)
}

func TestCheckHeader(t *testing.T) {
	c, shares := encodeT(t, testData(12, 2*SegmentSize), 3, 10)
	hs := c.HeaderSize()
	s, err := c.CheckHeader(shares[4])
	require.NoError(t, err, "a whole share is fine too")
	require.Equal(t, 4, s.Number)
	_, err = c.CheckHeader(shares[4][:hs-1])
	require.ErrorIs(t, err, ErrMalformedShare)
	b := bytes.Clone(shares[4][:hs])
	b[hs-1] ^= 1 // the last hash of the list
	_, err = c.CheckHeader(b)
	require.ErrorIs(t, err, ErrShareMismatch)
	b = bytes.Clone(shares[4][:hs])
	b[0] = 'x'
	_, err = c.CheckHeader(b)
	require.ErrorIs(t, err, ErrMalformedShare)
	other, _ := encodeT(t, testData(12, 2*SegmentSize), 3, 10)
	_, err = other.CheckHeader(shares[4][:hs])
	require.ErrorIs(t, err, ErrShareMismatch)
}

// TestDecoderSearch finds the corrupt block of a segment that does not
// open, given one more share than needed per corrupt block.
func TestDecoderSearch(t *testing.T) {
	data := testData(13, 3*SegmentSize+6) // the last block has padding
	c, shares := encodeT(t, data, 3, 10)
	d, err := NewDecoder(c)
	require.NoError(t, err)
	last := c.Segments() - 1
	block := func(j int, i uint64) []byte {
		off, bl := c.BlockRange(i)
		return bytes.Clone(shares[j][off : off+int64(bl)])
	}
	for _, i := range []uint64{0, last} {
		off := i * SegmentSize
		want := data[off:min(off+SegmentSize, uint64(len(data)))]
		blocks := make([][]byte, 10)
		for _, j := range []int{0, 1, 2} {
			blocks[j] = block(j, i)
		}
		blocks[1][0] ^= 1
		_, err := d.Segment(i, blocks)
		require.ErrorIs(t, err, ErrDecrypt)
		_, _, err = d.Search(i, blocks)
		require.ErrorIs(t, err, ErrDecrypt, "three blocks, one corrupt: nothing opens")
		blocks[7] = block(7, i)
		plain, bad, err := d.Search(i, blocks)
		require.NoError(t, err)
		require.Equal(t, want, plain)
		require.Equal(t, []int{1}, bad)

		// Two corrupt (one a parity block) among five.
		blocks[7][3] ^= 0x80
		blocks[9] = block(9, i)
		plain, bad, err = d.Search(i, blocks)
		require.NoError(t, err)
		require.Equal(t, want, plain)
		require.Equal(t, []int{1, 7}, bad)
	}
	// Corrupt padding opens the segment but is still found.
	blocks := make([][]byte, 10)
	for _, j := range []int{0, 1, 2, 3} {
		blocks[j] = block(j, last)
	}
	pl := len(data) - int(last)*SegmentSize
	_, bl := c.BlockRange(last)
	require.Greater(t, 3*bl, pl+16)
	blocks[2][bl-1] ^= 1
	_, err = d.Segment(last, blocks)
	require.NoError(t, err, "padding is not authenticated by the segment")
	_, bad, err := d.Search(last, blocks)
	require.NoError(t, err)
	require.Equal(t, []int{2}, bad)
	_, _, err = d.Search(0, make([][]byte, 10))
	require.ErrorIs(t, err, ErrNotEnoughShares)
}

func TestNextCombination(t *testing.T) {
	idx := []int{0, 1}
	var all [][2]int
	for {
		all = append(all, [2]int{idx[0], idx[1]})
		if !nextCombination(idx, 4) {
			break
		}
	}
	require.Equal(t, [][2]int{{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}}, all)
}
