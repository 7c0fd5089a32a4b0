package shares

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"

	"github.com/scripnet/scrip/protocol"
)

// plan is how an allocation sorts its shares.
type plan struct {
	held     []uint32 // closed and live: lease extended if at most the allocation's size
	reopened []uint32 // open, of this writer, same size: lease extended
	fresh    []uint32 // new
	need     uint64   // bytes the new shares take
}

// testHookPlan, if set, runs between reading the records an allocation is
// planned on and planning it.
var testHookPlan func()

// check validates an allocation's arguments.
func (s *Store) check(a *protocol.Allocation) error {
	switch {
	case a.Size > s.o.maxShareSize:
		return fmt.Errorf("%w: shares of at most %d bytes", ErrNoSpace, s.o.maxShareSize)
	case a.Size == 0:
		return fmt.Errorf("%w: zero share size", ErrInvalid)
	case len(a.Shares) == 0 || len(a.Shares) > int(s.o.maxShares):
		return fmt.Errorf("%w: %d share numbers, want 1 to %d", ErrInvalid, len(a.Shares), s.o.maxShares)
	case a.Lease <= 0 || a.Lease > s.o.maxLease:
		return fmt.Errorf("%w: lease %v out of range", ErrInvalid, a.Lease)
	}
	seen := make(map[uint32]bool, len(a.Shares))
	for _, n := range a.Shares {
		if n >= s.o.maxShares {
			return fmt.Errorf("%w: share number %d, at most %d", ErrInvalid, n, s.o.maxShares-1)
		}
		if seen[n] {
			return fmt.Errorf("%w: share number %d twice", ErrInvalid, n)
		}
		seen[n] = true
	}
	return nil
}

// planLocked sorts a's shares. A share being allocated or written by
// another writer, or by this one with another size, is in no list. s.mu
// must be held; recs are the shares' records.
func (s *Store) planLocked(a *protocol.Allocation, recs map[uint32]*record, now time.Time) (*plan, error) {
	p := &plan{}
	for _, n := range a.Shares {
		k := key{a.StorageIndex, n}
		if al := s.allocs[k]; al != nil {
			if al.state.Load() == allocOpen && al.writer == a.Writer && al.size == a.Size && now.UnixNano() < al.expires {
				p.reopened = append(p.reopened, n)
			}
			continue
		}
		if r := recs[n]; r != nil && r.state == stateClosed && r.live(now) {
			p.held = append(p.held, n)
			continue
		}
		p.fresh = append(p.fresh, n)
	}
	hi, need := bits.Mul64(a.Size, uint64(len(p.fresh)))
	if hi != 0 {
		return nil, fmt.Errorf("%w: allocation size overflows", ErrNoSpace)
	}
	p.need = need
	if len(s.allocs)+len(p.fresh) > s.o.maxOpen {
		return nil, fmt.Errorf("%w: %d shares open, at most %d", ErrNoSpace, len(s.allocs), s.o.maxOpen)
	}
	if avail := s.availableLocked(); need > avail {
		return nil, fmt.Errorf("%w: %d bytes wanted, %d free", ErrNoSpace, need, avail)
	}
	return p, nil
}

// records reads the records of a's shares.
func (s *Store) records(a *protocol.Allocation) (map[uint32]*record, error) {
	recs := make(map[uint32]*record, len(a.Shares))
	err := s.view(func(tx *bolt.Tx) error {
		for _, n := range a.Shares {
			r, err := getRecord(tx, key{a.StorageIndex, n})
			if err != nil {
				return err
			}
			recs[n] = r
		}
		return nil
	})
	return recs, err
}

// CheckAllocate reports whether Allocate(a) would succeed now, changing
// nothing a client can see: an error wrapping [ErrNoSpace] if the new
// shares do not fit (after collecting shares whose leases have ended),
// [ErrInvalid] for bad arguments. The storage server calls it before it
// records any coin for the allocation.
func (s *Store) CheckAllocate(ctx context.Context, a *protocol.Allocation) error {
	_, err := s.planWithCollect(ctx, a, false)
	return err
}

// planWithCollect plans a; if the new shares do not fit it collects
// expired shares and tries once more. With reserve, it also creates the
// new shares as pending allocations and counts their space, under the
// same lock as the plan.
func (s *Store) planWithCollect(ctx context.Context, a *protocol.Allocation, reserve bool) (*plan, error) {
	if err := s.live(ctx); err != nil {
		return nil, err
	}
	if err := s.check(a); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		recs, err := s.records(a)
		if err != nil {
			return nil, err
		}
		if testHookPlan != nil {
			testHookPlan()
		}
		now := s.now()
		s.mu.Lock()
		p, err := s.planLocked(a, recs, now)
		if err == nil && reserve {
			for _, n := range p.fresh {
				s.allocs[key{a.StorageIndex, n}] = &alloc{writer: a.Writer, size: a.Size}
			}
			s.allocated += p.need
		}
		s.mu.Unlock()
		if err == nil || !errors.Is(err, ErrNoSpace) || attempt > 0 {
			return p, err
		}
		if n, cerr := s.Collect(ctx); cerr != nil || n.Freed == 0 {
			return nil, err
		}
	}
}

// Allocate creates a's new shares, open for Write by a.Writer, and extends
// by a.Lease (from their current end, or from now if that is later) the
// leases of the shares it holds closed that are at most a.Size bytes
// (what the allocation pays for; a larger one is listed in AlreadyHave
// and left as it is) and of the shares a.Writer has open with the same
// size. A share another writer has open is in neither list. Everything is
// durable before Allocate returns, all or nothing. Errors: [ErrNoSpace],
// [ErrInvalid].
func (s *Store) Allocate(ctx context.Context, a *protocol.Allocation) (*protocol.Allocated, error) {
	p, err := s.planWithCollect(ctx, a, true)
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := &protocol.Allocated{}
	var latest int64
	var replaced uint64  // bytes of ended shares the new ones replace
	var nowHeld []uint32 // fresh in the plan, closed by the time of the write
	err = s.update(func(tx *bolt.Tx) error {
		out.AlreadyHave, out.Allocated, latest, replaced, nowHeld = nil, nil, 0, 0, nil
		// extend extends share n's lease and lists it by its state now.
		extend := func(n uint32) error {
			k := key{a.StorageIndex, n}
			old, err := getRecord(tx, k)
			if err != nil || old == nil || !old.live(now) {
				return err // collected meanwhile
			}
			if old.state == stateOpen && (old.writer != a.Writer || old.size != a.Size) {
				return nil // collected and allocated again meanwhile
			}
			if old.state == stateClosed && old.size > a.Size {
				// Paid for a.Size bytes: listed, not renewed.
				latest = max(latest, old.expires)
				out.AlreadyHave = append(out.AlreadyHave, n)
				return nil
			}
			r := *old
			r.expires = expiresAt(later(old.leaseEnd(), now), a.Lease)
			latest = max(latest, r.expires)
			if r.state == stateClosed {
				out.AlreadyHave = append(out.AlreadyHave, n)
			} else {
				out.Allocated = append(out.Allocated, n)
			}
			return putRecord(tx, k, &r, old)
		}
		for _, n := range slices.Concat(p.held, p.reopened) {
			if err := extend(n); err != nil {
				return err
			}
		}
		for _, n := range p.fresh {
			k := key{a.StorageIndex, n}
			old, err := getRecord(tx, k)
			if err != nil {
				return err
			}
			if old != nil && old.state == stateClosed && old.live(now) {
				// Closed since the plan was made: held after all.
				if err := extend(n); err != nil {
					return err
				}
				nowHeld = append(nowHeld, n)
				continue
			}
			if old != nil && old.state == stateClosed {
				// A share whose lease ended, not collected yet: it goes now.
				if err := os.Remove(s.finalPath(k)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
				replaced += old.size
			}
			r := &record{state: stateOpen, size: a.Size, expires: expiresAt(now, a.Lease), writer: a.Writer}
			latest = max(latest, r.expires)
			if err := putRecord(tx, k, r, old); err != nil {
				return err
			}
			out.Allocated = append(out.Allocated, n)
		}
		return nil
	})

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range p.fresh {
		k := key{a.StorageIndex, n}
		al := s.allocs[k]
		if err != nil || slices.Contains(nowHeld, n) {
			delete(s.allocs, k)
			al.state.Store(allocGone)
			continue
		}
		al.expires, al.active = expiresAt(now, a.Lease), now.UnixNano()
		al.state.Store(allocOpen)
	}
	if err != nil {
		s.allocated -= p.need
		return nil, err
	}
	s.allocated -= a.Size * uint64(len(nowHeld))
	s.stored -= replaced
	for _, n := range p.reopened {
		if al := s.allocs[key{a.StorageIndex, n}]; al != nil && al.state.Load() == allocOpen {
			al.expires = expiresAt(later(time.Unix(0, al.expires), now), a.Lease)
			al.active = now.UnixNano()
		}
	}
	slices.Sort(out.AlreadyHave)
	slices.Sort(out.Allocated)
	if latest != 0 {
		out.LeaseExpires = time.Unix(0, latest)
	}
	return out, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// openAlloc returns share k if it is open for writer and its lease has not
// ended.
func (s *Store) openAlloc(writer peer.ID, k key) (*alloc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	al := s.allocs[k]
	if al == nil || al.writer != writer || al.state.Load() != allocOpen || s.now().UnixNano() >= al.expires {
		return nil, fmt.Errorf("%w: share %v", ErrNotOpen, k)
	}
	return al, nil
}

// Write writes data at offset into share of si, which writer must have
// open. The write must lie inside the allocated size ([ErrOutOfBounds]),
// and within the share's write budget (protocol.WriteBudget of its size,
// each write counted as protocol.WriteCharge of its length:
// [ErrWriteBudget]); the count is kept in memory, from the allocation or
// from the last [Open].
// With [WithSyncWrites] on (the default) the data is on disk when Write
// returns. Writes to different shares run in parallel.
func (s *Store) Write(ctx context.Context, writer peer.ID, si [protocol.StorageIndexSize]byte, share uint32, offset uint64, data []byte) error {
	if err := s.live(ctx); err != nil {
		return err
	}
	if len(data) > s.o.maxWrite {
		return fmt.Errorf("%w: write of %d bytes, at most %d", ErrInvalid, len(data), s.o.maxWrite)
	}
	k := key{si, share}
	al, err := s.openAlloc(writer, k)
	if err != nil {
		return err
	}
	if offset > al.size || uint64(len(data)) > al.size-offset {
		return fmt.Errorf("%w: write of %d bytes at %d, share size %d", ErrOutOfBounds, len(data), offset, al.size)
	}
	al.mu.Lock()
	defer al.mu.Unlock()
	if al.state.Load() != allocOpen { // closed or abandoned meanwhile
		return fmt.Errorf("%w: share %v", ErrNotOpen, k)
	}
	charge := protocol.WriteCharge(len(data))
	if budget := protocol.WriteBudget(al.size); al.written > budget || charge > budget-al.written {
		return fmt.Errorf("%w: share %v, %d bytes", ErrWriteBudget, k, budget)
	}
	al.written += charge
	f, err := s.openIncoming(al, k)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(data, int64(offset))
	if err == nil && s.o.syncWrites {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("shares: writing %v: %w", k, err)
	}
	s.mu.Lock()
	al.active = s.now().UnixNano()
	s.mu.Unlock()
	return nil
}

// openIncoming opens the file of open share k for writing, creating it
// (durably) the first time. al.mu must be held.
func (s *Store) openIncoming(al *alloc, k key) (*os.File, error) {
	path := s.incomingPath(k)
	if al.created {
		return os.OpenFile(path, os.O_WRONLY, 0)
	}
	s.dirMu.Lock()
	defer s.dirMu.Unlock()
	dir := filepath.Dir(path)
	if err := mkdirAllSync(dir); err != nil {
		return nil, fmt.Errorf("shares: creating %s: %w", dir, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	al.created = true
	return f, nil
}

// CloseShare closes share of si, which writer must have open: the file
// gets its allocated size (bytes never written read as zeros), is synced,
// and is renamed into place atomically; from then on the share is
// readable and immutable. It is what protocol.StorageBackend calls Close.
func (s *Store) CloseShare(ctx context.Context, writer peer.ID, si [protocol.StorageIndexSize]byte, share uint32) error {
	if err := s.live(ctx); err != nil {
		return err
	}
	k := key{si, share}
	al, err := s.openAlloc(writer, k)
	if err != nil {
		return err
	}
	al.mu.Lock()
	defer al.mu.Unlock()
	if al.state.Load() != allocOpen {
		return fmt.Errorf("%w: share %v", ErrNotOpen, k)
	}
	if err := s.seal(al, k); err != nil {
		return fmt.Errorf("shares: closing %v: %w", k, err)
	}
	err = s.update(func(tx *bolt.Tx) error {
		old, err := getRecord(tx, k)
		if err != nil {
			return err
		}
		if old == nil || old.state != stateOpen {
			return fmt.Errorf("%w: open share %v has no record", ErrCorrupt, k)
		}
		r := *old
		r.state, r.writer = stateClosed, ""
		return putRecord(tx, k, &r, old)
	})
	if err != nil {
		// Put the file back so that the share stays open.
		s.dirMu.Lock()
		os.Rename(s.finalPath(k), s.incomingPath(k))
		s.dirMu.Unlock()
		return fmt.Errorf("shares: closing %v: %w", k, err)
	}
	al.state.Store(allocGone)
	s.mu.Lock()
	delete(s.allocs, k)
	s.allocated -= al.size
	s.stored += al.size
	s.mu.Unlock()
	s.dirMu.Lock()
	removeEmptyDirs(s.incoming, k)
	s.dirMu.Unlock()
	return nil
}

// seal sizes and syncs the file of open share k and renames it into
// place. al.mu must be held.
func (s *Store) seal(al *alloc, k key) error {
	f, err := s.openIncoming(al, k)
	if err != nil {
		return err
	}
	err = f.Truncate(int64(al.size))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	s.dirMu.Lock()
	defer s.dirMu.Unlock()
	final := s.finalPath(k)
	if err := mkdirAllSync(filepath.Dir(final)); err != nil {
		return err
	}
	if err := os.Rename(s.incomingPath(k), final); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		return err
	}
	return syncDir(filepath.Dir(s.incomingPath(k)))
}
