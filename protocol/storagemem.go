package protocol

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// MemBackend is a [StorageBackend] that keeps shares in memory, for tests,
// benchmarks and examples; package node has the one that stores shares on
// disk. It is safe for concurrent use; the zero value is not usable (see
// [NewMemBackend]).
type MemBackend struct {
	now      func() time.Time
	capacity uint64
	maxShare uint64

	mu      sync.Mutex
	used    uint64
	shares  map[memShareKey]*memShare
	corrupt []CorruptAdvice
}

type memShareKey struct {
	si [StorageIndexSize]byte
	n  uint32
}

type memShare struct {
	writer  peer.ID
	size    uint64
	data    []byte // allocated on first write
	written uint64 // charged against the write budget
	closed  bool
	expires time.Time
}

// CorruptAdvice is one AdviseCorrupt report a [MemBackend] received.
type CorruptAdvice struct {
	StorageIndex [StorageIndexSize]byte // the share's storage index
	Share        uint32                 // its share number
	Reason       string                 // the client's words
}

var _ StorageBackend = (*MemBackend)(nil)

// NewMemBackend returns an empty backend offering capacity bytes in shares
// of at most maxShare bytes, whose leases run on the clock now (time.Now
// if nil).
func NewMemBackend(capacity, maxShare uint64, now func() time.Time) *MemBackend {
	if now == nil {
		now = time.Now
	}
	return &MemBackend{now: now, capacity: capacity, maxShare: maxShare, shares: make(map[memShareKey]*memShare)}
}

// live returns share k if its lease has not ended, forgetting it if it
// has. m.mu must be held.
func (m *MemBackend) live(k memShareKey, now time.Time) *memShare {
	sh, ok := m.shares[k]
	if !ok {
		return nil
	}
	if !now.Before(sh.expires) {
		delete(m.shares, k)
		m.used -= sh.size
		return nil
	}
	return sh
}

// expire forgets every share whose lease has ended. m.mu must be held.
func (m *MemBackend) expire(now time.Time) {
	for k := range m.shares {
		m.live(k, now)
	}
}

func extend(expires, now time.Time, lease time.Duration) time.Time {
	return later(expires, now).Add(lease)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Space implements [StorageBackend].
func (m *MemBackend) Space(ctx context.Context) (StorageSpace, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(m.now())
	return StorageSpace{Available: m.capacity - m.used, MaxShareSize: m.maxShare}, nil
}

// plan sorts a's shares into held (closed), reopened (open, a's writer's,
// of a's size) and new ones, and returns the space the new ones need.
// m.mu must be held.
func (m *MemBackend) plan(a *Allocation, now time.Time) (held, reopened, fresh []uint32, need uint64, err error) {
	if a.Size > m.maxShare {
		return nil, nil, nil, 0, fmt.Errorf("%w: shares of at most %d bytes", ErrNoSpace, m.maxShare)
	}
	for _, n := range a.Shares {
		sh := m.live(memShareKey{a.StorageIndex, n}, now)
		switch {
		case sh == nil:
			fresh = append(fresh, n)
			need += a.Size
		case sh.closed:
			held = append(held, n)
		case sh.writer == a.Writer && sh.size == a.Size:
			reopened = append(reopened, n)
		}
	}
	if need > m.capacity-m.used {
		return nil, nil, nil, 0, fmt.Errorf("%w: %d bytes wanted, %d free", ErrNoSpace, need, m.capacity-m.used)
	}
	return held, reopened, fresh, need, nil
}

// CheckAllocate implements [StorageBackend].
func (m *MemBackend) CheckAllocate(ctx context.Context, a *Allocation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, _, _, _, err := m.plan(a, m.now())
	return err
}

// Allocate implements [StorageBackend].
func (m *MemBackend) Allocate(ctx context.Context, a *Allocation) (*Allocated, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	held, reopened, fresh, need, err := m.plan(a, now)
	if err != nil {
		return nil, err
	}
	out := &Allocated{AlreadyHave: held, Allocated: slices.Concat(reopened, fresh)}
	for _, n := range slices.Concat(held, reopened) {
		sh := m.shares[memShareKey{a.StorageIndex, n}]
		// The call paid for a.Size bytes per share: a larger share
		// held is listed, not renewed.
		if sh.size <= a.Size {
			sh.expires = extend(sh.expires, now, a.Lease)
		}
		out.LeaseExpires = later(out.LeaseExpires, sh.expires)
	}
	for _, n := range fresh {
		sh := &memShare{writer: a.Writer, size: a.Size, expires: now.Add(a.Lease)}
		m.shares[memShareKey{a.StorageIndex, n}] = sh
		out.LeaseExpires = later(out.LeaseExpires, sh.expires)
	}
	m.used += need
	slices.Sort(out.AlreadyHave)
	slices.Sort(out.Allocated)
	return out, nil
}

// open returns an open share of writer's. m.mu must be held.
func (m *MemBackend) open(writer peer.ID, si [StorageIndexSize]byte, n uint32) (*memShare, error) {
	sh := m.live(memShareKey{si, n}, m.now())
	if sh == nil || sh.closed || sh.writer != writer {
		return nil, fmt.Errorf("%w: no open share %d of yours", ErrNotFound, n)
	}
	return sh, nil
}

// Write implements [StorageBackend].
func (m *MemBackend) Write(ctx context.Context, writer peer.ID, si [StorageIndexSize]byte, share uint32, offset uint64, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	sh, err := m.open(writer, si, share)
	if err != nil {
		return err
	}
	if offset > sh.size || uint64(len(data)) > sh.size-offset {
		return fmt.Errorf("%w: write past the share's size %d", ErrBadRequest, sh.size)
	}
	charge := WriteCharge(len(data))
	if budget := WriteBudget(sh.size); sh.written > budget || charge > budget-sh.written {
		return fmt.Errorf("%w: writes past the share's write budget of %d bytes", ErrBadRequest, budget)
	}
	sh.written += charge
	if sh.data == nil {
		sh.data = make([]byte, sh.size)
	}
	copy(sh.data[offset:], data)
	return nil
}

// Close implements [StorageBackend].
func (m *MemBackend) Close(ctx context.Context, writer peer.ID, si [StorageIndexSize]byte, share uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	sh, err := m.open(writer, si, share)
	if err != nil {
		return err
	}
	if sh.data == nil {
		sh.data = make([]byte, sh.size)
	}
	sh.closed = true
	return nil
}

// closed returns a closed share. m.mu must be held.
func (m *MemBackend) closed(si [StorageIndexSize]byte, n uint32) (*memShare, error) {
	sh := m.live(memShareKey{si, n}, m.now())
	if sh == nil || !sh.closed {
		return nil, fmt.Errorf("%w: no share %d", ErrNotFound, n)
	}
	return sh, nil
}

// List implements [StorageBackend].
func (m *MemBackend) List(ctx context.Context, si [StorageIndexSize]byte) ([]ShareInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var out []ShareInfo
	for k := range m.shares {
		if k.si != si {
			continue
		}
		if sh := m.live(k, now); sh != nil && sh.closed {
			out = append(out, ShareInfo{Number: k.n, Size: sh.size, LeaseExpires: sh.expires})
		}
	}
	slices.SortFunc(out, func(a, b ShareInfo) int { return int(int64(a.Number) - int64(b.Number)) })
	return out, nil
}

// Stat implements [StorageBackend].
func (m *MemBackend) Stat(ctx context.Context, si [StorageIndexSize]byte, share uint32) (ShareInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sh, err := m.closed(si, share)
	if err != nil {
		return ShareInfo{}, err
	}
	return ShareInfo{Number: share, Size: sh.size, LeaseExpires: sh.expires}, nil
}

// Read implements [StorageBackend].
func (m *MemBackend) Read(ctx context.Context, si [StorageIndexSize]byte, share uint32, offset, length uint64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sh, err := m.closed(si, share)
	if err != nil {
		return nil, err
	}
	if offset > sh.size {
		return nil, fmt.Errorf("%w: offset past the end", ErrBadRequest)
	}
	end := offset + min(length, sh.size-offset)
	return append([]byte(nil), sh.data[offset:end]...), nil
}

// AddLease implements [StorageBackend].
func (m *MemBackend) AddLease(ctx context.Context, si [StorageIndexSize]byte, shares []ShareInfo, lease time.Duration) (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var until time.Time
	seen := make(map[uint32]bool, len(shares))
	for _, priced := range shares {
		if seen[priced.Number] {
			continue
		}
		seen[priced.Number] = true
		if sh := m.live(memShareKey{si, priced.Number}, now); sh != nil && sh.closed && sh.size == priced.Size {
			sh.expires = extend(sh.expires, now, lease)
			until = later(until, sh.expires)
		}
	}
	if until.IsZero() {
		return time.Time{}, fmt.Errorf("%w: no shares", ErrNotFound)
	}
	return until, nil
}

// AdviseCorrupt implements [StorageBackend]; [MemBackend.Advice] returns
// the reports.
func (m *MemBackend) AdviseCorrupt(ctx context.Context, si [StorageIndexSize]byte, share uint32, reason string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.corrupt = append(m.corrupt, CorruptAdvice{StorageIndex: si, Share: share, Reason: reason})
	return nil
}

// Advice returns the AdviseCorrupt reports received.
func (m *MemBackend) Advice() []CorruptAdvice {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.corrupt)
}
