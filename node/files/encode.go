package files

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/reedsolomon"
	"golang.org/x/crypto/chacha20poly1305"
)

// Encode reads the plaintext from r to its end, encrypts it under a fresh
// random key and codes it into n shares of which any k recover it. It
// returns the file's capability (a secret) and the shares, share j at index
// j, each exactly [Capability.ShareSize] bytes.
//
// The parameters must satisfy 1 <= k <= n <= [MaxShares] (use [DefaultK]
// and [DefaultN] unless there is a reason not to), otherwise Encode returns
// an error wrapping [ErrParams]. A plaintext longer than [MaxFileSize]
// gives an error wrapping [ErrTooLarge]. Read errors are returned as they
// are. The shares are held in memory: about n/k times the plaintext size;
// [Encoder] makes the same shares a segment at a time.
func Encode(r io.Reader, k, n int) (*Capability, [][]byte, error) {
	var key [KeySize]byte
	if _, err := io.ReadFull(rand.Reader, key[:]); err != nil {
		return nil, nil, err
	}
	return encode(r, k, n, key)
}

// EncodeBytes is [Encode] for a plaintext held in memory.
func EncodeBytes(plaintext []byte, k, n int) (*Capability, [][]byte, error) {
	return Encode(&sizedReader{b: plaintext}, k, n)
}

// sizedReader is a reader that tells encode how much to allocate.
type sizedReader struct{ b []byte }

func (s *sizedReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

func (s *sizedReader) Len() int { return len(s.b) }

func checkParams(k, n int) error {
	if k < 1 || k > n || n > MaxShares {
		return fmt.Errorf("%w: want 1 <= k <= n <= %d, have k=%d n=%d", ErrParams, MaxShares, k, n)
	}
	return nil
}

// segmentNonce returns the XChaCha20-Poly1305 nonce of segment i: 15 zero
// bytes, u64(i), and 1 for the last segment or 0 for any other. The key is
// fresh for every file, so the nonces need only be distinct within it.
func segmentNonce(i uint64, last bool) []byte {
	var nonce [chacha20poly1305.NonceSizeX]byte
	binary.BigEndian.PutUint64(nonce[15:], i)
	if last {
		nonce[23] = 1
	}
	return nonce[:]
}

// coder holds the per-file state shared by encoding and decoding.
type coder struct {
	aead cipher.AEAD
	rs   reedsolomon.Encoder
}

func newCoder(key *[KeySize]byte, k, n int) (*coder, error) {
	rs, err := newRS(k, n)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return nil, err
	}
	return &coder{aead: aead, rs: rs}, nil
}

// newRS checks the parameters and returns the erasure code of k of n.
func newRS(k, n int) (reedsolomon.Encoder, error) {
	if err := checkParams(k, n); err != nil {
		return nil, err
	}
	rs, err := reedsolomon.New(k, n-k)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrParams, err)
	}
	return rs, nil
}

func encode(r io.Reader, k, n int, key [KeySize]byte) (*Capability, [][]byte, error) {
	e, err := newEncoder(key, k, n)
	if err != nil {
		return nil, nil, err
	}
	hs := headerSize(n)
	// Reserve room for the header at the front of every share; it is
	// filled in once the hashes are known.
	expect := int64(0)
	if l, ok := r.(interface{ Len() int }); ok && uint64(l.Len()) <= MaxFileSize {
		expect = bodySize(k, SegmentSize, uint64(l.Len()))
	}
	shares := make([][]byte, n)
	for j := range shares {
		shares[j] = make([]byte, hs, int64(hs)+expect)
	}
	c, err := e.SealFrom(r, func(_ uint64, _ []byte, blocks [][]byte) error {
		for j := range shares {
			shares[j] = append(shares[j], blocks[j]...)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for j := range shares {
		copy(shares[j], e.Header(j))
	}
	return c, shares, nil
}

// readSegment fills buf from r as far as r allows and returns how much it
// read; a short count means r is at its end.
func readSegment(r io.Reader, buf []byte) (int, error) {
	n, err := io.ReadFull(r, buf)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return n, nil
	}
	return n, err
}
