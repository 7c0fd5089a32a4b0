// Package files implements the client's file pipeline: it encrypts a file
// under a fresh key, erasure-codes the ciphertext into shares, and turns any
// k good shares back into the file. It does no networking and keeps no
// state; placing shares on servers is the caller's job.
//
// # Encoding
//
// [Encode] draws a random 32-byte key, splits the plaintext into segments of
// [SegmentSize] bytes, seals each segment with XChaCha20-Poly1305 under a
// nonce made of its index and a last-segment flag (so truncation, reordering
// and extension are all detected), and codes every sealed segment with
// Reed–Solomon into n blocks of which any k recover it. Share j is block j of
// every segment, behind a header that repeats the coding parameters and the
// SHA-256 hashes of all n shares. It returns the [Capability] and the n
// shares, all held in memory.
//
// [Encoder] does the same a segment at a time, in memory of a few
// segments whatever the file's size: [Encoder.Seal] (or
// [Encoder.SealFrom]) returns each sealed segment and its n blocks, which
// the caller writes at their offsets ([Capability.BlockRange]) while it
// hashes them; the headers ([Encoder.Header]) come once the last segment
// is sealed. [Coder] codes kept sealed segments into blocks again.
//
// # Capabilities
//
// A [Capability] is everything needed to read the file: the key, a root hash
// over the storage index, the parameters and all share hashes, k, n and the
// file size. Its text form (see [Capability.String] and [ParseCapability]) is
//
//	scrip:chk:<key, base32>:<root, hex>:<k>:<n>:<size>
//
// A capability is a secret: whoever holds it can read the file. It must
// never be logged; its fmt formatting is redacted, and only an explicit call
// to [Capability.String] gives its text. Servers see only the
// [Capability.StorageIndex], a one-way function of the key.
//
// # Decoding
//
// [Decode] checks every share against the capability before it uses it: the
// exact length ([Capability.ShareSize], so a reader can bound what a server
// sends), the header, the root over the share's hash list, and the hash of
// its body. Bad shares are skipped and reported, each as a [BadShare]; any k good
// shares decode. Each segment is authenticated again when it is opened.
//
// [Decoder] decodes a segment at a time from blocks its caller reads
// (ranged reads of [Capability.BlockRange]), after checking each share's
// header with [Capability.CheckHeader] and while hashing its body with
// [NewShareHash]. Every plaintext it returns is authentic, but a caller
// that writes it out as it comes has written the segments before one
// that fails; [Decoder.Search] finds which blocks of a segment that does
// not open are corrupt, given more shares' blocks. A header's share
// number is authenticated only with the share's whole body, so a server
// may pass one share, or garbage, off as any other:
// [Decoder.SearchAmong] takes several candidate blocks for one share and
// finds the genuine ones. Both try every choice of k blocks when there
// are few enough (4,096), and choices drawn at random otherwise, so that
// corrupt blocks cannot stand where a fixed order tries them first.
//
// The byte layout is in SPEC.md §10.
//
// # Errors
//
// Every failure wraps one of the sentinel errors below; test with
// [errors.Is]. Errors never contain the key or the capability.
package files

import "errors"

// Sentinel errors.
var (
	// ErrParams reports coding parameters out of range (see [Encode]).
	ErrParams = errors.New("files: invalid coding parameters")
	// ErrTooLarge reports a file larger than [MaxFileSize].
	ErrTooLarge = errors.New("files: file too large")
	// ErrCapability reports a capability string that does not parse.
	ErrCapability = errors.New("files: malformed capability")
	// ErrMalformedShare reports a share whose encoding does not parse: bad
	// magic or version, fields out of range, or the wrong length.
	ErrMalformedShare = errors.New("files: malformed share")
	// ErrShareMismatch reports a well-formed share that does not belong to
	// the capability, or whose body is corrupt.
	ErrShareMismatch = errors.New("files: share does not match capability")
	// ErrNotEnoughShares reports fewer than k good shares.
	ErrNotEnoughShares = errors.New("files: not enough good shares")
	// ErrDecrypt reports a segment that fails authentication after
	// decoding: the shares verified, but their content was not made with
	// the capability's key.
	ErrDecrypt = errors.New("files: segment authentication failed")
)
