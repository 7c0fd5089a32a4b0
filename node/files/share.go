package files

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// Share layout, format version 1.
const (
	// ShareMagic opens every share.
	ShareMagic = "scsh"
	// HeaderFixedSize is the length of a share header without its hash
	// list; the full header is HeaderFixedSize + 32·n bytes.
	HeaderFixedSize = 4 + 1 + 1 + 1 + 1 + 4 + 8

	shareVersion = 1
	tagSize      = chacha20poly1305.Overhead
)

// Share is one decoded share: the header fields and the body. Hashes holds
// the hashes of all N shares of the file, in share-number order; Body is
// block Number of every segment, in segment order. ParseShare's Body aliases
// its input.
type Share struct {
	Version     uint8
	K, N        int
	Number      int
	SegmentSize uint32
	Size        uint64
	Hashes      [][32]byte
	Body        []byte
}

func headerSize(n int) int { return HeaderFixedSize + 32*n }

// segments returns the number of segments of a file of size bytes: at
// least one, so that even an empty file has an authenticated segment.
func segments(segSize uint32, size uint64) uint64 {
	if size == 0 {
		return 1
	}
	return (size + uint64(segSize) - 1) / uint64(segSize)
}

// segmentLen returns the plaintext length of segment i.
func segmentLen(segSize uint32, size uint64, i uint64) int {
	m := segments(segSize, size)
	if i+1 < m {
		return int(segSize)
	}
	return int(size - (m-1)*uint64(segSize))
}

// blockLen returns the length of each of the n blocks of a sealed segment
// of plain plaintext bytes.
func blockLen(k int, plain int) int {
	return (plain + tagSize + k - 1) / k
}

// bodySize returns the body length of every share of the file.
func bodySize(k int, segSize uint32, size uint64) int64 {
	m := segments(segSize, size)
	full := int64(blockLen(k, int(segSize)))
	last := int64(blockLen(k, segmentLen(segSize, size, m-1)))
	return int64(m-1)*full + last
}

// appendHeader appends the share header.
func (s *Share) appendHeader(b []byte) []byte {
	b = append(b, ShareMagic...)
	b = append(b, s.Version, byte(s.K), byte(s.N), byte(s.Number))
	b = binary.BigEndian.AppendUint32(b, s.SegmentSize)
	b = binary.BigEndian.AppendUint64(b, s.Size)
	for i := range s.Hashes {
		b = append(b, s.Hashes[i][:]...)
	}
	return b
}

// Bytes returns the share's encoding: the header followed by the body.
func (s *Share) Bytes() []byte {
	b := make([]byte, 0, headerSize(len(s.Hashes))+len(s.Body))
	return append(s.appendHeader(b), s.Body...)
}

// ParseShare decodes a share and checks its structure: magic, version, 1 <=
// k <= n <= [MaxShares], number < n, segment size [SegmentSize], size at
// most [MaxFileSize], and a body of exactly the length those fields imply.
// It does not check any hash; use [Capability.CheckShare] for that. Errors
// wrap [ErrMalformedShare].
func ParseShare(b []byte) (*Share, error) {
	s, err := parseHeader(b)
	if err != nil {
		return nil, err
	}
	hs := headerSize(s.N)
	want := int64(hs) + bodySize(s.K, s.SegmentSize, s.Size)
	if int64(len(b)) != want {
		return nil, fmt.Errorf("%w: share is %d bytes, its header implies %d", ErrMalformedShare, len(b), want)
	}
	s.Body = b[hs:]
	return s, nil
}

// parseHeader decodes and checks the header at the start of b (which may
// hold more than the header): the fields and the hash list, not the body.
func parseHeader(b []byte) (*Share, error) {
	if len(b) < HeaderFixedSize {
		return nil, fmt.Errorf("%w: %d bytes is shorter than a header", ErrMalformedShare, len(b))
	}
	if string(b[:4]) != ShareMagic {
		return nil, fmt.Errorf("%w: bad magic", ErrMalformedShare)
	}
	s := &Share{
		Version:     b[4],
		K:           int(b[5]),
		N:           int(b[6]),
		Number:      int(b[7]),
		SegmentSize: binary.BigEndian.Uint32(b[8:]),
		Size:        binary.BigEndian.Uint64(b[12:]),
	}
	switch {
	case s.Version != shareVersion:
		return nil, fmt.Errorf("%w: version %d", ErrMalformedShare, s.Version)
	case s.K < 1 || s.K > s.N:
		return nil, fmt.Errorf("%w: k=%d n=%d", ErrMalformedShare, s.K, s.N)
	case s.Number >= s.N:
		return nil, fmt.Errorf("%w: share number %d of %d", ErrMalformedShare, s.Number, s.N)
	case s.SegmentSize != SegmentSize:
		return nil, fmt.Errorf("%w: segment size %d", ErrMalformedShare, s.SegmentSize)
	case s.Size > MaxFileSize:
		return nil, fmt.Errorf("%w: file size %d", ErrMalformedShare, s.Size)
	}
	if len(b) < headerSize(s.N) {
		return nil, fmt.Errorf("%w: %d bytes is shorter than a header of %d shares", ErrMalformedShare, len(b), s.N)
	}
	s.Hashes = make([][32]byte, s.N)
	for i := range s.Hashes {
		copy(s.Hashes[i][:], b[HeaderFixedSize+32*i:])
	}
	return s, nil
}
