package files

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	mrand "math/rand/v2"
	"slices"

	"github.com/klauspost/reedsolomon"
)

// Streaming: encoding and decoding one segment at a time, in memory that
// does not depend on the file's size. [Encode] and [Decode] are built on
// the same pieces and make byte-for-byte the same shares.

// ShareSize returns the length of every share of a file of size bytes
// coded k of n: what [Capability.ShareSize] returns for its capability. An
// uploader that knows the size before it reads the file can allocate
// space with it before the capability exists.
func ShareSize(k, n int, size uint64) int64 {
	return int64(headerSize(n)) + bodySize(k, SegmentSize, size)
}

// HeaderSize returns the length of a share's header: [HeaderFixedSize] +
// 32·n. The body starts there.
func (c *Capability) HeaderSize() int { return headerSize(c.N) }

// Segments returns the number of segments of the file: ⌈size /
// [SegmentSize]⌉, and 1 for an empty file.
func (c *Capability) Segments() uint64 { return segments(SegmentSize, c.Size) }

// BlockRange returns where the blocks of segment i (0 <= i < Segments) lie
// in every share of the file: their offset from the start of the share,
// header included, and their length.
func (c *Capability) BlockRange(i uint64) (offset int64, length int) {
	full := int64(blockLen(c.K, SegmentSize))
	return int64(headerSize(c.N)) + int64(i)*full, blockLen(c.K, segmentLen(SegmentSize, c.Size, i))
}

// SegmentLen returns the plaintext length of segment i (0 <= i <
// Segments): [SegmentSize] for all but the last.
func (c *Capability) SegmentLen(i uint64) int { return segmentLen(SegmentSize, c.Size, i) }

// SealedLen returns the length of segment i sealed, as [Encoder.Seal]
// returns it: its plaintext and a 16-byte tag. Segment 0's is the
// longest.
func (c *Capability) SealedLen(i uint64) int { return c.SegmentLen(i) + tagSize }

// NewShareHash returns a hash that, written share number's body, sums to
// the share's hash_number (SPEC.md §10): a reader that streams a share
// checks its body with it against the hash list [Capability.CheckHeader]
// returned.
func NewShareHash(number int) hash.Hash {
	h := sha256.New()
	h.Write([]byte(tagShare))
	h.Write([]byte{byte(number)})
	return h
}

// Coder erasure-codes sealed segments into their n blocks, as [Encoder]
// does, without the key: an uploader that kept the sealed segments (the
// ciphertext, never the plaintext) codes them again to write shares a
// second time. A Coder is not safe for concurrent use.
type Coder struct {
	k, n   int
	rs     reedsolomon.Encoder
	data   []byte
	parity []byte
	blocks [][]byte
}

// NewCoder returns a Coder for k of n shares; see [Encode] for the limits.
func NewCoder(k, n int) (*Coder, error) {
	rs, err := newRS(k, n)
	if err != nil {
		return nil, err
	}
	return newBlockCoder(k, n, rs), nil
}

func newBlockCoder(k, n int, rs reedsolomon.Encoder) *Coder {
	full := blockLen(k, SegmentSize)
	return &Coder{k: k, n: n, rs: rs, data: make([]byte, k*full), parity: make([]byte, (n-k)*full), blocks: make([][]byte, n)}
}

// Blocks codes one sealed segment (16 to [SegmentSize] + 16 bytes, as
// [Encoder.Seal] returned it) into its n blocks, block j at index j, each
// ⌈len(sealed)/k⌉ bytes. The blocks stay valid until the next call.
func (c *Coder) Blocks(sealed []byte) ([][]byte, error) {
	if len(sealed) < tagSize || len(sealed) > SegmentSize+tagSize {
		return nil, fmt.Errorf("files: a sealed segment of %d bytes", len(sealed))
	}
	bl := (len(sealed) + c.k - 1) / c.k
	d := c.data[:c.k*bl]
	clear(d[copy(d, sealed):])
	for j := range c.k {
		c.blocks[j] = d[j*bl : (j+1)*bl]
	}
	for j := c.k; j < c.n; j++ {
		c.blocks[j] = c.parity[(j-c.k)*bl : (j-c.k+1)*bl]
	}
	if err := c.rs.Encode(c.blocks); err != nil {
		return nil, fmt.Errorf("files: erasure coding: %w", err)
	}
	return c.blocks, nil
}

// Encoder encrypts and codes one file a segment at a time, in memory of a
// few segments whatever the file's size, and hashes the shares' bodies as
// they are made. Share j's body is block j of every segment in order; its
// header ([Encoder.Header]) is known only once the last segment is sealed,
// so a writer puts the blocks at their offsets ([Capability.BlockRange])
// and the header at offset 0 at the end. An Encoder is not safe for
// concurrent use.
type Encoder struct {
	key     [KeySize]byte
	aead    cipher.AEAD
	coder   *Coder
	hashers []hash.Hash
	next    uint64
	size    uint64
	sealed  []byte
	capab   *Capability
	hashes  [][32]byte
}

// NewEncoder returns an Encoder of a new file under a fresh random key,
// coded k of n (see [Encode] for the limits).
func NewEncoder(k, n int) (*Encoder, error) {
	var key [KeySize]byte
	if _, err := io.ReadFull(rand.Reader, key[:]); err != nil {
		return nil, err
	}
	return newEncoder(key, k, n)
}

func newEncoder(key [KeySize]byte, k, n int) (*Encoder, error) {
	cd, err := newCoder(&key, k, n)
	if err != nil {
		return nil, err
	}
	e := &Encoder{key: key, aead: cd.aead, coder: newBlockCoder(k, n, cd.rs),
		hashers: make([]hash.Hash, n), sealed: make([]byte, 0, SegmentSize+tagSize)}
	for j := range e.hashers {
		e.hashers[j] = NewShareHash(j)
	}
	return e, nil
}

// StorageIndex returns the file's storage index, known from the start.
func (e *Encoder) StorageIndex() [StorageIndexSize]byte {
	return (&Capability{Key: e.key}).StorageIndex()
}

// Size returns the plaintext bytes sealed so far.
func (e *Encoder) Size() uint64 { return e.size }

// Seal encrypts the next segment, codes it and hashes its blocks. plain
// is [SegmentSize] bytes, except in the last segment (last true), which
// has 1 to SegmentSize bytes, or 0 if it is the only one (an empty file).
// Seal returns the sealed segment and its n blocks, valid until the next
// call. A file longer than [MaxFileSize] fails with [ErrTooLarge].
func (e *Encoder) Seal(plain []byte, last bool) (sealed []byte, blocks [][]byte, err error) {
	switch {
	case e.capab != nil:
		return nil, nil, errors.New("files: a segment after the last")
	case len(plain) > SegmentSize || (!last && len(plain) != SegmentSize):
		return nil, nil, fmt.Errorf("files: a segment of %d bytes", len(plain))
	case last && len(plain) == 0 && e.next > 0:
		return nil, nil, errors.New("files: an empty last segment after others")
	case e.size+uint64(len(plain)) > MaxFileSize:
		return nil, nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, uint64(MaxFileSize))
	}
	e.sealed = e.aead.Seal(e.sealed[:0], segmentNonce(e.next, last), plain, []byte(tagSegment))
	if blocks, err = e.coder.Blocks(e.sealed); err != nil {
		return nil, nil, err
	}
	for j, b := range blocks {
		e.hashers[j].Write(b)
	}
	e.next++
	e.size += uint64(len(plain))
	if last {
		e.hashes = make([][32]byte, len(e.hashers))
		for j := range e.hashes {
			e.hashes[j] = [32]byte(e.hashers[j].Sum(nil))
		}
		k, n := e.coder.k, e.coder.n
		e.capab = &Capability{Key: e.key, K: k, N: n, Size: e.size}
		e.capab.Root = rootHash(e.capab.StorageIndex(), k, n, SegmentSize, e.size, e.hashes)
	}
	return e.sealed, blocks, nil
}

// SealFrom reads the plaintext from r to its end, seals it segment by
// segment (reading one segment ahead to know which is the last) and calls
// fn with each segment's index, sealed bytes and blocks, valid only during
// the call. It returns the capability. Errors of r and fn are returned as
// they are.
func (e *Encoder) SealFrom(r io.Reader, fn func(i uint64, sealed []byte, blocks [][]byte) error) (*Capability, error) {
	cur := make([]byte, SegmentSize)
	next := make([]byte, SegmentSize)
	curLen, err := readSegment(r, cur)
	if err != nil {
		return nil, err
	}
	for {
		nextLen := 0
		if curLen == SegmentSize {
			if nextLen, err = readSegment(r, next); err != nil {
				return nil, err
			}
		}
		last := nextLen == 0
		i := e.next
		sealed, blocks, err := e.Seal(cur[:curLen], last)
		if err != nil {
			return nil, err
		}
		if err := fn(i, sealed, blocks); err != nil {
			return nil, err
		}
		if last {
			return e.capab, nil
		}
		cur, next = next, cur
		curLen = nextLen
	}
}

// Capability returns the file's capability once the last segment is
// sealed, and nil before.
func (e *Encoder) Capability() *Capability { return e.capab }

// Header returns the header of share j, [Capability.HeaderSize] bytes,
// once the last segment is sealed (nil before).
func (e *Encoder) Header(j int) []byte {
	if e.capab == nil {
		return nil
	}
	s := Share{Version: shareVersion, K: e.capab.K, N: e.capab.N, Number: j, SegmentSize: SegmentSize, Size: e.size, Hashes: e.hashes}
	return s.appendHeader(make([]byte, 0, headerSize(e.capab.N)))
}

// ShareHash returns hash_j, the hash of share j's body, once the last
// segment is sealed: an uploader that codes the segments again
// ([Coder]) checks what it wrote with it.
func (e *Encoder) ShareHash(j int) [32]byte {
	if e.capab == nil {
		return [32]byte{}
	}
	return e.hashes[j]
}

// maxSearch bounds the subsets of blocks [Decoder.Search] tries.
const maxSearch = 1 << 12

// Decoder decodes a file a segment at a time from blocks its caller
// fetched: block i of a share is at [Capability.BlockRange](i). Each
// segment is authenticated as it is opened, so every plaintext it returns
// is the file's, in place. A Decoder is not safe for concurrent use.
type Decoder struct {
	c      *Capability
	k, n   int
	m      uint64
	aead   cipher.AEAD
	rs     reedsolomon.Encoder
	coder  *Coder // for Search, made on first use
	spare  []byte
	sealed []byte
	plain  []byte
	blocks [][]byte
	use    []int
}

// NewDecoder returns a Decoder of the capability's file. A capability
// with parameters out of range fails with [ErrCapability].
func NewDecoder(c *Capability) (*Decoder, error) {
	if err := checkParams(c.K, c.N); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCapability, err)
	}
	if c.Size > MaxFileSize {
		return nil, fmt.Errorf("%w: size", ErrCapability)
	}
	cd, err := newCoder(&c.Key, c.K, c.N)
	if err != nil {
		return nil, err
	}
	full := blockLen(c.K, SegmentSize)
	return &Decoder{
		c: c, k: c.K, n: c.N, m: c.Segments(), aead: cd.aead, rs: cd.rs,
		spare:  make([]byte, c.K*full),
		sealed: make([]byte, 0, c.K*full),
		plain:  make([]byte, 0, SegmentSize),
		blocks: make([][]byte, c.N),
	}, nil
}

// check checks the index and the length of every block given.
func (d *Decoder) check(i uint64, blocks [][]byte) error {
	if i >= d.m {
		return fmt.Errorf("files: segment %d of %d", i, d.m)
	}
	if len(blocks) != d.n {
		return fmt.Errorf("files: %d blocks given for %d shares", len(blocks), d.n)
	}
	_, bl := d.c.BlockRange(i)
	for j, b := range blocks {
		if b != nil && len(b) != bl {
			return fmt.Errorf("%w: block %d of segment %d is %d bytes, want %d", ErrShareMismatch, j, i, len(b), bl)
		}
	}
	return nil
}

// Segment decodes and opens segment i (0 <= i < Segments) from blocks:
// blocks[j] is block i of share j, exactly BlockRange(i)'s length, or nil
// if share j is not at hand. With more than k blocks it uses the k
// lowest-numbered, so that data shares need no reconstruction. It returns
// the segment's plaintext, valid until the next call. It fails with
// [ErrNotEnoughShares] if fewer than k blocks are given, with
// [ErrShareMismatch] for a block of the wrong length, and with
// [ErrDecrypt] if the segment does not open: one of the blocks used is
// corrupt (see [Decoder.Search]).
func (d *Decoder) Segment(i uint64, blocks [][]byte) ([]byte, error) {
	if err := d.check(i, blocks); err != nil {
		return nil, err
	}
	d.use = d.use[:0]
	for j := 0; j < d.n && len(d.use) < d.k; j++ {
		if blocks[j] != nil {
			d.use = append(d.use, j)
		}
	}
	if len(d.use) < d.k {
		return nil, fmt.Errorf("%w: %d blocks of segment %d, %d needed", ErrNotEnoughShares, len(d.use), i, d.k)
	}
	return d.open(i, blocks, d.use)
}

// open decodes segment i from the blocks of the shares in use (k of them)
// into d.sealed and opens it.
func (d *Decoder) open(i uint64, blocks [][]byte, use []int) ([]byte, error) {
	k := d.k
	pl := segmentLen(SegmentSize, d.c.Size, i)
	bl := blockLen(k, pl)
	full := blockLen(k, SegmentSize)
	clear(d.blocks)
	reconstruct := false
	for _, j := range use {
		d.blocks[j] = blocks[j][:bl:bl]
		reconstruct = reconstruct || j >= k
	}
	if reconstruct {
		for j := range k {
			if d.blocks[j] == nil {
				d.blocks[j] = d.spare[j*full : j*full : j*full+bl]
			}
		}
		if err := d.rs.ReconstructData(d.blocks); err != nil {
			return nil, fmt.Errorf("files: erasure decoding: %w", err)
		}
	}
	d.sealed = d.sealed[:0]
	for j := range k {
		d.sealed = append(d.sealed, d.blocks[j]...)
	}
	d.sealed = d.sealed[:pl+tagSize]
	var err error
	d.plain, err = d.aead.Open(d.plain[:0], segmentNonce(i, i+1 == d.m), d.sealed, []byte(tagSegment))
	if err != nil {
		return nil, fmt.Errorf("%w: segment %d", ErrDecrypt, i)
	}
	return d.plain, nil
}

// Search decodes segment i when [Decoder.Segment] failed with ErrDecrypt,
// that is when a block used was corrupt: given the blocks of more shares
// (k+1 find one corrupt block), it tries k of them at a time until the
// segment opens, codes the segment again, and returns its plaintext (valid
// until the next call) and the numbers of the shares whose block given
// differs: those shares are corrupt. It fails as [Decoder.SearchAmong]
// does.
func (d *Decoder) Search(i uint64, blocks [][]byte) (plain []byte, bad []int, err error) {
	if err := d.check(i, blocks); err != nil {
		return nil, nil, err
	}
	var cands []Candidate
	for j, b := range blocks {
		if b != nil {
			cands = append(cands, Candidate{Num: j, Block: b})
		}
	}
	plain, badIdx, err := d.SearchAmong(i, cands)
	for _, x := range badIdx {
		bad = append(bad, cands[x].Num)
	}
	return plain, bad, err
}

// Candidate is a block given as block i of share Num.
type Candidate struct {
	Num   int
	Block []byte
}

// SearchAmong is [Decoder.Search] over candidates, several of which may
// be given as the same share's block (by several servers, all but one
// lying): it tries k candidates of distinct shares at a time until the
// segment opens, and returns its plaintext (valid until the next call)
// and the indices in cands of the candidates that differ from the
// segment coded again: those are corrupt. A server's word on which share
// it sends is not authenticated before the share's whole body is read
// (SPEC.md §10), so a reader that streams a share cannot tell which of
// two blocks given as one share's is genuine but by opening the segment.
//
// It tries every choice of k candidates if there are at most 4,096 ways
// to choose k of them, and otherwise 4,096 choices drawn at random:
// corrupt candidates cannot place themselves where an order of the
// choices would try them first (the lowest-numbered shares, which a
// reader uses first, say). It fails with [ErrDecrypt] if no choice tried
// opens the segment, with [ErrNotEnoughShares] if fewer than k shares
// have candidates, and with [ErrShareMismatch] for a candidate of the
// wrong length or share number.
func (d *Decoder) SearchAmong(i uint64, cands []Candidate) (plain []byte, bad []int, err error) {
	if i >= d.m {
		return nil, nil, fmt.Errorf("files: segment %d of %d", i, d.m)
	}
	_, bl := d.c.BlockRange(i)
	var nums []int
	for x, c := range cands {
		if c.Num < 0 || c.Num >= d.n || len(c.Block) != bl {
			return nil, nil, fmt.Errorf("%w: candidate %d of segment %d: share %d, %d bytes, want %d", ErrShareMismatch, x, i, c.Num, len(c.Block), bl)
		}
		if !slices.Contains(nums, c.Num) {
			nums = append(nums, c.Num)
		}
	}
	k := d.k
	if len(nums) < k {
		return nil, nil, fmt.Errorf("%w: blocks of %d shares of segment %d, %d needed", ErrNotEnoughShares, len(nums), i, k)
	}
	idx := make([]int, k)
	for x := range idx {
		idx[x] = x
	}
	all := choicesAtMost(len(cands), k, maxSearch)
	pick := make([]int, len(cands))
	for x := range pick {
		pick[x] = x
	}
	blocks := make([][]byte, d.n)
	use := make([]int, 0, k)
	for range maxSearch {
		clear(blocks)
		use = use[:0]
		if all {
			for _, x := range idx {
				if c := cands[x]; blocks[c.Num] == nil {
					blocks[c.Num] = c.Block
					use = append(use, c.Num)
				}
			}
		} else {
			// k candidates of distinct shares at random: a partial
			// Fisher–Yates shuffle, passing over shares taken.
			for x := 0; x < len(pick) && len(use) < k; x++ {
				y := x + mrand.IntN(len(pick)-x)
				pick[x], pick[y] = pick[y], pick[x]
				if c := cands[pick[x]]; blocks[c.Num] == nil {
					blocks[c.Num] = c.Block
					use = append(use, c.Num)
				}
			}
		}
		if len(use) == k { // else two candidates of one share: no choice
			plain, err := d.open(i, blocks, use)
			if err == nil {
				if d.coder == nil {
					d.coder = newBlockCoder(k, d.n, d.rs)
				}
				coded, err := d.coder.Blocks(d.sealed)
				if err != nil {
					return nil, nil, err
				}
				for x, c := range cands {
					if !bytes.Equal(c.Block, coded[c.Num]) {
						bad = append(bad, x)
					}
				}
				return plain, bad, nil
			}
			if !errors.Is(err, ErrDecrypt) {
				return nil, nil, err
			}
		}
		if all && !nextCombination(idx, len(cands)) {
			break
		}
	}
	return nil, nil, fmt.Errorf("%w: segment %d: no %d of the %d blocks given open it", ErrDecrypt, i, k, len(cands))
}

// choicesAtMost reports whether there are at most max ways to choose k
// of n.
func choicesAtMost(n, k, max int) bool {
	k = min(k, n-k)
	c := 1
	for x := 1; x <= k; x++ {
		c = c * (n - k + x) / x // exact: c is a binomial coefficient
		if c > max {
			return false
		}
	}
	return true
}

// nextCombination advances idx, a strictly increasing choice from 0..n-1,
// to the next in lexicographic order, and reports whether there is one.
func nextCombination(idx []int, n int) bool {
	k := len(idx)
	x := k - 1
	for x >= 0 && idx[x] == n-k+x {
		x--
	}
	if x < 0 {
		return false
	}
	idx[x]++
	for y := x + 1; y < k; y++ {
		idx[y] = idx[y-1] + 1
	}
	return true
}
