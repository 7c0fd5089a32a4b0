package files

import (
	"bytes"
	"fmt"
	"io"
)

// BadShare reports a share that [Decode] skipped.
type BadShare struct {
	// Index is the share's position in the slice given to Decode, so the
	// caller can tell which server sent it.
	Index int
	// Err wraps [ErrMalformedShare] or [ErrShareMismatch].
	Err error
}

// Decode checks the shares against the capability, skips bad ones, decodes
// the file from any k good shares and returns the plaintext. It also
// returns the shares it skipped, so that the caller can report the servers
// that sent them. Duplicates of a good share are ignored, not reported.
//
// Decode returns an error wrapping [ErrNotEnoughShares] if fewer than k
// shares are good, and one wrapping [ErrDecrypt] if a segment fails
// authentication.
func Decode(c *Capability, shares [][]byte) ([]byte, []BadShare, error) {
	var buf bytes.Buffer
	if c.Size <= MaxFileSize {
		buf.Grow(int(c.Size))
	}
	bad, err := DecodeTo(&buf, c, shares)
	if err != nil {
		return nil, bad, err
	}
	return buf.Bytes(), bad, nil
}

// DecodeTo is [Decode] that writes the plaintext to w, one authenticated
// segment at a time. Every byte written is authentic and in place, but if
// DecodeTo returns an error, what was written is incomplete and must be
// discarded. The shares are held in memory; [Decoder] decodes from
// blocks read as they are needed.
func DecodeTo(w io.Writer, c *Capability, shares [][]byte) ([]BadShare, error) {
	d, err := NewDecoder(c) // checks the capability's parameters and size
	if err != nil {
		return nil, err
	}
	var bad []BadShare
	good := make([]*Share, c.N)
	count := 0
	for i, b := range shares {
		s, err := c.checkShare(b)
		if err != nil {
			bad = append(bad, BadShare{Index: i, Err: err})
			continue
		}
		if good[s.Number] == nil {
			good[s.Number] = s
			count++
		}
	}
	if count < c.K {
		return bad, fmt.Errorf("%w: %d good of %d needed (%d bad)", ErrNotEnoughShares, count, c.K, len(bad))
	}
	// Use the k lowest-numbered good shares: data shares need no
	// reconstruction.
	use := make([]int, 0, c.K)
	for j := 0; j < c.N && len(use) < c.K; j++ {
		if good[j] != nil {
			use = append(use, j)
		}
	}
	blocks := make([][]byte, c.N)
	off := 0
	for i := range d.m {
		_, bl := c.BlockRange(i)
		for _, j := range use {
			blocks[j] = good[j].Body[off : off+bl : off+bl]
		}
		plain, err := d.Segment(i, blocks)
		if err != nil {
			return bad, err
		}
		if _, err := w.Write(plain); err != nil {
			return bad, err
		}
		off += bl
	}
	return bad, nil
}
