package shares

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/scripnet/scrip/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const (
	alice = peer.ID("alice")
	bob   = peer.ID("bob")
)

var ctx = context.Background()

func si(n byte) [16]byte { return [16]byte{0x5e, n, 15: n} }

type env struct {
	*Store
	dir   string
	clock *clock
}

func open(t *testing.T, capacity uint64, opts ...Option) *env {
	t.Helper()
	e := &env{dir: t.TempDir(), clock: newClock()}
	e.Store = e.reopen(t, capacity, opts...)
	return e
}

func (e *env) reopen(t *testing.T, capacity uint64, opts ...Option) *Store {
	t.Helper()
	base := []Option{WithClock(e.clock.Now), WithCollectInterval(0)}
	s, err := Open(e.dir, capacity, append(base, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func newAlloc(w peer.ID, idx [16]byte, size uint64, lease time.Duration, shares ...uint32) *protocol.Allocation {
	return &protocol.Allocation{Writer: w, StorageIndex: idx, Shares: shares, Size: size, Lease: lease}
}

// pattern returns n bytes that depend on seed.
func pattern(seed, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seed*31 + i*7)
	}
	return b
}

// upload allocates, writes and closes shares of data.
func (e *env) upload(t *testing.T, w peer.ID, idx [16]byte, lease time.Duration, data map[uint32][]byte) {
	t.Helper()
	for n, d := range data {
		got, err := e.Allocate(ctx, newAlloc(w, idx, uint64(len(d)), lease, n))
		require.NoError(t, err)
		require.Equal(t, []uint32{n}, got.Allocated)
		require.NoError(t, e.Write(ctx, w, idx, n, 0, d))
		require.NoError(t, e.CloseShare(ctx, w, idx, n))
	}
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, rel)
		}
		return err
	})
	require.NoError(t, err)
	return out
}

func TestRoundTrip(t *testing.T) {
	e := open(t, 1<<20)
	idx := si(1)
	got, err := e.Allocate(ctx, newAlloc(alice, idx, 1000, time.Hour, 3, 0))
	require.NoError(t, err)
	assert.Equal(t, []uint32{0, 3}, got.Allocated)
	assert.Empty(t, got.AlreadyHave)
	assert.Equal(t, e.clock.Now().Add(time.Hour), got.LeaseExpires)
	assert.Equal(t, Usage{Capacity: 1 << 20, Allocated: 2000, Available: 1<<20 - 2000}, e.Usage())

	data := pattern(1, 1000)
	for off := 0; off < 1000; off += 300 { // out of order chunks
		end := min(off+300, 1000)
		require.NoError(t, e.Write(ctx, alice, idx, 3, uint64(off), data[off:end]))
	}
	require.NoError(t, e.Write(ctx, alice, idx, 0, 10, []byte("short")))
	require.NoError(t, e.CloseShare(ctx, alice, idx, 3))
	require.NoError(t, e.CloseShare(ctx, alice, idx, 0))
	assert.Equal(t, Usage{Capacity: 1 << 20, Stored: 2000, Available: 1<<20 - 2000}, e.Usage())

	r, err := e.Read(ctx, idx, 3, 0, 4096)
	require.NoError(t, err)
	assert.Equal(t, data, r, "short only at the end")
	r, err = e.Read(ctx, idx, 3, 990, 5)
	require.NoError(t, err)
	assert.Equal(t, data[990:995], r)
	r, err = e.Read(ctx, idx, 0, 0, 20)
	require.NoError(t, err)
	assert.Equal(t, append(make([]byte, 10), "short\x00\x00\x00\x00\x00"...), r, "unwritten bytes are zeros")
	r, err = e.Read(ctx, idx, 0, 1000, 10)
	require.NoError(t, err)
	assert.Empty(t, r, "offset at the end")

	list, err := e.List(ctx, idx)
	require.NoError(t, err)
	exp := e.clock.Now().Add(time.Hour)
	assert.Equal(t, []protocol.ShareInfo{{Number: 0, Size: 1000, LeaseExpires: exp}, {Number: 3, Size: 1000, LeaseExpires: exp}}, list)
	st, err := e.Stat(ctx, idx, 3)
	require.NoError(t, err)
	assert.Equal(t, list[1], st)
	list, err = e.List(ctx, si(2))
	require.NoError(t, err)
	assert.Empty(t, list)

	h := fmt.Sprintf("%x", idx)
	assert.ElementsMatch(t, []string{
		filepath.Join("shares", h[:2], h, "0"),
		filepath.Join("shares", h[:2], h, "3"),
		"meta.db",
	}, files(t, e.dir), "incoming is empty; one file per share")
}

// An allocation that does not fit is refused before anything is written.
func TestNoSpace(t *testing.T) {
	e := open(t, 1000, WithMaxShareSize(600))
	_, err := e.Allocate(ctx, newAlloc(alice, si(1), 300, time.Hour, 0, 1))
	require.NoError(t, err)
	before := e.Usage()
	beforeFiles := files(t, e.dir)

	for _, a := range []*protocol.Allocation{
		newAlloc(bob, si(2), 250, time.Hour, 0, 1, 2), // 750 > 400
		newAlloc(bob, si(2), 700, time.Hour, 0),       // larger than the largest share
		newAlloc(bob, si(2), math.MaxUint64/2, time.Hour, 0, 1),
	} {
		err := e.CheckAllocate(ctx, a)
		assert.ErrorIs(t, err, ErrNoSpace)
		assert.ErrorIs(t, err, protocol.ErrNoSpace)
		_, err = e.Allocate(ctx, a)
		assert.ErrorIs(t, err, ErrNoSpace)
	}
	assert.Equal(t, before, e.Usage())
	assert.Equal(t, beforeFiles, files(t, e.dir))
	_, err = e.List(ctx, si(2))
	require.NoError(t, err)
	assert.ErrorIs(t, e.Write(ctx, bob, si(2), 0, 0, []byte("x")), ErrNotOpen)

	// Exactly what is left fits.
	require.NoError(t, e.CheckAllocate(ctx, newAlloc(bob, si(2), 200, time.Hour, 0, 1)))
	_, err = e.Allocate(ctx, newAlloc(bob, si(2), 200, time.Hour, 0, 1))
	require.NoError(t, err)
	assert.Equal(t, uint64(0), e.Usage().Available)
	sp, err := e.Space(ctx)
	require.NoError(t, err)
	assert.Equal(t, protocol.StorageSpace{Available: 0, MaxShareSize: 600}, sp)

	// Shares already held need no space.
	require.NoError(t, e.CloseShare(ctx, alice, si(1), 0))
	got, err := e.Allocate(ctx, newAlloc(carol, si(1), 300, time.Hour, 0))
	require.NoError(t, err)
	assert.Equal(t, []uint32{0}, got.AlreadyHave)
}

const carol = peer.ID("carol")

func TestMaxOpenShares(t *testing.T) {
	e := open(t, 1<<20, WithMaxOpenShares(3))
	_, err := e.Allocate(ctx, newAlloc(alice, si(1), 10, time.Hour, 0, 1))
	require.NoError(t, err)
	_, err = e.Allocate(ctx, newAlloc(alice, si(2), 10, time.Hour, 0, 1))
	assert.ErrorIs(t, err, ErrNoSpace)
	e.upload(t, alice, si(3), time.Hour, map[uint32][]byte{0: []byte("x")})
	require.NoError(t, e.CloseShare(ctx, alice, si(1), 0))
	_, err = e.Allocate(ctx, newAlloc(alice, si(2), 10, time.Hour, 0, 1))
	require.NoError(t, err, "closing frees a slot")
}

// A share closed between the read of its record and the plan of an
// allocation is found held when the allocation is written, and its file
// is kept.
func TestAllocateRacesClose(t *testing.T) {
	e := open(t, 1<<20)
	idx := si(1)
	_, err := e.Allocate(ctx, newAlloc(alice, idx, 5, time.Hour, 0))
	require.NoError(t, err)
	require.NoError(t, e.Write(ctx, alice, idx, 0, 0, []byte("kept!")))
	testHookPlan = func() {
		testHookPlan = nil
		require.NoError(t, e.CloseShare(ctx, alice, idx, 0))
	}
	defer func() { testHookPlan = nil }()
	got, err := e.Allocate(ctx, newAlloc(bob, idx, 5, 2*time.Hour, 0))
	require.NoError(t, err)
	assert.Equal(t, []uint32{0}, got.AlreadyHave)
	assert.Empty(t, got.Allocated)
	assert.Equal(t, Usage{Capacity: 1 << 20, Stored: 5, Available: 1<<20 - 5}, e.Usage())
	r, err := e.Read(ctx, idx, 0, 0, 5)
	require.NoError(t, err)
	assert.Equal(t, []byte("kept!"), r)
	assert.ErrorIs(t, e.Write(ctx, bob, idx, 0, 0, []byte("x")), ErrNotOpen)
}

func TestInvalidArguments(t *testing.T) {
	e := open(t, 1<<20, WithMaxShares(10))
	for name, a := range map[string]*protocol.Allocation{
		"no shares":       newAlloc(alice, si(1), 10, time.Hour),
		"share twice":     newAlloc(alice, si(1), 10, time.Hour, 1, 1),
		"share too large": newAlloc(alice, si(1), 10, time.Hour, 10),
		"zero size":       newAlloc(alice, si(1), 0, time.Hour, 1),
		"no lease":        newAlloc(alice, si(1), 10, 0, 1),
		"lease too long":  newAlloc(alice, si(1), 10, 101*365*24*time.Hour, 1),
	} {
		_, err := e.Allocate(ctx, a)
		assert.ErrorIs(t, err, ErrInvalid, name)
		assert.ErrorIs(t, err, protocol.ErrBadRequest, name)
	}
	assert.Equal(t, uint64(0), e.Usage().Allocated)
}

func TestWriteBounds(t *testing.T) {
	e := open(t, 1<<30)
	idx := si(1)
	_, err := e.Allocate(ctx, newAlloc(alice, idx, 100, time.Hour, 0))
	require.NoError(t, err)
	tests := []struct {
		name   string
		w      peer.ID
		share  uint32
		offset uint64
		n      int
		want   error
	}{
		{"fills exactly", alice, 0, 0, 100, nil},
		{"last byte", alice, 0, 99, 1, nil},
		{"empty at the end", alice, 0, 100, 0, nil},
		{"one past", alice, 0, 1, 100, ErrOutOfBounds},
		{"offset past", alice, 0, 101, 0, ErrOutOfBounds},
		{"offset overflow", alice, 0, math.MaxUint64, 2, ErrOutOfBounds},
		{"too large a write", alice, 0, 0, protocol.MaxWriteSize + 1, ErrInvalid},
		{"another writer", bob, 0, 0, 1, ErrNotOpen},
		{"not allocated", alice, 1, 0, 1, ErrNotOpen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.Write(ctx, tt.w, idx, tt.share, tt.offset, make([]byte, tt.n))
			if tt.want == nil {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, tt.want)
		})
	}
	assert.ErrorIs(t, e.CloseShare(ctx, bob, idx, 0), ErrNotOpen, "another writer cannot close")
}

func TestWriteAfterClose(t *testing.T) {
	e := open(t, 1<<20)
	idx := si(1)
	e.upload(t, alice, idx, time.Hour, map[uint32][]byte{0: []byte("immutable")})
	err := e.Write(ctx, alice, idx, 0, 0, []byte("X"))
	assert.ErrorIs(t, err, ErrNotOpen)
	assert.ErrorIs(t, err, protocol.ErrNotFound)
	assert.ErrorIs(t, e.CloseShare(ctx, alice, idx, 0), ErrNotOpen)
	r, err := e.Read(ctx, idx, 0, 0, 100)
	require.NoError(t, err)
	assert.Equal(t, []byte("immutable"), r)
}

func TestReadRules(t *testing.T) {
	e := open(t, 1<<20)
	idx := si(1)
	_, err := e.Allocate(ctx, newAlloc(alice, idx, 10, time.Hour, 0, 1))
	require.NoError(t, err)
	require.NoError(t, e.Write(ctx, alice, idx, 0, 0, []byte("0123456789")))

	_, err = e.Read(ctx, idx, 0, 0, 10)
	assert.ErrorIs(t, err, ErrNotFound, "an open share is not readable")
	_, err = e.Stat(ctx, idx, 0)
	assert.ErrorIs(t, err, ErrNotFound)
	list, err := e.List(ctx, idx)
	require.NoError(t, err)
	assert.Empty(t, list, "open shares are not listed")

	require.NoError(t, e.CloseShare(ctx, alice, idx, 0))
	_, err = e.Read(ctx, idx, 0, 11, 1)
	assert.ErrorIs(t, err, ErrOutOfBounds)
	assert.ErrorIs(t, err, protocol.ErrBadRequest)
	_, err = e.Read(ctx, idx, 0, 0, protocol.MaxReadSize+1)
	assert.ErrorIs(t, err, ErrInvalid)
	_, err = e.Read(ctx, idx, 0, math.MaxUint64, 1)
	assert.ErrorIs(t, err, ErrOutOfBounds)
	_, err = e.Read(ctx, idx, 7, 0, 1)
	assert.ErrorIs(t, err, ErrNotFound)
}

// The store serves bytes as they are on disk: a damaged share is read
// damaged, and the client's verification catches it.
func TestCorruptFileServedAsIs(t *testing.T) {
	e := open(t, 1<<20)
	idx := si(1)
	e.upload(t, alice, idx, time.Hour, map[uint32][]byte{2: []byte("good data")})
	path := e.finalPath(key{idx, 2})
	require.NoError(t, os.WriteFile(path, []byte("bad! data"), 0o600))
	r, err := e.Read(ctx, idx, 2, 0, 100)
	require.NoError(t, err)
	assert.Equal(t, []byte("bad! data"), r)
	require.NoError(t, os.Truncate(path, 3))
	r, err = e.Read(ctx, idx, 2, 0, 100)
	require.NoError(t, err)
	assert.Equal(t, []byte("bad"), r, "a truncated file reads short")

	require.NoError(t, e.AdviseCorrupt(ctx, idx, 2, "hash mismatch"))
	require.NoError(t, e.AdviseCorrupt(ctx, idx, 9, "not held: dropped"))
	for range MaxAdvicePerShare + 5 {
		require.NoError(t, e.AdviseCorrupt(ctx, idx, 2, "again"))
	}
	err = e.AdviseCorrupt(ctx, idx, 2, string(make([]byte, protocol.MaxAdviceSize+1)))
	assert.ErrorIs(t, err, ErrInvalid)
	adv, err := e.Advice(ctx, idx)
	require.NoError(t, err)
	require.Len(t, adv, MaxAdvicePerShare, "bounded per share")
	assert.Equal(t, Advice{Share: 2, At: e.clock.Now(), Reason: "hash mismatch"}, adv[0])
}

func TestLeasesAndCollector(t *testing.T) {
	e := open(t, 1<<20)
	idx := si(1)
	t0 := e.clock.Now()
	e.upload(t, alice, idx, time.Hour, map[uint32][]byte{0: pattern(0, 100), 1: pattern(1, 100)})
	e.upload(t, alice, si(2), 3*time.Hour, map[uint32][]byte{0: pattern(2, 50)})

	e.clock.Advance(30 * time.Minute)
	held, err := e.List(ctx, idx)
	require.NoError(t, err)
	until, err := e.AddLease(ctx, idx, held, 2*time.Hour)
	require.NoError(t, err)
	assert.Equal(t, t0.Add(3*time.Hour), until, "extended from the current end")
	_, err = e.AddLease(ctx, si(9), held, time.Hour)
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = e.AddLease(ctx, idx, held, 0)
	assert.ErrorIs(t, err, ErrInvalid)

	// Allocating a held share extends it too.
	got, err := e.Allocate(ctx, newAlloc(bob, idx, 100, time.Hour, 1, 2))
	require.NoError(t, err)
	assert.Equal(t, []uint32{1}, got.AlreadyHave)
	assert.Equal(t, []uint32{2}, got.Allocated)
	assert.Equal(t, t0.Add(4*time.Hour), got.LeaseExpires, "the latest lease end")

	e.clock.Advance(2*time.Hour + 30*time.Minute) // t0 + 3h: si(2) and share 0 end now
	list, err := e.List(ctx, idx)
	require.NoError(t, err)
	assert.Equal(t, []protocol.ShareInfo{{Number: 1, Size: 100, LeaseExpires: t0.Add(4 * time.Hour)}}, list)
	_, err = e.Read(ctx, si(2), 0, 0, 1)
	assert.ErrorIs(t, err, ErrNotFound, "gone when the lease ends, before collection")
	_, err = e.AddLease(ctx, si(2), []protocol.ShareInfo{{Number: 0, Size: 50}}, time.Hour)
	assert.ErrorIs(t, err, ErrNotFound)
	assert.Equal(t, uint64(350), e.Usage().Stored+e.Usage().Allocated, "space not reused until collected")

	c, err := e.Collect(ctx)
	require.NoError(t, err)
	// bob's open share 2 ended at t0+1h30 too.
	assert.Equal(t, Collected{Expired: 2, Abandoned: 1, Freed: 250}, c)
	assert.Equal(t, Usage{Capacity: 1 << 20, Stored: 100, Available: 1<<20 - 100}, e.Usage())
	h := fmt.Sprintf("%x", idx)
	assert.ElementsMatch(t, []string{filepath.Join("shares", h[:2], h, "1"), "meta.db"}, files(t, e.dir),
		"files deleted, empty directories removed")

	c, err = e.Collect(ctx)
	require.NoError(t, err)
	assert.Equal(t, Collected{}, c)

	// A share whose lease ended can be uploaded again, even before the
	// collector ran.
	e.clock.Advance(time.Hour)
	e.upload(t, carol, idx, time.Hour, map[uint32][]byte{1: []byte("new")})
	r, err := e.Read(ctx, idx, 1, 0, 10)
	require.NoError(t, err)
	assert.Equal(t, []byte("new"), r)
	assert.Equal(t, uint64(3), e.Usage().Stored)
}

func TestAbandon(t *testing.T) {
	e := open(t, 1000, WithAbandonAfter(10*time.Minute))
	idx := si(1)
	_, err := e.Allocate(ctx, newAlloc(alice, idx, 400, 24*time.Hour, 0, 1))
	require.NoError(t, err)
	require.NoError(t, e.Write(ctx, alice, idx, 0, 0, []byte("some")))
	e.clock.Advance(9 * time.Minute)
	require.NoError(t, e.Write(ctx, alice, idx, 1, 0, []byte("more"))) // share 1 stays active
	e.clock.Advance(2 * time.Minute)

	c, err := e.Collect(ctx)
	require.NoError(t, err)
	assert.Equal(t, Collected{Abandoned: 1, Freed: 400}, c)
	assert.ErrorIs(t, e.Write(ctx, alice, idx, 0, 4, []byte("x")), ErrNotOpen)
	assert.NoError(t, e.Write(ctx, alice, idx, 1, 4, []byte("x")))
	assert.Equal(t, Usage{Capacity: 1000, Allocated: 400, Available: 600}, e.Usage())

	// A writer that comes back re-allocates; the same writer may also
	// re-allocate a share it still has open.
	got, err := e.Allocate(ctx, newAlloc(alice, idx, 400, time.Hour, 0, 1))
	require.NoError(t, err)
	assert.Equal(t, []uint32{0, 1}, got.Allocated)
	got, err = e.Allocate(ctx, newAlloc(bob, idx, 400, time.Hour, 0, 1))
	require.NoError(t, err)
	assert.Empty(t, got.Allocated, "bob gets no share alice is writing")
	assert.Empty(t, got.AlreadyHave)
	_, err = e.Allocate(ctx, newAlloc(bob, idx, 400, time.Hour, 0, 1, 2))
	assert.ErrorIs(t, err, ErrNoSpace, "share 2 does not fit")
}

func TestRestart(t *testing.T) {
	e := open(t, 1<<20)
	idx := si(1)
	e.upload(t, alice, idx, time.Hour, map[uint32][]byte{0: pattern(0, 300), 1: pattern(1, 200)})
	_, err := e.Allocate(ctx, newAlloc(bob, si(2), 1000, time.Hour, 4, 5, 6))
	require.NoError(t, err)
	require.NoError(t, e.Write(ctx, bob, si(2), 4, 0, []byte("before restart")))
	require.NoError(t, e.Write(ctx, bob, si(2), 5, 0, []byte("closing when the crash hit")))
	before := e.Usage()
	require.Equal(t, Usage{Capacity: 1 << 20, Stored: 500, Allocated: 3000, Available: 1<<20 - 3500}, before)

	// A Close that renamed share 5 into place and crashed before its
	// record; a share file copied in by hand; scraps in incoming.
	k5 := key{si(2), 5}
	require.NoError(t, os.Truncate(e.incomingPath(k5), 1000))
	require.NoError(t, mkdirAllSync(filepath.Dir(e.finalPath(k5))))
	require.NoError(t, os.Rename(e.incomingPath(k5), e.finalPath(k5)))
	orphan := key{si(3), 0}
	require.NoError(t, mkdirAllSync(filepath.Dir(e.finalPath(orphan))))
	require.NoError(t, os.WriteFile(e.finalPath(orphan), pattern(3, 77), 0o600))
	scrap := key{si(4), 1}
	require.NoError(t, mkdirAllSync(filepath.Dir(e.incomingPath(scrap))))
	require.NoError(t, os.WriteFile(e.incomingPath(scrap), []byte("scrap"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(e.dir, "shares", "README"), []byte("not a share"), 0o600))
	require.NoError(t, e.Close())

	s := e.reopen(t, 1<<20)
	assert.Equal(t, Usage{Capacity: 1 << 20, Stored: 500 + 1000 + 77, Allocated: 2000, Available: 1<<20 - 3577}, s.Usage())
	r, err := s.Read(ctx, idx, 1, 0, 1000)
	require.NoError(t, err)
	assert.Equal(t, pattern(1, 200), r)
	r, err = s.Read(ctx, si(2), 5, 0, 26)
	require.NoError(t, err)
	assert.Equal(t, []byte("closing when the crash hit"), r, "the interrupted Close is finished")
	list, err := s.List(ctx, si(3))
	require.NoError(t, err)
	assert.Equal(t, []protocol.ShareInfo{{Number: 0, Size: 77, LeaseExpires: e.clock.Now().Add(DefaultOrphanLease)}}, list)
	_, err = os.Stat(e.incomingPath(scrap))
	assert.ErrorIs(t, err, os.ErrNotExist, "scraps deleted")

	// The open share survives, its data too, and its writer goes on.
	require.NoError(t, s.Write(ctx, bob, si(2), 4, 14, []byte(", after")))
	require.NoError(t, s.CloseShare(ctx, bob, si(2), 4))
	r, err = s.Read(ctx, si(2), 4, 0, 21)
	require.NoError(t, err)
	assert.Equal(t, []byte("before restart, after"), r)
	assert.ErrorIs(t, s.Write(ctx, alice, si(2), 6, 0, []byte("x")), ErrNotOpen, "still bob's")

	// A second store on the same directory is refused.
	_, err = Open(e.dir, 1, WithOpenTimeout(20*time.Millisecond), WithCollectInterval(0))
	assert.Error(t, err)
}

func TestConcurrentWriters(t *testing.T) {
	e := open(t, 1<<30)
	const writers, size, chunk = 16, 64 << 10, 4 << 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			writer := peer.ID(fmt.Sprintf("writer-%d", w))
			idx := si(byte(w % 4)) // four writers per storage index
			n := uint32(w)
			_, err := e.Allocate(ctx, newAlloc(writer, idx, size, time.Hour, n))
			if !assert.NoError(t, err) {
				return
			}
			data := pattern(w, size)
			for off := 0; off < size; off += chunk {
				if !assert.NoError(t, e.Write(ctx, writer, idx, n, uint64(off), data[off:off+chunk])) {
					return
				}
			}
			assert.NoError(t, e.CloseShare(ctx, writer, idx, n))
		})
	}
	wg.Wait()
	for w := range writers {
		r, err := e.Read(ctx, si(byte(w%4)), uint32(w), 0, size)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(pattern(w, size), r), "share %d", w)
	}
	assert.Equal(t, uint64(writers*size), e.Usage().Stored)
	assert.Equal(t, uint64(0), e.Usage().Allocated)
}

func TestBackendAndClose(t *testing.T) {
	e := open(t, 1<<20)
	var b protocol.StorageBackend = e.Backend()
	idx := si(1)
	_, err := b.Allocate(ctx, newAlloc(alice, idx, 5, time.Hour, 0))
	require.NoError(t, err)
	require.NoError(t, b.Write(ctx, alice, idx, 0, 0, []byte("hello")))
	require.NoError(t, b.Close(ctx, alice, idx, 0))
	r, err := b.Read(ctx, idx, 0, 0, 5)
	require.NoError(t, err)
	assert.Equal(t, []byte("hello"), r)

	require.NoError(t, e.Close())
	require.NoError(t, e.Close(), "twice is harmless")
	_, err = b.List(ctx, idx)
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, b.Write(ctx, alice, idx, 0, 0, nil), ErrClosed)
}

// The collector goroutine runs on a real ticker and stops with Close.
func TestCollectorGoroutine(t *testing.T) {
	c := newClock()
	s, err := Open(t.TempDir(), 1000, WithClock(c.Now), WithCollectInterval(time.Millisecond), WithAbandonAfter(time.Second))
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Allocate(ctx, newAlloc(alice, si(1), 100, time.Hour, 0))
	require.NoError(t, err)
	c.Advance(2 * time.Second)
	require.Eventually(t, func() bool { return s.Usage().Allocated == 0 }, 5*time.Second, time.Millisecond)
}
