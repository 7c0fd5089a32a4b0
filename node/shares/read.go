package shares

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"github.com/scripnet/scrip/protocol"
)

// liveClosed returns the record of share k if it is closed and its lease
// has not ended, or ErrNotFound.
func liveClosed(tx *bolt.Tx, k key, now time.Time) (*record, error) {
	r, err := getRecord(tx, k)
	if err != nil {
		return nil, err
	}
	if r == nil || r.state != stateClosed || !r.live(now) {
		return nil, fmt.Errorf("%w: share %v", ErrNotFound, k)
	}
	return r, nil
}

func info(n uint32, r *record) protocol.ShareInfo {
	return protocol.ShareInfo{Number: n, Size: r.size, LeaseExpires: r.leaseEnd()}
}

// List returns the closed shares of si whose leases have not ended, by
// share number. Open shares are not listed.
func (s *Store) List(ctx context.Context, si [protocol.StorageIndexSize]byte) ([]protocol.ShareInfo, error) {
	if err := s.live(ctx); err != nil {
		return nil, err
	}
	now := s.now()
	var out []protocol.ShareInfo
	err := s.view(func(tx *bolt.Tx) error {
		out = out[:0]
		c := tx.Bucket(bucketShares).Cursor()
		for kb, v := c.Seek(si[:]); kb != nil && bytes.HasPrefix(kb, si[:]); kb, v = c.Next() {
			k, err := keyFrom(kb)
			if err != nil {
				return err
			}
			r, err := decodeRecord(v)
			if err != nil {
				return err
			}
			if r.state == stateClosed && r.live(now) {
				out = append(out, info(k.n, r))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Stat returns closed share of si, or [ErrNotFound].
func (s *Store) Stat(ctx context.Context, si [protocol.StorageIndexSize]byte, share uint32) (protocol.ShareInfo, error) {
	if err := s.live(ctx); err != nil {
		return protocol.ShareInfo{}, err
	}
	var out protocol.ShareInfo
	now := s.now()
	err := s.view(func(tx *bolt.Tx) error {
		r, err := liveClosed(tx, key{si, share}, now)
		if err == nil {
			out = info(share, r)
		}
		return err
	})
	return out, err
}

// Read returns up to length bytes of closed share of si from offset:
// fewer only at the end of the share. An open share is not readable
// ([ErrNotFound]); an offset past the end is [ErrOutOfBounds]; length is
// at most protocol.MaxReadSize ([ErrInvalid]). The store serves the bytes
// as they are on disk: clients verify shares.
func (s *Store) Read(ctx context.Context, si [protocol.StorageIndexSize]byte, share uint32, offset, length uint64) ([]byte, error) {
	if length > s.o.maxRead {
		return nil, fmt.Errorf("%w: read of %d bytes, at most %d", ErrInvalid, length, s.o.maxRead)
	}
	sh, err := s.Stat(ctx, si, share)
	if err != nil {
		return nil, err
	}
	if offset > sh.Size {
		return nil, fmt.Errorf("%w: offset %d past the end %d", ErrOutOfBounds, offset, sh.Size)
	}
	n := min(length, sh.Size-offset)
	k := key{si, share}
	f, err := os.Open(s.finalPath(k))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: share %v", ErrNotFound, k) // collected meanwhile
	}
	if err != nil {
		return nil, fmt.Errorf("shares: reading %v: %w", k, err)
	}
	defer f.Close()
	buf := make([]byte, n)
	got, err := f.ReadAt(buf, int64(offset))
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("shares: reading %v: %w", k, err)
	}
	return buf[:got], nil
}

// AddLease extends by lease the lease of each share of si listed in
// shares (as List returned them) that is still closed, live and of the
// size listed, from its current end or from now if that is later, and
// returns the latest lease end; [ErrNotFound] if none of them is held.
// Shares not listed, or changed since, are left as they are: the call
// was priced on the shares listed.
func (s *Store) AddLease(ctx context.Context, si [protocol.StorageIndexSize]byte, shares []protocol.ShareInfo, lease time.Duration) (time.Time, error) {
	if err := s.live(ctx); err != nil {
		return time.Time{}, err
	}
	if lease <= 0 || lease > s.o.maxLease {
		return time.Time{}, fmt.Errorf("%w: lease %v out of range", ErrInvalid, lease)
	}
	now := s.now()
	var latest int64
	err := s.update(func(tx *bolt.Tx) error {
		latest = 0
		type change struct {
			k      key
			r, old *record
		}
		var changes []change
		seen := make(map[uint32]bool, len(shares))
		for _, sh := range shares {
			if seen[sh.Number] {
				continue
			}
			seen[sh.Number] = true
			k := key{si, sh.Number}
			old, err := getRecord(tx, k)
			if err != nil {
				return err
			}
			if old == nil || old.state != stateClosed || !old.live(now) || old.size != sh.Size {
				continue
			}
			r := *old
			r.expires = expiresAt(later(old.leaseEnd(), now), lease)
			latest = max(latest, r.expires)
			changes = append(changes, change{k, &r, old})
		}
		if len(changes) == 0 {
			return fmt.Errorf("%w: no shares of %x", ErrNotFound, si)
		}
		for _, ch := range changes {
			if err := putRecord(tx, ch.k, ch.r, ch.old); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, latest), nil
}

// Advice is one corruption report.
type Advice struct {
	Share  uint32
	At     time.Time
	Reason string
}

// AdviseCorrupt records a client's report that share of si looks corrupt,
// for the operator ([Store.Advice]). Reports on shares the store does not
// hold, and beyond [MaxAdvicePerShare] per share, are dropped; reason is
// at most protocol.MaxAdviceSize bytes of UTF-8 ([ErrInvalid]).
func (s *Store) AdviseCorrupt(ctx context.Context, si [protocol.StorageIndexSize]byte, share uint32, reason string) error {
	if err := s.live(ctx); err != nil {
		return err
	}
	if len(reason) > protocol.MaxAdviceSize || !utf8.ValidString(reason) {
		return fmt.Errorf("%w: reason of %d bytes", ErrInvalid, len(reason))
	}
	now := s.now()
	k := key{si, share}
	err := s.update(func(tx *bolt.Tx) error {
		if _, err := liveClosed(tx, k, now); err != nil {
			return err
		}
		b := tx.Bucket(bucketAdvice)
		prefix := k.bytes()
		count := 0
		c := b.Cursor()
		for kb, _ := c.Seek(prefix); kb != nil && bytes.HasPrefix(kb, prefix); kb, _ = c.Next() {
			count++
		}
		if count >= MaxAdvicePerShare {
			return nil
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		v := binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano()))
		return b.Put(binary.BigEndian.AppendUint64(prefix, seq), append(v, reason...))
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// Advice returns the corruption reports on shares of si, by share and
// then in the order received.
func (s *Store) Advice(ctx context.Context, si [protocol.StorageIndexSize]byte) ([]Advice, error) {
	if err := s.live(ctx); err != nil {
		return nil, err
	}
	var out []Advice
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAdvice).Cursor()
		for kb, v := c.Seek(si[:]); kb != nil && bytes.HasPrefix(kb, si[:]); kb, v = c.Next() {
			if len(kb) != 28 || len(v) < 8 {
				return fmt.Errorf("%w: advice record", ErrCorrupt)
			}
			out = append(out, Advice{
				Share:  binary.BigEndian.Uint32(kb[16:20]),
				At:     time.Unix(0, int64(binary.BigEndian.Uint64(v))),
				Reason: string(v[8:]),
			})
		}
		return nil
	})
	return out, err
}

// deleteAdvice removes the reports on share k.
func deleteAdvice(tx *bolt.Tx, k key) error {
	b := tx.Bucket(bucketAdvice)
	prefix := k.bytes()
	var keys [][]byte
	c := b.Cursor()
	for kb, _ := c.Seek(prefix); kb != nil && bytes.HasPrefix(kb, prefix); kb, _ = c.Next() {
		keys = append(keys, bytes.Clone(kb))
	}
	for _, kb := range keys {
		if err := b.Delete(kb); err != nil {
			return err
		}
	}
	return nil
}
