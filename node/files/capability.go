package files

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Sizes and limits of format version 1.
const (
	// KeySize is the length of a file key.
	KeySize = 32
	// RootSize is the length of a capability's root hash.
	RootSize = sha256.Size
	// StorageIndexSize is the length of a storage index.
	StorageIndexSize = 16
	// SegmentSize is the plaintext length of every segment but the last.
	SegmentSize = 64 << 10
	// MaxShares bounds n.
	MaxShares = 255
	// MaxFileSize bounds the plaintext length (1 TiB).
	MaxFileSize = 1 << 40
	// MaxCapabilityLen bounds the text of a capability.
	MaxCapabilityLen = 256
	// DefaultK and DefaultN are the default coding parameters: any 3 of 10
	// shares recover the file. (Placing them on at least 7 distinct
	// servers is the placement rule, not part of the coding.)
	DefaultK = 3
	DefaultN = 10
)

const capPrefix = "scrip:chk:"

// Domain tags: ASCII followed by one zero byte, as in SPEC.md §1.
const (
	tagStorageIndex = "scrip/v1/storage-index\x00"
	tagShare        = "scrip/v1/share\x00"
	tagShareRoot    = "scrip/v1/share-root\x00"
	tagSegment      = "scrip/v1/segment\x00"
)

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Capability is the secret that reads one file: its key, the root hash that
// authenticates every share, the coding parameters and the plaintext size.
// The zero Capability is not valid. A Capability is a secret: see the
// package documentation.
type Capability struct {
	Key  [KeySize]byte
	Root [RootSize]byte
	K, N int
	Size uint64
}

// StorageIndex returns H256(tag(storage-index) || key)[:16], the name under
// which servers store the file's shares. It reveals nothing about the key.
func (c *Capability) StorageIndex() [StorageIndexSize]byte {
	h := sha256.New()
	h.Write([]byte(tagStorageIndex))
	h.Write(c.Key[:])
	return [StorageIndexSize]byte(h.Sum(nil))
}

// ShareSize returns the exact length of every share of the file, header
// included. A reader should read no more than this from a server.
func (c *Capability) ShareSize() int64 {
	return int64(headerSize(c.N)) + bodySize(c.K, SegmentSize, c.Size)
}

// String returns the capability's text form,
// scrip:chk:<key>:<root>:<k>:<n>:<size>. The text is a secret.
func (c *Capability) String() string {
	var b strings.Builder
	b.WriteString(capPrefix)
	b.WriteString(b32.EncodeToString(c.Key[:]))
	b.WriteByte(':')
	b.WriteString(hex.EncodeToString(c.Root[:]))
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(c.K))
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(c.N))
	b.WriteByte(':')
	b.WriteString(strconv.FormatUint(c.Size, 10))
	return b.String()
}

// Format redacts the key and root, so that a capability printed by mistake
// with fmt or a logger leaks nothing but its parameters.
func (c Capability) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "files.Capability{k: %d, n: %d, size: %d}", c.K, c.N, c.Size)
}

// ParseCapability parses the text form of a capability. It accepts exactly
// the canonical form that [Capability.String] produces: lowercase base32
// without padding for the key, lowercase hex for the root, decimal numbers
// without leading zeros, 1 <= k <= n <= [MaxShares] and size at most
// [MaxFileSize]. Errors wrap [ErrCapability] and never echo the input.
func ParseCapability(s string) (*Capability, error) {
	if len(s) > MaxCapabilityLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrCapability, MaxCapabilityLen)
	}
	rest, ok := strings.CutPrefix(s, capPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: does not start with %q", ErrCapability, capPrefix)
	}
	f := strings.Split(rest, ":")
	if len(f) != 5 {
		return nil, fmt.Errorf("%w: want 5 fields after the prefix, have %d", ErrCapability, len(f))
	}
	c := new(Capability)
	key, err := b32.DecodeString(f[0])
	if err != nil || len(key) != KeySize || b32.EncodeToString(key) != f[0] {
		return nil, fmt.Errorf("%w: key is not %d bytes of lowercase base32", ErrCapability, KeySize)
	}
	copy(c.Key[:], key)
	root, err := hex.DecodeString(f[1])
	if err != nil || len(root) != RootSize || hex.EncodeToString(root) != f[1] {
		return nil, fmt.Errorf("%w: root is not %d bytes of lowercase hex", ErrCapability, RootSize)
	}
	copy(c.Root[:], root)
	k, okK := parseDecimal(f[2], MaxShares)
	n, okN := parseDecimal(f[3], MaxShares)
	if !okK || !okN || k < 1 || k > n {
		return nil, fmt.Errorf("%w: want 1 <= k <= n <= %d", ErrCapability, MaxShares)
	}
	c.K, c.N = int(k), int(n)
	size, ok := parseDecimal(f[4], MaxFileSize)
	if !ok {
		return nil, fmt.Errorf("%w: size is not a decimal number up to %d", ErrCapability, uint64(MaxFileSize))
	}
	c.Size = size
	return c, nil
}

// parseDecimal parses a canonical decimal number no greater than max.
func parseDecimal(s string, max uint64) (uint64, bool) {
	if s == "" || len(s) > 20 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v > max {
		return 0, false
	}
	return v, true
}

// shareHash returns H256(tag(share) || u8(number) || body).
func shareHash(number int, body []byte) [32]byte {
	h := NewShareHash(number)
	h.Write(body)
	return [32]byte(h.Sum(nil))
}

// rootHash returns the root over the storage index, the parameters and the
// share hashes:
// H256(tag(share-root) || SI || u8 version || u8 k || u8 n || u32 segment
// size || u64 size || hash_0 || ... || hash_{n-1}).
func rootHash(si [StorageIndexSize]byte, k, n int, segSize uint32, size uint64, hashes [][32]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(tagShareRoot))
	h.Write(si[:])
	var p [1 + 1 + 1 + 4 + 8]byte
	p[0] = shareVersion
	p[1] = byte(k)
	p[2] = byte(n)
	binary.BigEndian.PutUint32(p[3:], segSize)
	binary.BigEndian.PutUint64(p[7:], size)
	h.Write(p[:])
	for i := range hashes {
		h.Write(hashes[i][:])
	}
	return [32]byte(h.Sum(nil))
}

// CheckShare checks one share against the capability: its exact length,
// its header, the root over its hash list and the hash of its body. It
// returns the share's number, or an error wrapping [ErrMalformedShare] or
// [ErrShareMismatch].
func (c *Capability) CheckShare(b []byte) (int, error) {
	s, err := c.checkShare(b)
	if err != nil {
		return 0, err
	}
	return s.Number, nil
}

// CheckHeader checks the header of a share against the capability, as a
// reader that streams a share checks it before it uses the body: b holds
// the share's first [Capability.HeaderSize] bytes or more (the rest is
// ignored). The header must parse, carry the capability's k, n and size,
// and its hash list must match the root (SPEC.md §10, steps 2 to 4 of
// checking a share). It returns the share's fields and hash list, with no
// Body, or an error wrapping [ErrMalformedShare] or [ErrShareMismatch].
// The body is the caller's to check as it arrives: hash it with
// [NewShareHash] and compare the sum with Hashes[Number].
func (c *Capability) CheckHeader(b []byte) (*Share, error) {
	s, err := parseHeader(b)
	if err != nil {
		return nil, err
	}
	if err := c.checkFields(s); err != nil {
		return nil, err
	}
	return s, nil
}

// checkFields checks a parsed header's parameters and hash list against
// the capability.
func (c *Capability) checkFields(s *Share) error {
	if s.K != c.K || s.N != c.N || s.Size != c.Size {
		return fmt.Errorf("%w: share parameters differ", ErrShareMismatch)
	}
	root := rootHash(c.StorageIndex(), s.K, s.N, s.SegmentSize, s.Size, s.Hashes)
	if subtle.ConstantTimeCompare(root[:], c.Root[:]) != 1 {
		return fmt.Errorf("%w: share hash list does not match the root", ErrShareMismatch)
	}
	return nil
}

func (c *Capability) checkShare(b []byte) (*Share, error) {
	if int64(len(b)) != c.ShareSize() {
		return nil, fmt.Errorf("%w: share is %d bytes, want %d", ErrShareMismatch, len(b), c.ShareSize())
	}
	s, err := ParseShare(b)
	if err != nil {
		return nil, err
	}
	if err := c.checkFields(s); err != nil {
		return nil, err
	}
	if h := shareHash(s.Number, s.Body); h != s.Hashes[s.Number] {
		return nil, fmt.Errorf("%w: share %d body is corrupt", ErrShareMismatch, s.Number)
	}
	return s, nil
}
